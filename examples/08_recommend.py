"""Step 8 — the demo: a user profile in, a recommendation out.

A LinUCB bandit learns online in offrec's default world (bandit mode), then
``offrec.recommend.recommend`` ranks the items for a profile written by hand
(topic preferences such as ``"sports=0.9,news=0.1"``) and for a real user of the
world, whose true click probabilities we can hold the recommendation against.
The same from the command line, with a saved model: ``offrec recommend MODEL --profile ...``.

    python examples/08_recommend.py [--small]
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np

from offrec.policies import LinUCB, run_online
from offrec.recommend import recommend
from offrec.sim import World, WorldConfig


def main(small: bool = False, seed: int = 0, verbose: bool = True) -> dict[str, Any]:
    say = print if verbose else (lambda *a, **k: None)
    world = World(WorldConfig(), seed=0)
    bandit = LinUCB(world.n_actions, world.context_dim, alpha=0.5)
    run_online(world, bandit, 20_000 if small else 100_000, batch_size=1_000, seed=seed)
    model = bandit.exploit()

    profile = "sports=0.9,news=0.1"
    (table,) = recommend(model, world, profile, k=5)
    say(f"profile {profile!r}: top 5")
    say(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))

    user = 42
    (mine,) = recommend(model, world, world.user_obs_profile[user].astype(np.float64), k=5)
    q = 1.0 / (1.0 + np.exp(-world.base_logits(np.array([user]))[0]))  # true click probs
    top = int(mine["item"].iloc[0])
    prof = {
        t: round(float(v), 2)
        for t, v in zip(world.topics, world.user_obs_profile[user], strict=True)
    }
    say(f"\nuser {user} (observed profile {prof}):")
    say(mine.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    rank = int((q > q[top]).sum()) + 1
    say(
        f"true click probability of the top item {q[top]:.3f}; the user's best item "
        f"{q.max():.3f}; the average item {q.mean():.3f}; the top item is the user's "
        f"#{rank} of {world.n_actions}"
    )
    return {
        "table": table,
        "user_table": mine,
        "q_top": float(q[top]),
        "q_best": float(q.max()),
        "q_mean": float(q.mean()),
        "rank": rank,
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", default=bool(os.environ.get("OFFREC_SMALL")))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    main(args.small, args.seed)
