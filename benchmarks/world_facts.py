"""The calibrated world's defining figures (README "The world").

Run: ``.venv/bin/python -m benchmarks.world_facts``
"""

from __future__ import annotations

import numpy as np

from benchmarks._table import print_table


def main(n_sessions: int = 20_000) -> None:
    from offrec.policies import UniformPolicy
    from offrec.policies.loggers import logging_policy
    from offrec.sim import BestItemOracle, LookaheadOracle, MyopicOracle, World, WorldConfig

    rows = []
    bandit = World(WorldConfig(), seed=0)
    values = {}
    for name, p in (
        ("uniform", UniformPolicy(100)),
        ("softmax logger (beta 1)", logging_policy(bandit, "softmax")),
        ("best single item", BestItemOracle(bandit)),
        ("myopic oracle", MyopicOracle(bandit)),
    ):
        values[name] = bandit.true_value(p).value
        rows.append(["bandit (CTR, exact)", name, f"{values[name]:.4f}", "0 (exact)"])
    ratio = values["myopic oracle"] / values["best single item"]
    session = World(WorldConfig(horizon=10), seed=0)
    sv = {}
    for name, p in (
        ("uniform", UniformPolicy(100)),
        ("softmax logger (beta 1)", logging_policy(session, "softmax")),
        ("myopic oracle", MyopicOracle(session)),
        ("lookahead oracle", LookaheadOracle(session)),
    ):
        sv[name] = session.true_value(p, n_sessions=n_sessions, seed=1)
        rows.append(
            [
                "session, H=10 (clicks/session, MC)",
                name,
                f"{sv[name].value:.3f}",
                f"{sv[name].stderr:.3f}",
            ]
        )
    print_table("World facts (world seed 0)", ["mode", "policy", "value", "stderr"], rows)
    m, f = sv["myopic oracle"], sv["lookahead oracle"]
    se = float(np.hypot(m.stderr, f.stderr))
    print(f"\nmyopic / best item (bandit): {ratio:.2f}x")
    print(
        f"lookahead vs myopic (session): {100 * (f.value / m.value - 1):+.1f}% "
        f"(difference {f.value - m.value:.3f} = {(f.value - m.value) / se:.0f} standard errors)"
    )


if __name__ == "__main__":
    main()
