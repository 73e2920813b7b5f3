"""Estimator accuracy on the default bandit world (issue 4's acceptance study).

Logger: softmax (beta 0.5) over the production model; 100k logged rows per seed.
Targets differ from the logger: the myopic oracle with epsilon 0.3, and a softmax
with beta 1.0. Prints the summary of ``evaluate_estimators`` (relative error over
``--seeds`` seeds) and the coverage of 95% bootstrap intervals over ``--coverage-seeds``.

Run: ``.venv/bin/python -m benchmarks.ope_accuracy [--seeds 20] [--coverage-seeds 200]``
"""

from __future__ import annotations

import argparse
import time

from benchmarks._table import print_table


def main(
    seeds: int = 20, coverage_seeds: int = 200, n_rows: int = 100_000, out: str | None = None
) -> None:
    from offrec.ope.evaluation import evaluate_estimators
    from offrec.policies import Head
    from offrec.policies.loggers import logging_policy
    from offrec.sim import MyopicOracle, World

    world = World(seed=0)
    logger = logging_policy(world, "softmax", beta=0.5)
    targets = {
        "myopic oracle (eps 0.3)": MyopicOracle(world, Head("epsilon_greedy", epsilon=0.3)),
        "softmax (beta 1.0)": logging_policy(world, "softmax", beta=1.0),
    }
    if seeds:
        t = time.perf_counter()
        ev = evaluate_estimators(
            world,
            logger,
            targets,
            estimators=["ips", "snips", "dm", "dr", "sndr"],
            n_rows=n_rows,
            seeds=range(seeds),
            n_bootstrap=1000,
        )
        s = ev.summary
        print_table(
            f"Relative error over {seeds} seeds ({n_rows:,} rows each, softmax logger beta 0.5), {time.perf_counter() - t:.0f}s",
            [
                "target",
                "estimator",
                "truth",
                "mean rel. error %",
                "std %",
                "bias",
                "coverage (95% bootstrap)",
            ],
            [
                [
                    r.policy,
                    r.estimator,
                    f"{r.truth:.4f}",
                    f"{100 * r.rel_error_mean:.2f}",
                    f"{100 * r.rel_error_std:.2f}",
                    f"{r.bias:+.4f}",
                    f"{r.coverage:.2f}",
                ]
                for r in s.itertuples()
            ],
        )
        if out:
            ev.plot(out)
    if coverage_seeds:
        t = time.perf_counter()
        cov = evaluate_estimators(
            world,
            logger,
            targets,
            estimators=["ips", "snips", "dr"],
            n_rows=n_rows,
            seeds=range(1000, 1000 + coverage_seeds),
            n_bootstrap=1000,
        )
        c = cov.summary
        print_table(
            f"Coverage of 95% bootstrap intervals over {coverage_seeds} seeds, {time.perf_counter() - t:.0f}s",
            ["target", "estimator", "coverage", "mean width", "mean rel. error %"],
            [
                [
                    r.policy,
                    r.estimator,
                    f"{r.coverage:.3f}",
                    f"{r.mean_width:.4f}",
                    f"{100 * r.rel_error_mean:.2f}",
                ]
                for r in c.itertuples()
            ],
        )


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--coverage-seeds", type=int, default=200)
    ap.add_argument("--n-rows", type=int, default=100_000)
    ap.add_argument("--plot", help="write the accuracy plot here")
    a = ap.parse_args()
    main(a.seeds, a.coverage_seeds, a.n_rows, a.plot)
