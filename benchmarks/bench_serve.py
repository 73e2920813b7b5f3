"""Serving benchmark: requests/s and latency of ``offrec serve`` under an HTTP load generator.

A LinUCB model (epsilon-greedy head) over a ``--items`` catalog is served by a real
``offrec serve`` process (fsync on: every answer waits for its group commit); ``--procs``
client processes, each an asyncio loop of ``--connections`` keep-alive httpx connections,
send ``POST /v1/recommend`` with ``k = --k`` for ``--seconds`` after a warm-up. Printed:
requests/s over the measured window, p50/p95/p99 latency (client side, request sent to
answer read), the write-ahead log's records per fsync, and the server's CPU time per
request (warm-up included), and the machine's load average (the machine is shared: read
figures together with it).

    python -m benchmarks.bench_serve --items 100 --k 10 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def make_model(folder: Path, n_items: int) -> Path:
    from offrec.core.policy import Head, UniformPolicy
    from offrec.logs.reader import read_logs
    from offrec.logs.writer import collect
    from offrec.policies.bandits import LinUCB
    from offrec.policies.logged import fit_logged
    from offrec.policies.persist import save_policy
    from offrec.recommend import write_world
    from offrec.sim import World, WorldConfig

    world = World(WorldConfig(n_items=n_items, n_users=2000), seed=0)
    collect(world, UniformPolicy(n_items), out=folder / "train-log", n_sessions=20_000, seed=1)
    learner = LinUCB(n_items, world.obs_dim)
    fit_logged(learner, read_logs(folder / "train-log"))
    model = folder / "model"
    save_policy(learner.exploit(Head("epsilon_greedy", epsilon=0.2)), model)
    write_world(model, world)
    return model


async def _client(url: str, contexts: list[list[float]], k: int, connections: int,
                  warmup: float, seconds: float) -> tuple[list[float], int]:  # fmt: skip
    import httpx

    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    lat: list[float] = []
    errors = 0
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        start = time.perf_counter()
        t_on, t_off = start + warmup, start + warmup + seconds

        async def worker(w: int) -> None:
            nonlocal errors
            i = w
            while True:
                t0 = time.perf_counter()
                if t0 >= t_off:
                    return
                body = json.dumps({"context": contexts[i % len(contexts)], "k": k})
                r = await client.post("/v1/recommend", content=body)
                t1 = time.perf_counter()
                if r.status_code != 200:
                    errors += 1
                elif t0 >= t_on:
                    lat.append(t1 - t0)
                i += connections

        await asyncio.gather(*(worker(w) for w in range(connections)))
    return lat, errors


def _client_proc(args: tuple) -> tuple[list[float], int]:
    return asyncio.run(_client(*args))


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (Linux ``/proc``; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=100)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--connections", type=int, default=32, help="per client process")
    ap.add_argument("--procs", type=int, default=1, help="client processes")
    a = ap.parse_args()
    from offrec.sim import World, WorldConfig

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        model = make_model(tmp_path, a.items)
        world = World(WorldConfig(n_items=a.items, n_users=2000), seed=0)
        obs = world.observe(world.new_sessions(1000, np.random.default_rng(0)))
        contexts = [[round(float(v), 6) for v in row] for row in obs]
        ready = tmp_path / "ready.json"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        server = subprocess.Popen(
            [sys.executable, "-m", "offrec.cli", "serve", str(model), "--log", str(tmp_path / "log"),
             "--port", "0", "--ready-file", str(ready), "--max-k", str(a.k)],
            env=env, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            while not ready.is_file():
                time.sleep(0.05)
            url = json.loads(ready.read_text())["url"]
            cpu0 = _cpu_seconds(server.pid)
            job = (url, contexts, a.k, a.connections, a.warmup, a.seconds)
            if a.procs == 1:
                results = [_client_proc(job)]
            else:
                with mp.get_context("spawn").Pool(a.procs) as pool:
                    results = pool.map(_client_proc, [job] * a.procs)
            import httpx

            wal = httpx.get(url + "/v1/health").json()["wal"]
            served = wal["records"]
            server_cpu = _cpu_seconds(server.pid) - cpu0
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
    lat = np.array([x for r, _ in results for x in r]) * 1000
    errors = sum(e for _, e in results)
    load = os.getloadavg()
    p50, p95, p99 = np.percentile(lat, [50, 95, 99])
    print(
        "| items | k | clients | req/s | p50 ms | p95 ms | p99 ms | errors | records/fsync | load (1/5/15 min) |"
    )
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---|")
    print(f"| {a.items} | {a.k} | {a.procs} proc x {a.connections} conn | {lat.size / a.seconds:,.0f} | "
          f"{p50:.1f} | {p95:.1f} | {p99:.1f} | {errors} | {wal['records_per_batch']:.1f} | "
          f"{1000 * server_cpu / max(served, 1):.2f} | "
          f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
