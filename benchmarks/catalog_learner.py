"""The shared-parameter learner against the logger and per-item LinUCB at 100,000 items
(issue 23), in exact bandit-mode truth.

World: ``--items`` items (8 topics), 10,000 users, bandit mode. One log of ``--rows`` rows
from the two-stage softmax logger (top 200 of the production model, softmax over them, 5%
uniform floor over the catalog), simulated in blocks of ``--block`` rows. From that same log, two greedy learners:

- ``hybrid``: :class:`~offrec.policies.bandits.hybrid.HybridLinear` (one ridge model on
  ``[x, 1] (x) [item embedding, topic, quality, 1]``, greedy over its exact top 20);
- ``linucb``: the registered per-item LinUCB (``make_learner("linucb", explore=False)``,
  a ridge model per item, the greedy head on its means).

Each is scored by :meth:`World.true_value` (exact: every user, the policy's items' true
click probabilities). Prints wall time and the process's peak RSS after each step.

Run: ``.venv/bin/python -m benchmarks.catalog_learner [--items 100000] [--rows 1000000]``
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from benchmarks._table import print_table


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main(n_items: int, n_rows: int, seed: int, truth_chunk: int, block: int = 100_000) -> None:
    from offrec.policies.bandits.hybrid import HybridLinear, catalog_features
    from offrec.policies.loggers import logging_policy
    from offrec.policies.registry import make_learner
    from offrec.sim import World, WorldConfig

    steps: list[list[str]] = []

    def step(name: str, t: float, value: str = "") -> None:
        steps.append([name, f"{time.perf_counter() - t:.1f}", f"{_peak_gib():.2f}", value])
        print(*steps[-1], flush=True)

    t = time.perf_counter()
    world = World(WorldConfig(n_items=n_items, n_users=10_000), seed=seed)
    logger = logging_policy(world, "softmax", candidates=200, floor=0.05)
    parts = []  # in blocks of rows (bounded memory: the logger's candidates are (rows, 200))
    for i, lo in enumerate(range(0, n_rows, block)):
        part = world.run_sessions(
            logger, min(block, n_rows - lo), np.random.default_rng([seed + 1, i])
        )
        parts.append((part.obs, part.action, part.reward))
    obs, action, reward = (np.concatenate(c) for c in zip(*parts, strict=True))
    del parts
    step(f"simulate {n_rows:,} rows", t, f"log CTR {reward.mean():.4f}")
    t = time.perf_counter()
    v_logger = world.true_value(logger, chunk_size=truth_chunk).value
    step("truth: logger", t, f"{v_logger:.4f}")

    t = time.perf_counter()
    hybrid = HybridLinear(catalog_features(world), world.context_dim, candidates=20)
    hybrid.partial_fit(obs, action, reward)
    step("train hybrid", t)
    t = time.perf_counter()
    v_hybrid = world.true_value(hybrid, chunk_size=truth_chunk).value
    step("truth: hybrid", t, f"{v_hybrid:.4f}")
    del hybrid

    t = time.perf_counter()
    per_item = make_learner("linucb", world.n_actions, world.context_dim, explore=False)
    per_item.partial_fit(obs, action, reward)
    step("train linucb (per item)", t)
    t = time.perf_counter()
    v_linucb = world.true_value(per_item, chunk_size=truth_chunk).value
    step("truth: linucb", t, f"{v_linucb:.4f}")

    print_table(
        f"{n_items:,} items, one {n_rows:,}-row log (seed {seed}); exact true CTR: logger "
        f"{v_logger:.4f}, hybrid {v_hybrid:.4f} ({v_hybrid / v_logger:.2f}x the logger), "
        f"per-item LinUCB {v_linucb:.4f} (hybrid/LinUCB {v_hybrid / v_linucb:.2f}x)",
        ["step", "wall s", "peak RSS GiB (so far)", "value"],
        steps,
    )


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--truth-chunk", type=int, default=500, help="users per block of the exact truth"
    )
    p.add_argument("--block", type=int, default=100_000, help="rows simulated at once")
    a = p.parse_args()
    main(a.items, a.rows, a.seed, a.truth_chunk, a.block)
