"""Bandit learners in the default bandit world (100 items): speed and how close to the oracle.

Online: each learner runs ``--steps`` decisions in batches of ``--batch-size`` (sample ->
world.step -> partial_fit). Columns: decisions per second of the whole loop and of the
learner alone, final windowed CTR (realized clicks and expected clicks over the last 5% of
decisions), the expected CTR as % of the myopic oracle's on the same users, and the true
value of the learned greedy policy (``exploit()``). UCB1 is a sequential algorithm: with a
batch of 1000 every row of a round gets the same arm, so it also runs with small batches.

Offline: each learner is fitted on ``--log-rows`` rows of a uniform log; true value of the
learned (greedy) policy.

Run: ``.venv/bin/python -m benchmarks.bench_bandits [--steps 100000] [--plot curves.png]``
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from benchmarks._table import print_table


def online_learners(obs_dim: int) -> list[tuple[str, Any, int]]:
    from offrec.policies.bandits import (
        UCB1,
        BernoulliTS,
        EpsilonGreedy,
        LinTS,
        LinUCB,
        LogisticEpsilonGreedy,
    )

    return [
        ("EpsilonGreedy(eps=0.05)", EpsilonGreedy(100, 0.05), 0),
        ("UCB1", UCB1(100), 0),
        ("UCB1", UCB1(100), 10),
        ("BernoulliTS", BernoulliTS(100), 0),
        ("LinUCB(alpha=0.5)", LinUCB(100, obs_dim), 0),
        ("LinTS(scale=0.3)", LinTS(100, obs_dim), 0),
        ("LogisticEpsilonGreedy(eps=0.05)", LogisticEpsilonGreedy(100, obs_dim, 0.05), 0),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000, help="online decisions per learner")
    parser.add_argument("--batch-size", type=int, default=1000, help="decisions per update")
    parser.add_argument("--log-rows", type=int, default=100_000, help="rows of the uniform log")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", default=None, help="write the learning curves to this PNG")
    args = parser.parse_args()

    from offrec.policies import UniformPolicy
    from offrec.policies.bandits import LinUCB, LogisticEpsilonGreedy
    from offrec.policies.offline import IPWLearner, RewardModelGreedy, fit_logged
    from offrec.policies.online import run_online
    from offrec.report.learning_curves import plot_learning_curves
    from offrec.sim import BestItemOracle, MyopicOracle, World, WorldConfig

    world = World(WorldConfig(), seed=0)
    oracle = world.true_value(MyopicOracle(world)).value
    best_item = world.true_value(BestItemOracle(world)).value
    print(
        f"default bandit world: 100 items, obs_dim {world.context_dim}; myopic oracle {oracle:.4f}, "
        f"best single item {best_item:.4f}, uniform {world.true_value(UniformPolicy(100)).value:.4f}"
    )

    rows, curves = [], {}
    for name, learner, batch in online_learners(world.context_dim):
        batch = batch or args.batch_size
        curve = run_online(world, learner, args.steps, batch_size=batch, seed=args.seed)
        greedy = world.true_value(learner.exploit()).value
        rows.append(
            [
                name,
                batch,
                curve.decisions_per_second,
                curve.learner_decisions_per_second,
                f"{curve.final_ctr:.4f}",
                f"{curve.final_expected_ctr:.4f}",
                f"{100 * curve.final_expected_ctr / curve.final_oracle_ctr:.1f}%",
                f"{greedy:.4f} ({100 * greedy / oracle:.1f}%)",
                f"{curve.cumulative_regret[-1]:,.0f}",
            ]
        )
        if batch == args.batch_size:
            curves[name] = curve
    print_table(
        f"Online, {args.steps:,} decisions (seed {args.seed})",
        [
            "learner",
            "batch",
            "decisions/s (loop)",
            "decisions/s (learner)",
            "final CTR",
            "final expected CTR",
            "% of oracle",
            "greedy value after",
            "regret",
        ],
        rows,
    )

    log = world.run_sessions(
        UniformPolicy(100), args.log_rows, np.random.default_rng(args.seed + 1)
    )
    offline: list[tuple[str, Any]] = [
        ("RewardModelGreedy(per_item_logistic)", lambda: RewardModelGreedy().fit(log)),
        ("RewardModelGreedy(logistic)", lambda: RewardModelGreedy("logistic").fit(log)),
        ("IPWLearner", lambda: IPWLearner().fit(log)),
        (
            "LinUCB via fit_logged",
            lambda: fit_logged(LinUCB(100, world.context_dim), log).exploit(),
        ),
        (
            "LogisticEpsilonGreedy via fit_logged",
            lambda: fit_logged(LogisticEpsilonGreedy(100, world.context_dim), log).exploit(),
        ),
    ]
    rows = []
    for name, make in offline:
        t = time.perf_counter()
        policy = make()
        seconds = time.perf_counter() - t
        value = world.true_value(policy).value
        rows.append([name, f"{seconds:.2f}", f"{value:.4f}", f"{100 * value / oracle:.1f}%"])
    print_table(
        f"Offline, {args.log_rows:,} rows of a uniform log (greedy policies)",
        ["learner", "fit seconds", "true value", "% of oracle"],
        rows,
    )
    if args.plot:
        path = plot_learning_curves(
            curves,
            args.plot,
            title="Default bandit world, online learning",
            references={"best single item": best_item},
        )
        print(f"\nlearning curves written to {path}")


if __name__ == "__main__":
    main()
