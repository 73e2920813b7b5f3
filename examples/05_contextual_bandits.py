"""Step 5 — contextual bandits: the user's profile is worth using.

Two worlds. First a tiny Bernoulli world with two user types who like opposite items:
a context-free bandit can only find the item that is best *on average*, a contextual one
(LinUCB) learns the best item *per user*. Then offrec's default world (100 items,
10,000 users with topic preferences), where the same gap is what contextual targeting
earns at scale. Every value is the exact CTR (bandit mode: the truth is an average over
the user population, no sampling).

    python examples/05_contextual_bandits.py [--small]
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from offrec.policies import EpsilonGreedy, LinUCB, run_online
from offrec.sim import BestItemOracle, MyopicOracle, World, WorldConfig


def compare(world: World, n_steps: int, batch_size: int, seed: int) -> dict[str, float]:
    """Exact CTR of each learner's greedy policy after ``n_steps`` online decisions."""
    learners = {
        "epsilon-greedy (context-free)": EpsilonGreedy(world.n_actions, epsilon=0.1),
        "LinUCB (contextual)": LinUCB(world.n_actions, world.context_dim, alpha=0.5),
    }
    out = {}
    for name, learner in learners.items():
        run_online(world, learner, n_steps, batch_size=batch_size, seed=seed)
        out[name] = world.true_value(learner.exploit()).value
    out["best single item (oracle)"] = world.true_value(BestItemOracle(world)).value
    out["best item per user (oracle)"] = world.true_value(MyopicOracle(world)).value
    return out


def main(small: bool = False, seed: int = 0, verbose: bool = True) -> dict[str, Any]:
    say = print if verbose else (lambda *a, **k: None)
    two_types = World(WorldConfig.bernoulli([[0.2, 0.5, 0.7], [0.7, 0.5, 0.2]], n_users=2))
    tiny = compare(two_types, 2_000 if small else 10_000, 50, seed)
    say("two user types, click probabilities [0.2, 0.5, 0.7] and [0.7, 0.5, 0.2] (exact CTR):")
    for name, v in tiny.items():
        say(f"  {name:32s} {v:.3f}")
    world = World(WorldConfig(), seed=0)
    big = compare(world, 20_000 if small else 100_000, 1_000, seed)
    say(f"\ndefault world, {world.n_actions} items, {world.config.n_users:,} users (exact CTR):")
    for name, v in big.items():
        say(f"  {name:32s} {v:.3f}")
    return {"two_types": tiny, "default": big}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", default=bool(os.environ.get("OFFREC_SMALL")))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    main(args.small, args.seed)
