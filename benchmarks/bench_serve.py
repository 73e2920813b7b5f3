"""Serving benchmark: requests/s and latency of ``offrec serve`` under an HTTP load generator.

For each catalog size in ``--items`` (default ``100,100000``) a model is trained and
served by a real ``offrec serve`` process (fsync on: every answer waits for the group
commit that makes its decision durable; the benchmark never turns it off):

- up to 1,000 items: LinUCB with an epsilon-greedy head (0.2), served dense;
- above: the shared-parameter ``hybrid`` learner on the world's item table (top-50
  retrieval, epsilon 0.2 over the candidates, floor 0.05 over the catalog), served in
  sparse form (:func:`offrec.serve.model.plackett_luce_sparse`: no ``(n, n_items)`` table).

The load generator (``--client``): ``wrk`` (a C HTTP benchmark, one thread, ``--connections``
keep-alive connections, a Lua script cycling through 1,000 users' contexts as POST bodies)
when it is on the PATH, else an async httpx client (``--procs`` processes of
``--connections`` connections each; it spends far more CPU than wrk on the same cores). It
sends ``POST /v1/recommend`` with ``k = --k`` for ``--warmup`` seconds (discarded), then for
``--seconds``. Printed per catalog: the client used, requests/s, p50/p95/p99 latency (client
side), non-200 answers, the write-ahead log's records per fsync, the server's CPU time per
request in the measured window, the time the server's threads spent runnable but waiting
for a CPU per second of the window (preemption by other processes, wrk included: the
latency tail on a shared machine follows it), and the load average (the machine is
shared: read figures with it).

    python -m benchmarks.bench_serve                  # 100 and 100,000 items, k = 10
    python -m benchmarks.bench_serve --items 100 --client httpx
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


DENSE_MAX_ITEMS = 1000
"""Catalogs up to this size are served by LinUCB (dense); larger by the hybrid learner (sparse)."""


def make_model(folder: Path, n_items: int) -> Path:
    """Train and save the served model of the module docstring for an ``n_items`` catalog."""
    from offrec.core.policy import Head, UniformPolicy
    from offrec.logs.reader import read_logs
    from offrec.logs.writer import collect
    from offrec.policies.logged import fit_logged
    from offrec.policies.persist import save_policy
    from offrec.policies.registry import make_learner
    from offrec.recommend import write_world
    from offrec.sim import World, WorldConfig

    world = World(WorldConfig(n_items=n_items, n_users=2000), seed=0)
    collect(world, UniformPolicy(n_items), out=folder / "train-log", n_sessions=20_000, seed=1)
    if n_items <= DENSE_MAX_ITEMS:
        learner = make_learner("linucb", n_items, world.context_dim)
    else:
        learner = make_learner("hybrid", n_items, world.context_dim, world=world, floor=0.05)
    fit_logged(learner, read_logs(folder / "train-log"))
    model = folder / "model"
    save_policy(learner.exploit(Head("epsilon_greedy", epsilon=0.2)), model)
    write_world(model, world)
    return model


def wrk_script(bodies: list[str]) -> str:
    """A wrk Lua script: POST ``bodies`` in turn (pre-formatted once per thread); ``done``
    prints one JSON line with the counts and the 50/95/99th latency percentiles (us)."""
    quoted = ",\n".join(f"[=[{b}]=]" for b in bodies)
    return f"""local bodies = {{
{quoted}
}}
local reqs = {{}}
local i = 0
init = function(args)
  for j, b in ipairs(bodies) do
    reqs[j] = wrk.format("POST", "/v1/recommend", {{["Content-Type"] = "application/json"}}, b)
  end
end
request = function()
  i = i % #reqs + 1
  return reqs[i]
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK {{"requests":%d,"duration_us":%d,"socket_errors":%d,"non2xx":%d,' ..
    '"p50":%d,"p95":%d,"p99":%d}}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout,
    e.status, latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"""


def run_wrk(url: str, script: Path, connections: int, seconds: float) -> dict[str, float]:
    """One wrk run; its ``done`` line as a dict (latencies in ms)."""
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url + "/v1/recommend",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("WRK "))
    r = json.loads(line[4:])
    return {
        "req_s": r["requests"] / (r["duration_us"] / 1e6),
        "p50": r["p50"] / 1000,
        "p95": r["p95"] / 1000,
        "p99": r["p99"] / 1000,
        "errors": r["socket_errors"] + r["non2xx"],
        "requests": r["requests"],
    }


async def _client(
    url: str, contexts: list[list[float]], k: int, connections: int, warmup: float, seconds: float
) -> tuple[list[float], int]:
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


def _runqueue_seconds(pid: int) -> float:
    """Time the threads of process ``pid`` spent runnable but waiting for a CPU (Linux
    ``/proc/PID/task/*/schedstat``, second field; 0 elsewhere). On a shared machine this
    tells other processes' preemption apart from the server's own pauses."""
    total = 0
    for f in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(f.read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


def bench(n_items: int, a: argparse.Namespace, client: str, tmp_path: Path) -> dict[str, Any]:
    """Serve the model for ``n_items`` and load it with ``client``; the row's figures."""
    from offrec.sim import World, WorldConfig

    folder = tmp_path / f"items-{n_items}"
    model = make_model(folder, n_items)
    world = World(WorldConfig(n_items=n_items, n_users=2000), seed=0)
    obs = world.observe(world.new_sessions(1000, np.random.default_rng(0)))
    contexts = [[round(float(v), 6) for v in row] for row in obs]
    ready = folder / "ready.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "offrec.cli",
            "serve",
            str(model),
            "--log",
            str(folder / "log"),
            "--port",
            "0",
            "--ready-file",
            str(ready),
            "--max-k",
            str(a.k),
        ],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:
        while not ready.is_file():
            if server.poll() is not None:
                raise RuntimeError("offrec serve exited before it was ready")
            time.sleep(0.05)
        url = json.loads(ready.read_text())["url"]
        import httpx

        def wal_records() -> int:
            return int(httpx.get(url + "/v1/health").json()["wal"]["records"])

        if client == "wrk":
            script = folder / "bench.lua"
            script.write_text(wrk_script([json.dumps({"context": c, "k": a.k}) for c in contexts]))
            run_wrk(url, script, a.connections, a.warmup)
            cpu0, n0 = _cpu_seconds(server.pid), wal_records()
            wait0, t0 = _runqueue_seconds(server.pid), time.perf_counter()
            row = run_wrk(url, script, a.connections, a.seconds)
            label = f"wrk 1 thread x {a.connections} conn"
        else:
            cpu0, n0 = _cpu_seconds(server.pid), wal_records()
            wait0, t0 = _runqueue_seconds(server.pid), time.perf_counter()
            job = (url, contexts, a.k, a.connections, a.warmup, a.seconds)
            if a.procs == 1:
                results = [_client_proc(job)]
            else:
                with mp.get_context("spawn").Pool(a.procs) as pool:
                    results = pool.map(_client_proc, [job] * a.procs)
            lat = np.array([x for r, _ in results for x in r]) * 1000
            p50, p95, p99 = np.percentile(lat, [50, 95, 99])
            row = {
                "req_s": lat.size / a.seconds,
                "p50": p50,
                "p95": p95,
                "p99": p99,
                "errors": sum(e for _, e in results),
            }
            label = f"httpx {a.procs} proc x {a.connections} conn"
        server_cpu = _cpu_seconds(server.pid) - cpu0
        waited = (_runqueue_seconds(server.pid) - wait0) / (time.perf_counter() - t0)
        wal = httpx.get(url + "/v1/health").json()["wal"]
        served = wal["records"] - n0
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=120)
    return {
        **row,
        "client": label,
        "per_fsync": wal["records_per_batch"],
        "cpu_ms": 1000 * server_cpu / max(served, 1),
        "waited": waited,
        "policy": "linucb dense" if n_items <= DENSE_MAX_ITEMS else "hybrid sparse",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", default="100,100000", help="catalog sizes, comma-separated")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--connections", type=int, default=32, help="per client process")
    ap.add_argument("--procs", type=int, default=1, help="client processes (httpx only)")
    ap.add_argument(
        "--client",
        choices=["auto", "wrk", "httpx"],
        default="auto",
        help="load generator (auto: wrk when on the PATH, else httpx)",
    )
    a = ap.parse_args()
    client = a.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "httpx"
    elif client == "wrk" and not shutil.which("wrk"):
        raise SystemExit("--client wrk: wrk is not on the PATH (apt-get install wrk)")
    sizes = [int(v) for v in a.items.split(",")]
    print(f"load generator: {client}; fsync on (every answer waits for its group commit)")
    print(
        "| items | policy | k | client | req/s | p50 ms | p95 ms | p99 ms | errors | "
        "records/fsync | server CPU ms/req | server waiting for a CPU | load (1/5/15 min) |"
    )
    print("|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for n_items in sizes:
            r = bench(n_items, a, client, Path(tmp))
            load = os.getloadavg()
            print(
                f"| {n_items:,} | {r['policy']} | {a.k} | {r['client']} | {r['req_s']:,.0f} | "
                f"{r['p50']:.1f} | {r['p95']:.1f} | {r['p99']:.1f} | {r['errors']} | "
                f"{r['per_fsync']:.1f} | {r['cpu_ms']:.2f} | {r['waited']:.2f} s/s | "
                f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
