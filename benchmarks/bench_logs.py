"""Log generation speed (collect -> Parquet) and peak memory while writing 20M rows.

Run: ``.venv/bin/python -m benchmarks.bench_logs`` (``--rows N`` to change the logged
decisions, ``--quick`` for the whole-process table alone).

Tables:

1. in-process ``collect()`` rates for every logger, bandit and session mode (H = 10);
2. **whole process**: a fresh ``python`` that imports offrec, builds the world and the
   logger and writes ``--rows`` decisions to Parquet (``n_decisions``, 100 items, context
   dim 18, default chunks), wall time from start to exit, with the writer's worker
   thread (two cohorts in flight, the default) and without (``overlap=False``); next to
   OBP's in-memory ``SyntheticBanditDataset.obtain_batch_bandit_feedback`` (100 actions,
   context dim 16, binary logistic rewards, its default softmax behaviour policy; generation
   only, imports excluded: favourable to OBP) at 20,000 and 200,000 rounds (its rows/s
   falls as the rounds grow; the ratios use its fastest rate) when an OBP environment is found
   (``OBP_PYTHON``, default ``/tmp/venv-obp/bin/python``; built by
   ``shared/reference/setup_obp.sh``; OBP is never a dependency of offrec);
3. peak memory of a 20M-row softmax log.

Every process runs with one BLAS/OpenMP thread; wall times are the best of ``--repeat``
runs (the least disturbed by other jobs on a shared machine).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._table import peak_rss_mb_of, print_table

ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

OBP_CODE = """
import json, time, warnings
warnings.filterwarnings("ignore")
from obp.dataset import SyntheticBanditDataset, logistic_reward_function
ds = SyntheticBanditDataset(n_actions=100, dim_context=16, reward_type="binary",
                            reward_function=logistic_reward_function, random_state=0)
t = time.perf_counter()
fb = ds.obtain_batch_bandit_feedback(n_rounds={n})
print(json.dumps({{"rows": int(fb["n_rounds"]), "seconds": time.perf_counter() - t}}))
"""


def _whole_process(kind: str, horizon: int, n_rows: int, out: Path, overlap: bool) -> float:
    code = (
        "from offrec.logs import collect\n"
        "from offrec.policies.loggers import logging_policy\n"
        "from offrec.sim import World, WorldConfig\n"
        f"w = World(WorldConfig(horizon={horizon}), seed=0)\n"
        f"collect(w, logging_policy(w, {kind!r}), out={str(out)!r}, n_decisions={n_rows},"
        f" seed=0, overwrite=True, overlap={overlap})\n"
    )
    env = {**os.environ, **ONE_THREAD}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    return time.perf_counter() - t


def _obp_rate(n_rows: int, repeat: int) -> float | None:
    python = os.environ.get("OBP_PYTHON", "/tmp/venv-obp/bin/python")
    if not Path(python).exists():
        print(f"(no OBP environment at {python}: OBP not measured)")
        return None
    import json

    best = 0.0
    for _ in range(repeat):
        proc = subprocess.run(
            [python, "-c", OBP_CODE.format(n=n_rows)],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, **ONE_THREAD},
        )
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        best = max(best, res["rows"] / res["seconds"])
    return best


def whole_process_table(n_rows: int, repeat: int, tmp: Path, obp_sizes: tuple[int, ...]) -> None:
    # OBP's rows/s falls as n_rounds grows (its generation is not linear in n): measure it
    # at each size and compare with its fastest rate, the one most favourable to OBP
    obp = {m: _obp_rate(m, repeat) for m in obp_sizes}
    best_obp = max((r for r in obp.values() if r), default=None)
    rows: list[list[object]] = []
    for horizon in (1, 10):
        mode = "bandit" if horizon == 1 else "session (H=10)"
        for kind in ("uniform", "epsilon_greedy", "softmax"):
            for overlap in (True, False):
                best = min(
                    _whole_process(kind, horizon, n_rows, tmp / "wp", overlap)
                    for _ in range(repeat)
                )
                rate = n_rows / best
                ratio = f"{rate / best_obp:.1f}x" if best_obp and horizon == 1 else "-"
                rows.append([mode, kind, "yes" if overlap else "no", n_rows, best, rate, ratio])
    for m, rate in obp.items():
        if rate:
            rows.append(
                [
                    "bandit",
                    "OBP SyntheticBanditDataset (in memory)",
                    "-",
                    m,
                    m / rate,
                    rate,
                    f"{rate / best_obp:.2f}x" if best_obp else "-",
                ]
            )
    print_table(
        f"Whole process (fresh python: imports, world, logger, {n_rows:,} rows to Parquet), "
        f"1 BLAS thread, best of {repeat}; ratios against OBP's fastest rate",
        [
            "mode",
            "logging policy",
            "encode in worker thread",
            "rows",
            "wall s",
            "rows/s",
            "vs OBP (in memory)",
        ],
        rows,
    )


def main(
    n_rows: int = 2_000_000, big_rows: int = 20_000_000, repeat: int = 3, quick: bool = False
) -> None:
    from offrec.logs import collect, read_logs
    from offrec.policies.loggers import logging_policy
    from offrec.sim import World, WorldConfig

    tmp = Path(tempfile.mkdtemp(prefix="offrec-bench-"))
    try:
        whole_process_table(n_rows, repeat, tmp, obp_sizes=(20_000, 200_000))
        if quick:
            return
        rows = []
        for horizon in (1, 10):
            world = World(WorldConfig(horizon=horizon), seed=0)
            for kind in ("uniform", "epsilon_greedy", "softmax"):
                pi = logging_policy(world, kind)
                out = tmp / f"{kind}-{horizon}"
                t = time.perf_counter()
                res = collect(world, pi, out=out, n_decisions=n_rows, seed=0)
                dt = time.perf_counter() - t
                mode = "bandit" if horizon == 1 else "session (H=10)"
                rows.append(
                    [
                        mode,
                        kind,
                        res.n_rows,
                        res.n_rows / dt,
                        sum(f.stat().st_size for f in out.iterdir()) / 2**20,
                    ]
                )
        t = time.perf_counter()
        data = read_logs(tmp / "softmax-1")
        rows.append(
            [
                "read_logs (validated)",
                "-",
                data.n_rows,
                data.n_rows / (time.perf_counter() - t),
                0.0,
            ]
        )
        print_table(
            "collect() into Parquet: 100 items, context dim 18, one process",
            ["mode", "logging policy", "rows", "rows/s", "size (MB)"],
            rows,
        )
        code = f"""
from offrec.logs import collect
from offrec.policies.loggers import logging_policy
from offrec.sim import World
w = World(seed=0)
OUT = collect(w, logging_policy(w, "softmax"), out={str(tmp / "big")!r}, n_decisions={big_rows}, seed=0).n_rows
"""
        t = time.perf_counter()
        peak, n = peak_rss_mb_of(code)
        print_table(
            f"Peak memory while writing {big_rows:,} rows (softmax logger, bandit mode, fresh process)",
            ["rows", "peak RSS (MB)", "wall s"],
            [[n, peak, time.perf_counter() - t]],
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="logged decisions per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per whole-process figure")
    parser.add_argument("--quick", action="store_true", help="only the whole-process table")
    args = parser.parse_args()
    main(args.rows, repeat=args.repeat, quick=args.quick)
