"""Fault tests with real processes: SIGKILL under load, a full disk, a malformed-request storm.

Each prints its counts (run with ``-s`` to see them). The guarantee checked: every decision
acknowledged to a client is in the log exactly once after a restart, and every part file
is readable Parquet that ``offrec summary``, pandas and DuckDB accept.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import httpx
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from offrec.serve.wal import HEADER, MAGIC, WAL_DIR, list_segments
from tests.serve.conftest import ROOT, Server, context, small_world

CONTEXTS = context(small_world(), 64, seed=5)


def hammer(url: str, stop: threading.Event, acked: list[int], statuses: list[int]) -> None:
    """Send recommendations until ``stop``; keep the ids of those answered 200."""
    with httpx.Client(base_url=url, timeout=5.0) as client:
        i = 0
        while not stop.is_set():
            body = {"context": CONTEXTS[i % len(CONTEXTS)].tolist(), "user_id": i}
            i += 1
            try:
                r = client.post("/v1/recommend", json=body)
            except httpx.HTTPError:
                if stop.is_set():
                    return
                time.sleep(0.01)
                continue
            statuses.append(r.status_code)
            if r.status_code == 200:
                acked.append(r.json()["decision_id"])


def load(
    url: str, n_threads: int = 4
) -> tuple[threading.Event, list[threading.Thread], list[int], list[int]]:
    stop, acked, statuses = threading.Event(), [], []
    threads = [
        threading.Thread(target=hammer, args=(url, stop, acked, statuses), daemon=True)
        for _ in range(n_threads)
    ]
    for t in threads:
        t.start()
    return stop, threads, acked, statuses


def wait_for(pred: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


def check_log(log: Path, acked: list[int]) -> pd.DataFrame:
    """Every acknowledged decision exactly once; every part file valid; readers agree."""
    files = sorted(log.glob("*.parquet"))
    for f in files:  # not corrupt: footer and rows read back
        assert pq.read_table(f).num_rows == pq.ParquetFile(f).metadata.num_rows > 0
    df = pd.read_parquet(files)
    # the folder form too: the write-ahead log and side files are named so readers skip them
    assert len(pd.read_parquet(log)) == len(df) == pq.read_table(log).num_rows
    assert df.session_id.is_unique, "a decision was logged twice"
    missing = set(acked) - set(df.session_id)
    assert not missing, f"{len(missing)} acknowledged decisions are not in the log"
    n_duck = duckdb.sql(f"select count(*) from read_parquet('{log}/*.parquet')").fetchall()
    assert n_duck == [(len(df),)]
    summary = subprocess.run(
        [sys.executable, "-m", "offrec.cli", "summary", str(log)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
    )
    assert summary.returncode == 0 and "the log passes every check" in summary.stdout, (
        summary.stderr
    )
    return df


def test_sigkill_under_load_loses_no_acknowledged_decision(
    models: dict[str, Path], tmp_path: Path
) -> None:
    log = tmp_path / "log"
    server = Server(models["a"], log, "--window", "0.3", "--grace", "0", "--compact-every", "0.2")
    stop, threads, acked, _ = load(server.url)
    wait_for(lambda: len(acked) >= 300 and len(list(log.glob("*.parquet"))) >= 2)
    server.kill()
    stop.set()
    for t in threads:
        t.join()
    # a crash in the middle of a write leaves a torn frame at the end of the active segment
    last = list_segments(log / WAL_DIR)[-1]
    with open(last, "ab") as f:
        f.write(HEADER.pack(MAGIC, 500, 0) + b'{"t":"d","id":')
    parts_before = len(list(log.glob("*.parquet")))
    time.sleep(0.5)  # past the window: a restart compacts everything before serving
    again = Server(models["a"], log, "--window", "0.3", "--grace", "0")
    recovery = again.info["recovery"]
    again.stop()
    df = check_log(log, acked)
    print(
        f"\nSIGKILL: {len(acked)} acknowledged, {len(df)} logged "
        f"({len(df) - len(acked)} answered to nobody: in flight at the kill), "
        f"{parts_before} part files before the kill, {recovery['torn_bytes']} torn bytes dropped "
        f"in {recovery['torn_segments']}"
    )
    assert recovery["torn_bytes"] == HEADER.size + len(b'{"t":"d","id":')
    assert len(df) - len(acked) <= 4  # at most one request in flight per client thread
    assert parts_before >= 2 and not list((log / WAL_DIR).glob("wal-*.log"))[:-1]


def _mount_tmpfs(folder: Path, size: str) -> None:
    folder.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("the full-disk test mounts a small tmpfs and needs root")
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}): full-disk test not run")


def test_full_disk_refuses_then_recovers_and_loses_nothing_acknowledged(
    models: dict[str, Path], tmp_path: Path
) -> None:
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "2m")
    try:
        log = disk / "log"
        server = Server(models["a"], log, "--window", "60")
        filler = disk / "filler"
        free = shutil.disk_usage(disk).free
        filler.write_bytes(b"\0" * max(free - 96 * 1024, 0))  # leave ~96 KB
        stop, threads, acked, statuses = load(server.url, 2)
        wait_for(lambda: 503 in statuses)
        n_acked_full = len(acked)
        health = httpx.get(server.url + "/v1/health").json()
        filler.unlink()  # space is back: the service goes on without a restart
        wait_for(lambda: len(acked) >= n_acked_full + 50)
        server.kill()
        stop.set()
        for t in threads:
            t.join()
        saved = tmp_path / "log"
        shutil.copytree(log, saved)
    finally:
        subprocess.run(["umount", str(disk)], check=False)
    again = Server(models["a"], saved, "--window", "0", "--grace", "0")
    again.stop()
    df = check_log(saved, acked)
    refused = statuses.count(503)
    print(
        f"\nfull disk: {len(acked)} acknowledged, {refused} refused with 503, {len(df)} logged; "
        f"failed WAL batches {health['wal']['failed_batches']}"
    )
    assert health["status"] == "ok" and health["wal"]["failed_batches"] >= 1
    assert len(df) - len(acked) <= 2


STORM = [
    b"POST /v1/recommend HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n{{{{{",
    b"POST /v1/recommend HTTP/1.1\r\nHost: x\r\nContent-Length: 999999\r\n\r\n{}",
    b"GARBAGE\r\n\r\n",
    b"\x00\xff\x13\x37" * 64,
    b"POST /v1/feedback HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n[]",
    b"GET /v1/recommend HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /v1/recommend HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"POST /v1/recommend HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{",  # then hang up
    b"POST /v1/recommend HTTP/1.1\r\n" + b"X-Big: " + b"a" * 70_000 + b"\r\n\r\n",
]


def test_a_malformed_request_storm_leaves_the_service_serving(
    models: dict[str, Path], tmp_path: Path
) -> None:
    server = Server(models["a"], tmp_path / "log", "--max-body", "4096")
    host, port = server.url.removeprefix("http://").split(":")
    rng = np.random.default_rng(0)
    for i in range(300):
        raw = STORM[i % len(STORM)] if i % 3 else bytes(rng.integers(0, 256, 200, dtype=np.uint8))
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(raw)
            s.shutdown(socket.SHUT_WR)
            with contextlib.suppress(OSError):
                s.recv(4096)
    with httpx.Client(base_url=server.url) as client:
        bad = [
            client.post("/v1/recommend", content=b).status_code
            for b in (b"{", b'{"context": 1}', b'{"k": -1}', b"x" * 10_000)
        ]
        ok = client.post("/v1/recommend", json={"context": CONTEXTS[0].tolist()})
        health = client.get("/v1/health").json()
    assert server.proc.poll() is None
    err = server.stop()
    print(
        f"\nstorm: 300 malformed connections + {len(bad)} bad requests {bad}; then 200 -> {ok.status_code}"
    )
    assert bad == [400, 400, 400, 413] and ok.status_code == 200
    assert health["served"]["decisions"] == 1 and "Traceback" not in err


def test_sighup_redeploys_the_model_folder_without_a_restart(
    models: dict[str, Path], tmp_path: Path
) -> None:
    folder = tmp_path / "model"
    shutil.copytree(models["a"], folder)
    server = Server(folder, tmp_path / "log")
    before = server.info["model_version"]
    with httpx.Client(base_url=server.url) as client:
        first = client.post("/v1/recommend", json={"context": CONTEXTS[0].tolist()}).json()
        shutil.rmtree(folder)
        shutil.copytree(models["b"], folder)  # a new model under the same name
        server.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: client.get("/v1/health").json()["model_version"] != before)
        second = client.post("/v1/recommend", json={"context": CONTEXTS[0].tolist()}).json()
    assert server.proc.poll() is None
    server.stop()
    assert first["model_version"] == before and second["model_version"].startswith("model@")
    assert second["model_version"] != before
