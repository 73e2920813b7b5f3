"""World speed: batch core (bandit and session mode), gymnasium env, bounded memory.

Run: ``.venv/bin/python -m benchmarks.bench_world``

SCOPE-RL's ``RECEnv`` is measured in the same run when ``recgym`` is importable (it is
not a dependency: put a checkout of github.com/hakuhodo-technologies/scope-rl's
``recgym`` folder on ``PYTHONPATH``; it needs ``gym`` and scikit-learn). It is stepped
exactly like offrec's raw env: 100 items, 10 steps per episode, raw class (no
``gym.make`` wrappers), reset at each episode end.
"""

from __future__ import annotations

import numpy as np

from benchmarks._table import best_time, peak_rss_mb_of, print_table


def main() -> None:
    import gymnasium as gym

    import offrec  # noqa: F401
    from offrec.sim import World, WorldConfig
    from offrec.sim.env import RecommenderEnv

    rows = []
    world = World(WorldConfig(), seed=0)
    n = 1_000_000
    rng = np.random.default_rng(0)

    def bandit() -> None:
        batch = world.new_sessions(n, rng)
        world.observe(batch)
        world.step(batch, rng.integers(0, world.n_actions, n), rng, validate=False)

    t = best_time(bandit)
    rows.append(
        ["batch core, bandit mode (observe + click probs + clicks)", n, n / t, world.context_dim]
    )

    sworld = World(WorldConfig(horizon=10), seed=0)
    m = 100_000

    def session() -> None:
        batch = sworld.new_sessions(m, rng)
        for _ in range(10):
            sworld.observe(batch)
            sworld.step(batch, rng.integers(0, sworld.n_actions, m), rng, validate=False)

    t = best_time(session)
    rows.append(
        [
            "batch core, session mode (100k sessions x 10 steps)",
            10 * m,
            10 * m / t,
            sworld.context_dim,
        ]
    )

    for label, env in (
        ("gymnasium env step() (raw RecommenderEnv)", RecommenderEnv(horizon=10)),
        (
            "gymnasium env step() via gym.make (checkers on)",
            gym.make("offrec/Recommender-v0", horizon=10),
        ),
    ):
        k = 50_000

        def run(env: gym.Env = env, k: int = k) -> None:
            env.reset(seed=0)
            for i in range(k):
                _, _, term, trunc, _ = env.step(i % 100)
                if term or trunc:
                    env.reset()

        t = best_time(run)
        rows.append([label, k, k / t, sworld.context_dim])
    rows.extend(_recenv_rows())
    print_table(
        "World speed (decisions or steps per second, one process)",
        ["what", "n", "per second", "obs dim"],
        rows,
    )

    code = """
import numpy as np
from offrec.sim import World, WorldConfig
w = World(WorldConfig(), seed=0); rng = np.random.default_rng(0)
clicks = 0
for _ in range(10):  # 10M decisions in chunks of 1M
    b = w.new_sessions(1_000_000, rng)
    w.observe(b)
    clicks += int(w.step(b, rng.integers(0, 100, 1_000_000), rng).reward.sum())
OUT = clicks
"""
    peak, _ = peak_rss_mb_of(code)
    base, _ = peak_rss_mb_of("import offrec.sim\nOUT = 0")
    print_table(
        "Memory: 10M bandit decisions simulated in chunks of 1M",
        ["peak RSS (MB)", "of which imports (MB)"],
        [[peak, base]],
    )


def _recenv_rows() -> list[list[object]]:
    """SCOPE-RL's RECEnv (recgym) stepped like the raw offrec env, if importable."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from recgym import RECEnv
    except ImportError:
        print("(recgym not importable: SCOPE-RL's RECEnv not measured)")
        return []
    env = RECEnv(n_items=100, step_per_episode=10, random_state=12345)
    k = 50_000

    def run() -> None:
        env.reset(seed=0)
        for i in range(k):
            out = env.step(i % 100)
            if out[2] or out[3]:
                env.reset()

    t = best_time(run)
    dim = int(np.prod(env.observation_space.shape))
    return [["SCOPE-RL RECEnv step() (raw, recgym, same run)", k, k / t, dim]]


if __name__ == "__main__":
    main()
