"""Log generation speed (collect -> Parquet) and peak memory while writing 20M rows.

Run: ``.venv/bin/python -m benchmarks.bench_logs``
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from benchmarks._table import peak_rss_mb_of, print_table


def main(n_rows: int = 2_000_000, big_rows: int = 20_000_000) -> None:
    from offrec.logs import collect, read_logs
    from offrec.policies.loggers import logging_policy
    from offrec.sim import World, WorldConfig

    tmp = Path(tempfile.mkdtemp(prefix="offrec-bench-"))
    rows = []
    try:
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
    main()
