"""Step 2 — the epsilon-greedy bandit on three items with known click probabilities.

The textbook start: three items whose true click probabilities are 0.2, 0.5 and 0.7,
an epsilon-greedy agent (epsilon = 0.1) that keeps an incremental mean per item,
``Q_a <- Q_a + (r - Q_a) / n_a``, and 1,000 steps, one decision at a time. The world
is written down with ``WorldConfig.bernoulli``; the agent is offrec's ``EpsilonGreedy``
run by ``run_online`` (batch size 1: it updates after every decision).

It prints the learned values next to the truth with their standard errors
``sqrt(p (1 - p) / n_a)``, which item the agent would now pick, and, over many seeds,
how often that is the best item.

    python examples/02_epsilon_greedy.py [--small]
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np

from offrec.policies import EpsilonGreedy, run_online
from offrec.sim import World, WorldConfig

TRUE_PROBS = [0.2, 0.5, 0.7]


def learn(n_steps: int = 1_000, epsilon: float = 0.1, seed: int = 0) -> EpsilonGreedy:
    """One epsilon-greedy run of ``n_steps`` single decisions on the three-item world."""
    world = World(WorldConfig.bernoulli(TRUE_PROBS), seed=0)
    agent = EpsilonGreedy(n_actions=3, epsilon=epsilon)
    run_online(world, agent, n_steps, batch_size=1, seed=seed)
    return agent


def main(small: bool = False, seed: int = 0, verbose: bool = True) -> dict[str, Any]:
    say = print if verbose else (lambda *a, **k: None)
    agent = learn(1_000, 0.1, seed)
    p = np.asarray(TRUE_PROBS)
    n = agent.counts
    se = np.sqrt(p * (1 - p) / np.maximum(n, 1))
    say("epsilon-greedy (epsilon 0.1), 1,000 steps")
    say(" item  true p  learned Q  pulls  std. error  |Q - p| / se")
    for a in range(3):
        say(
            f"  {a}    {p[a]:.2f}    {agent.values[a]:.3f}    {int(n[a]):5d}   {se[a]:.3f}"
            f"       {abs(agent.values[a] - p[a]) / se[a]:.2f}"
        )
    pick = int(np.argmax(agent.values))
    say(f"the agent now picks item {pick} (the best is item {int(np.argmax(p))})")
    world = World(WorldConfig.bernoulli(TRUE_PROBS), seed=0)
    greedy = world.true_value(agent.exploit()).value
    acting = world.true_value(agent).value
    say(
        f"true CTR of its greedy policy {greedy:.3f}; of its epsilon-greedy policy {acting:.3f} "
        f"(epsilon costs {epsilon_cost(p, 0.1):.3f}: epsilon * (max p - mean p))"
    )

    n_seeds = 10 if small else 100
    picks = np.array([int(np.argmax(learn(1_000, 0.1, s).values)) for s in range(1, n_seeds + 1)])
    share = float(np.mean(picks == 2))
    say(
        f"over {n_seeds} more seeds it picks item 2 in {share:.0%} of runs "
        f"(item 1 in {np.mean(picks == 1):.0%}, item 0 in {np.mean(picks == 0):.0%})"
    )
    return {
        "values": agent.values.copy(),
        "counts": n.copy(),
        "stderr": se,
        "pick": pick,
        "greedy_value": greedy,
        "acting_value": acting,
        "share_best": share,
    }


def epsilon_cost(p: np.ndarray, epsilon: float) -> float:
    """What exploring costs per decision once the values are right: ``eps (max p - mean p)``."""
    return float(epsilon * (p.max() - p.mean()))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", default=bool(os.environ.get("OFFREC_SMALL")))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    main(args.small, args.seed)
