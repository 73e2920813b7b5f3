"""Large catalogs end to end, each step as a whole process (issue 23): wall time and peak RSS.

For catalogs of 100, 10^4, 10^5 and 10^6 items:

1. ``offrec simulate --n-items N --candidates M --floor 0.05`` (two-stage softmax logger);
2. **train**: the shared-parameter learner (:class:`HybridLinear`, greedy over its top 20,
   10% uniform over them) fitted on every row of the log, streamed in batches
   (``python -m benchmarks.bench_catalog train``; the learner is not a CLI/persisted
   learner yet, so this process stands in for ``offrec train bandit``);
3. **evaluate**: :func:`offrec.ope.evaluate` of that learner with IPS, SNIPS, DR, MIPS,
   SN-MIPS and OffCEM (normal intervals; DR/OffCEM read the learner's own (context, item)
   model; MIPS the ``pscore_group`` column the two-stage logger wrote, so the logger is not
   rebuilt: what remains per catalog size is the target's exact retrieval, one scan of the
   catalog per distinct user),
   ``python -m benchmarks.bench_catalog evaluate``.

Each step runs under ``/usr/bin/time -v``; the table shows its wall time and peak RSS, and
the ratio of evaluate at the largest catalog to evaluate at 100 items with the same rows.

Run: ``.venv/bin/python -m benchmarks.bench_catalog [--sizes 100 1000000] [--rows 1000000]
[--big-rows 10000000] [--dir /tmp/offrec-bench-catalog]``
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks._table import print_table

ESTIMATORS = "ips,snips,dr,mips,snmips,offcem"


def _world(log: str):  # noqa: ANN202
    from offrec.logs.scan import open_log
    from offrec.sim import World, WorldConfig

    meta = open_log(log).metadata
    return World(WorldConfig.from_dict(meta["world_config"]), seed=meta.get("world_seed") or 0)


def _learner(world, n_items: int):  # noqa: ANN001, ANN202
    from offrec.policies.bandits.hybrid import HybridLinear, catalog_features

    return HybridLinear(
        catalog_features(world), world.context_dim, candidates=min(20, n_items), epsilon=0.1
    )


def train(log: str, model: str) -> None:
    from offrec.logs.scan import iter_batches, open_log

    world = _world(log)
    h = _learner(world, world.n_actions)
    for batch in iter_batches(open_log(log), batch_size=262_144):
        d = batch.data
        h.partial_fit(d.context, d.action, d.reward)
    np.savez(model, A=h.A, b=h.b)
    print(f"trained on {world.n_actions:,} items; truth not computed")


def evaluate_(log: str, model: str) -> None:
    from offrec.ope import evaluate

    world = _world(log)
    h = _learner(world, world.n_actions)
    with np.load(model) as z:
        h.A, h.b = z["A"], z["b"]
    h._refresh()
    res = evaluate(
        log, {"hybrid": h}, estimators=ESTIMATORS.split(","), reward_model=h, interval="normal"
    )
    print(res.table[["estimator", "value", "low", "high", "ess"]].to_string(index=False))


def _timed(cmd: list[str]) -> tuple[float, float, str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")]
        ),
    }
    t = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if p.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{p.stdout}\n{p.stderr}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))  # type: ignore[union-attr]
    return wall, rss / 1024**2, p.stdout


def main(sizes: list[int], rows: int, big_rows: int, folder: Path) -> None:
    py = sys.executable
    offrec = [py, "-c", "import sys; from offrec.cli import main; sys.exit(main())"]
    table, evals = [], {}
    for n in sizes:
        n_rows = big_rows if n in (100, 1_000_000) else rows
        d = folder / f"items{n}"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        log, model = str(d / "log"), str(d / "model.npz")
        load = os.getloadavg()[0]
        steps = {
            "simulate": [
                *offrec,
                "simulate",
                "--out",
                log,
                "--n-items",
                str(n),
                "--candidates",
                str(min(200, n)),
                "--floor",
                "0.05",
                "--n-decisions",
                str(n_rows),
            ],
            "train (hybrid)": [py, "-m", "benchmarks.bench_catalog", "train", log, model],
            f"evaluate ({ESTIMATORS})": [
                py,
                "-m",
                "benchmarks.bench_catalog",
                "evaluate",
                log,
                model,
            ],
        }
        for step, cmd in steps.items():
            wall, gib, out = _timed(cmd)
            table.append(
                [f"{n:,}", f"{n_rows:,}", step, f"{wall:.1f}", f"{gib:.2f}", f"{load:.1f}"]
            )
            if step.startswith("evaluate"):
                evals[n, n_rows] = wall
                print(out, flush=True)
            print(table[-1], flush=True)
    print_table(
        "Large catalogs, each step a whole process (/usr/bin/time -v)",
        ["items", "rows", "step", "wall s", "peak RSS GiB", "load (1 min) at start"],
        table,
    )
    for (n, r), wall in evals.items():
        if n != 100 and (100, r) in evals:
            print(
                f"evaluate at {n:,} items / at 100 items, {r:,} rows: {wall / evals[100, r]:.2f}x"
            )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("train", "evaluate"):
        (train if sys.argv[1] == "train" else evaluate_)(sys.argv[2], sys.argv[3])
        raise SystemExit(0)
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", type=int, nargs="*", default=[100, 10_000, 100_000, 1_000_000])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--big-rows", type=int, default=10_000_000)
    p.add_argument("--dir", type=Path, default=Path("/tmp/offrec-bench-catalog"))
    a = p.parse_args()
    main(a.sizes, a.rows, a.big_rows, a.dir)
