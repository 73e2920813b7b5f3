"""Logs of any size: ``offrec evaluate`` and ``offrec train bandit`` at 1M, 10M (and 100M) rows.

For each size a bandit log of 100 items is made with ``offrec simulate --logger uniform``
(kept in ``--dir`` between runs). Then, as whole processes (wall time and peak RSS of
the process):

- the I/O floor: pyarrow reading the columns the OPE kernel needs, batch by batch;
- ``offrec train bandit LOG --learner linucb`` (streamed ridge sums);
- ``offrec evaluate LOG --policy LINUCB --estimators ips,snips,dr`` with the default
  interval (bootstrap, 1000 resamples) and the recommended reward model;

each on the local engine and, with ``--engines local,ray``, on a local Ray (2 CPUs; its
start-up is measured apart). ``python -m benchmarks.bench_scale --sizes 1e6,1e7``;
100M rows (4.6 GB of Parquet, minutes per command) with ``--sizes 1e8``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks._table import print_table

OFFREC = [str(Path(sys.executable).parent / "offrec")]


def measure(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of ``cmd`` run as its own process."""
    probe = (
        "import json, resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)\n"
        "dt = time.perf_counter() - t\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
        "print(json.dumps([dt, peak]))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", probe, *cmd], capture_output=True, text=True, check=True, env=env
    )
    dt, peak = json.loads(out.stdout.strip().splitlines()[-1])
    return float(dt), float(peak)


READ = """
import sys, pyarrow.parquet as pq
from offrec.logs.scan import open_log, read_columns
src = open_log(sys.argv[1])
cols = read_columns(src)
n = 0
for f in src.files:
    for b in pq.ParquetFile(f).iter_batches(batch_size=65536, columns=cols):
        n += b.num_rows
assert n == src.n_rows
"""

RAY_INIT = """
import time
from offrec.engines.ray import start
import ray
t = time.perf_counter(); start(num_cpus=2); print(time.perf_counter() - t); ray.shutdown()
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1e6,1e7", help="rows per log, comma-separated")
    ap.add_argument("--engines", default="local,ray")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/offrec-scale"))
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    engines = [e for e in args.engines.split(",") if e]
    rows = []
    if "ray" in engines:
        out = subprocess.run([sys.executable, "-c", RAY_INIT], capture_output=True, text=True)
        rows.append(["ray.init (local, 2 CPUs)", "-", "-", float(out.stdout.split()[-1]), "-", "-"])
    for size in (int(float(s)) for s in args.sizes.split(",")):
        log = args.dir / f"log-{size}"
        if not log.exists():
            t = time.perf_counter()
            subprocess.run(
                [
                    *OFFREC,
                    "-q",
                    "simulate",
                    "--out",
                    str(log),
                    "--n-decisions",
                    str(size),
                    "--n-items",
                    "100",
                    "--logger",
                    "uniform",
                    "--seed",
                    "1",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            print(f"simulated {size:,} rows in {time.perf_counter() - t:.0f} s", flush=True)
        dt, peak = measure([sys.executable, "-c", READ, str(log)])
        floor = dt
        rows.append(["read kernel columns (pyarrow)", f"{size:,}", "local", dt, size / dt, peak])
        for engine in engines:
            model = args.dir / f"linucb-{size}-{engine}"
            dt, peak = measure(
                [
                    *OFFREC,
                    "-q",
                    "train",
                    "bandit",
                    str(log),
                    "--learner",
                    "linucb",
                    "--head",
                    "epsilon_greedy:0.1",
                    "--out",
                    str(model),
                    "--overwrite",
                    "--engine",
                    engine,
                ]
            )
            rows.append(["train bandit --learner linucb", f"{size:,}", engine, dt, size / dt, peak])
            dt, peak = measure(
                [
                    *OFFREC,
                    "-q",
                    "evaluate",
                    str(log),
                    "--policy",
                    str(model),
                    "--estimators",
                    "ips,snips,dr",
                    "--engine",
                    engine,
                ]
            )
            rows.append(
                ["evaluate ips,snips,dr (bootstrap 1000)", f"{size:,}", engine, dt, size / dt, peak]
            )
            if engine == "local":
                rows[-1][0] += f" [{dt / floor:.1f}x the read]"
            print(rows[-1], flush=True)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print_table(
        f"Logs of any size (whole processes; peak RSS of the process; load average {load})",
        ["command", "rows", "engine", "wall s", "rows/s", "peak RSS MB"],
        rows,
    )


if __name__ == "__main__":
    main()
