"""Large catalogs end to end, each step as a whole process (issue 23): wall time and peak RSS.

For catalogs of 100, 10^4, 10^5 and 10^6 items (``--big-rows`` rows at 100 and 10^6,
``--rows`` at the others):

1. ``offrec simulate --n-items N --candidates M --floor 0.05`` (two-stage softmax logger);
2. ``offrec train bandit LOG --learner hybrid --param candidates=20 --param epsilon=0.1``:
   the shared-parameter learner (:class:`HybridLinear`) fitted on every row, streamed
   (``--retrieval ivf`` adds ``--param retrieval=ivf``: an approximate index);
3. **evaluate**: :func:`offrec.ope.evaluate` of the saved model with IPS, SNIPS, DR, MIPS,
   SN-MIPS and OffCEM (normal intervals; DR/OffCEM read the learner's own (context, item)
   model, which ``offrec evaluate`` cannot name yet, hence
   ``python -m benchmarks.bench_catalog evaluate LOG MODEL``; MIPS reads the
   ``pscore_group`` column the two-stage logger wrote). What remains per catalog size is
   the target's retrieval, once per distinct user (10^4): exact by default
   (:mod:`offrec.policies.retrieval`), its recall@20 printed with ``--retrieval ivf``.

Each step runs under ``/usr/bin/time -v``; the table shows its wall time and peak RSS, the
1-minute load average at its start, and the ratio of evaluate at each catalog to evaluate
at 100 items with the same rows (the issue's bar: <= 3x at 10^6 items).

Run: ``.venv/bin/python -m benchmarks.bench_catalog [--sizes 100 1000000] [--rows 1000000]
[--big-rows 10000000] [--retrieval exact|ivf] [--dir /tmp/offrec-bench-catalog]``
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

from benchmarks._table import print_table

ESTIMATORS = "ips,snips,dr,mips,snmips,offcem"
RECALL_ROWS = 2048


def evaluate_(log: str, model: str) -> None:
    from offrec.logs.scan import iter_batches, open_log
    from offrec.models import load_model
    from offrec.ope import evaluate

    h = load_model(model)
    res = evaluate(
        log, {"hybrid": h}, estimators=ESTIMATORS.split(","), reward_model=h, interval="normal"
    )
    print(res.table[["estimator", "value", "low", "high", "ess"]].to_string(index=False))
    if h.retrieval == "ivf":  # on a sample: the exact search it needs costs like the log's
        context = next(iter(iter_batches(open_log(log), batch_size=RECALL_ROWS))).data.context
        print(
            f"retrieval ivf (nlist {h.retriever.nlist}, nprobe {h.retriever.nprobe}): "
            f"recall@{h.candidates} {h.retrieval_recall(context):.4f} over the distinct "
            f"contexts of the first {RECALL_ROWS:,} rows"
        )


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


def main(sizes: list[int], rows: int, big_rows: int, folder: Path, retrieval: str) -> None:
    py = sys.executable
    offrec = [py, "-c", "import sys; from offrec.cli import main; sys.exit(main())"]
    table, evals = [], {}
    for n in sizes:
        n_rows = big_rows if n in (100, 1_000_000) else rows
        d = folder / f"items{n}"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        log, model = str(d / "log"), str(d / "model")
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
                "-q",
            ],
            "train (offrec train bandit --learner hybrid)": [
                *offrec,
                "train",
                "bandit",
                log,
                "--learner",
                "hybrid",
                "--param",
                f"candidates={min(20, n)}",
                "--param",
                "epsilon=0.1",
                *(["--param", "retrieval=ivf"] if retrieval == "ivf" else []),
                "--out",
                model,
                "-q",
            ],
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
            load = os.getloadavg()[0]
            wall, gib, out = _timed(cmd)
            table.append(
                [f"{n:,}", f"{n_rows:,}", step, f"{wall:.1f}", f"{gib:.2f}", f"{load:.1f}"]
            )
            if step.startswith("evaluate"):
                evals[n, n_rows] = wall
                print(out, flush=True)
            print(table[-1], flush=True)
    print_table(
        f"Large catalogs, each step a whole process (/usr/bin/time -v), retrieval {retrieval}",
        ["items", "rows", "step", "wall s", "peak RSS GiB", "load (1 min) at start"],
        table,
    )
    for (n, r), wall in evals.items():
        if n != 100 and (100, r) in evals:
            print(
                f"evaluate at {n:,} items / at 100 items, {r:,} rows: {wall / evals[100, r]:.2f}x"
            )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "evaluate":
        evaluate_(sys.argv[2], sys.argv[3])
        raise SystemExit(0)
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", type=int, nargs="*", default=[100, 10_000, 100_000, 1_000_000])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--big-rows", type=int, default=10_000_000)
    p.add_argument("--dir", type=Path, default=Path("/tmp/offrec-bench-catalog"))
    p.add_argument("--retrieval", choices=["exact", "ivf"], default="exact")
    a = p.parse_args()
    main(a.sizes, a.rows, a.big_rows, a.dir, a.retrieval)
