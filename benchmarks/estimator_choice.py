"""The estimator chosen from the log and the decision gate, on offrec's own world
(issue 26, items 2-3), judged against the simulator's truth.

For each seed: ``pipelines/session_rl.toml``'s logs, trained policies and held-out 30%
(the stages of ``benchmarks.session_ope_study``, cached under ``--out``), then the
pipeline's own OPE stage (``mb, pdis, wpdis, dr, mis``, normal intervals) and its gate.
Per seed it prints the estimator each check kept or refused, the chosen one and its
mean relative error over the learned policies, the gate's verdict and whether it was
right: a recommendation is right when the pick's true value is above the logger's; a
"cannot tell" is counted apart (and is a missed chance when some deployable policy is
truly better than the logger by more than 5%).

Run: ``PYTHONPATH=. python -m benchmarks.estimator_choice [--seeds 0 1] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks._table import print_table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--out", type=Path, default=Path("runs/session_ope_study"))
    args = p.parse_args()

    import dataclasses

    import torch

    from benchmarks.session_ope_study import _config, load_seed
    from offrec.ope.gate import decide
    from offrec.pipeline import ope_stage, roles

    torch.set_num_threads(1)
    rows = []
    for s in args.seeds:
        cfg = dataclasses.replace(_config(("mb", "pdis", "wpdis", "dr", "mis")), seed=s)
        _, held, targets, truth = load_seed(s, args.out)
        t = time.perf_counter()
        table, res = ope_stage(cfg, held, targets, lambda m: None)
        role = roles(cfg)

        def paired(a: str, b: str, e: str, res=res) -> tuple[float, float, float]:
            iv = res.compare(a, b, e)
            return iv.value, iv.low, iv.high

        dec = decide(
            table,
            role,
            mode="session",
            alpha=cfg.ope.alpha,
            paired=paired,
            choice=res.choice,
            value_label="clicks per session",
        )
        secs = time.perf_counter() - t
        choice = res.choice
        assert choice is not None
        learned = [n for n, r in role.items() if r == "learned" and n in truth]
        chosen = choice.estimator
        err = (
            np.mean(
                [
                    abs(
                        table[(table.policy == n) & (table.estimator == chosen)]["value"].iloc[0]
                        - truth[n]
                    )
                    / truth[n]
                    for n in learned
                ]
            )
            if chosen
            else float("nan")
        )
        logger_true = truth["logger"]
        best_true = max(truth[n] for n in learned)
        if dec.verdict == "recommend":
            right = "yes" if truth[dec.pick or ""] > logger_true else "NO (a loser shipped)"
        else:
            missed = best_true > 1.05 * logger_true
            right = "declined" + (" (a >5% better policy existed)" if missed else "")
        refused = "; ".join(f"{c.estimator}: {c.reasons[0]}" for c in choice.checks if not c.passed)
        rows.append(
            [
                s,
                chosen or "none",
                ", ".join(choice.passed) or "none",
                refused or "-",
                100 * err,
                dec.verdict,
                dec.best or "-",
                f"{truth.get(dec.best or '', float('nan')):.3f} vs logger {logger_true:.3f}",
                right,
                f"{secs:.0f}s",
            ]
        )
        print(f"seed {s}: {secs:.0f}s; " + " | ".join(dec.sentences[:2]), flush=True)
    print_table(
        "Estimator chosen from the log and the gate's decision, pipelines/session_rl.toml "
        "(held-out 30%), against the simulator's truth",
        [
            "seed",
            "chosen",
            "passed the checks",
            "refused (first reason)",
            "chosen: mean rel.err % (learned)",
            "gate",
            "best candidate",
            "its true value",
            "gate right?",
            "OPE time",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
