"""Step 6 — sequential sessions and user boredom.

With ``horizon > 1`` a user stays for several steps. Showing a topic raises its fatigue
``f_t``, which lowers the click probability of that topic's items
(``- boredom * f_t``) and makes the user more likely to leave. So the item with the
highest click probability *now* is not always the best choice for the session: the
myopic oracle (argmax of the true click probability) gets the most clicks per decision,
a far-sighted one (one-step lookahead with the true model) keeps users longer and gets
more clicks per session. This script shows one user's session and the two oracles'
CTR, clicks per session and session length, with standard errors.

    python examples/06_sessions_boredom.py [--small]
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np
import pandas as pd

from offrec.policies.online import session_stats
from offrec.sim import LookaheadOracle, MyopicOracle, World, WorldConfig


def main(small: bool = False, seed: int = 0, verbose: bool = True) -> dict[str, Any]:
    say = print if verbose else (lambda *a, **k: None)
    world = World(WorldConfig(horizon=10), seed=0)
    rng = np.random.default_rng(seed)
    batch = world.new_sessions(1, rng, users=np.array([7]))
    item = int(np.argmax(world.click_probs(batch)[0]))
    topic = world.topics[world.item_topic[item]]
    say(f"user 7's favourite item now: {world.item_names()[item]}; show it again and again:")
    probs = []
    for t in range(5):
        q = world.click_probs(batch)[0]
        same = world.item_topic == world.item_topic[item]
        probs.append(float(q[item]))
        say(
            f"  step {t}: click prob of that item {q[item]:.3f}, best other {topic} item "
            f"{q[same & (np.arange(world.n_actions) != item)].max():.3f}, best item of another "
            f"topic {q[~same].max():.3f}, fatigue[{topic}] {batch.fatigue[0, world.item_topic[item]]:.2f}"
        )
        world.step(batch, np.array([item]), rng)

    n = 2_000 if small else 20_000
    rows = []
    for name, policy in {
        "myopic oracle": MyopicOracle(world),
        "lookahead oracle": LookaheadOracle(world),
    }.items():
        st = session_stats(world, policy, n_sessions=n, seed=seed)
        rows.append({"policy": name, **{k: v for k, v in st.items() if k != "exact"}})
    table = pd.DataFrame(rows)
    say(f"\n{n:,} simulated sessions per policy:")
    say(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return {"repeat_probs": probs, "table": table}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", default=bool(os.environ.get("OFFREC_SMALL")))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    main(args.small, args.seed)
