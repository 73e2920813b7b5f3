"""Safe writes, with real subprocesses and real signals: SIGTERM, SIGKILL, two writers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from offrec.core.atomic import (
    MANIFEST,
    OWNER,
    atomic_dir,
    atomic_write_text,
    foreign_content,
    verify_manifest,
)
from offrec.core.errors import InputError, NoSpaceError, OutputBusyError, OutputExistsError

ROOT = Path(__file__).resolve().parents[2]

# a writer that announces it is inside atomic_dir, then sleeps until killed
WRITER = """
import sys, time, pathlib
from offrec.core.atomic import atomic_dir
out, ready = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
release = pathlib.Path(sys.argv[3]) if len(sys.argv) > 3 else None  # hold until it exists
with atomic_dir(out, overwrite=True) as tmp:
    (tmp / "part-00000.parquet").write_bytes(b"x" * 1000)
    ready.write_text(str(tmp))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (release is not None and release.exists()):
        time.sleep(0.02)
print("published")
"""


def _spawn(tmp_path: Path, out: Path, *extra: str) -> tuple[subprocess.Popen, Path]:
    ready = tmp_path / f"ready-{time.monotonic_ns()}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(out), str(ready), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"writer did not start: {proc.communicate()}")
        time.sleep(0.02)
    return proc, Path(ready.read_text())


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_sigterm_cleans_up_like_ctrl_c(tmp_path):
    out = tmp_path / "data"
    proc, tmp = _spawn(tmp_path, out)
    assert tmp.is_dir() and (tmp / OWNER).is_file()
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    assert proc.returncode != 0
    assert not out.exists() and not tmp.exists()
    assert _hidden(tmp_path) == []  # no temp folder, no lock file


def test_sigkill_leaves_a_marked_temp_that_the_next_writer_removes(tmp_path):
    out = tmp_path / "data"
    proc, tmp = _spawn(tmp_path, out)
    proc.kill()
    proc.wait(30)
    assert tmp.is_dir()  # SIGKILL cannot be caught: the temp folder stays, marked
    owner = json.loads((tmp / OWNER).read_text())
    assert owner["pid"] == proc.pid
    with atomic_dir(out) as t2:
        (t2 / "a.txt").write_text("new")
    assert not tmp.exists()
    assert (out / "a.txt").read_text() == "new"
    assert _hidden(tmp_path) == []


def test_second_concurrent_writer_fails_and_the_first_publishes(tmp_path):
    out = tmp_path / "data"
    release = tmp_path / "release"
    first, _ = _spawn(tmp_path, out, str(release))
    with (
        pytest.raises(OutputBusyError, match=f"another process is writing .*pid {first.pid}"),
        atomic_dir(out, overwrite=True),
    ):
        pass
    second = subprocess.run(
        [sys.executable, "-c", WRITER, str(out), str(tmp_path / "r2"), str(release)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
    )
    assert second.returncode != 0 and "OutputBusyError" in second.stderr
    assert not (tmp_path / "r2").exists()  # the second writer never got in
    release.write_text("go")
    stdout, _ = first.communicate(timeout=60)
    assert first.returncode == 0 and "published" in stdout
    assert verify_manifest(out) == []


def test_existing_output_needs_overwrite_and_python_spelling(tmp_path):
    out = tmp_path / "data"
    with atomic_dir(out) as t:
        (t / "a").write_text("1")
    with pytest.raises(OutputExistsError, match="pass overwrite=True"), atomic_dir(out):
        pass
    with atomic_dir(out, overwrite=True) as t:
        (t / "b").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "b"]


def test_overwrite_refuses_what_offrec_did_not_write(tmp_path):
    mine = tmp_path / "p"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    (mine / "data").mkdir()
    with (
        pytest.raises(OutputExistsError, match="refusing to replace .*notes.txt"),
        atomic_dir(mine, overwrite=True),
    ):
        pass
    assert (mine / "notes.txt").read_text() == "precious"
    # an offrec folder into which a user put a file is refused too, naming the file
    out = tmp_path / "d"
    with atomic_dir(out) as t:
        (t / "part-00000.parquet").write_bytes(b"1")
    (out / "mine.csv").write_text("x")
    with (
        pytest.raises(OutputExistsError, match="files offrec did not write: mine.csv"),
        atomic_dir(out, overwrite=True),
    ):
        pass
    assert (out / "mine.csv").exists()
    # a plain file
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(OutputExistsError, match="it is a file"), atomic_dir(f, overwrite=True):
        pass


def test_never_the_current_directory_or_a_parent(tmp_path, monkeypatch):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    for target in (".", "..", str(tmp_path)):
        with (
            pytest.raises(InputError, match="current directory or one of its parents"),
            atomic_dir(target, overwrite=True),
        ):
            pass
    assert work.is_dir() and _hidden(work.parent) == []


def test_size_estimate_that_does_not_fit_is_refused(tmp_path):
    with (
        pytest.raises(NoSpaceError, match=r"needs about 1,000.0 PB .* free"),
        atomic_dir(tmp_path / "big", expected_bytes=10**18),
    ):
        pass
    assert list(tmp_path.iterdir()) == []


def test_files_written_later_join_the_manifest(tmp_path):
    out = tmp_path / "m"
    with atomic_dir(out) as t:
        (t / "policy.json").write_text("{}")
    atomic_write_text(out / "world.json", "{}")
    assert foreign_content(out) is None
    assert verify_manifest(out) == []
