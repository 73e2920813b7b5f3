"""What item identity and continuous reward domains cost (issue 27), as same-process ratios.

- numbering a column of source item ids (:func:`offrec.logs.items.encode`: one hash pass,
  distinct ids normalized once) against the importer's former ``np.sort(unique)`` +
  ``pd.Categorical(...).codes``;
- fitting the logistic reward model on a bounded continuous reward (fractional response:
  every row twice, :mod:`offrec.reward.model`) against the same model on clicks.

Run: ``python -m benchmarks bench_identity`` (report ``uptime`` with the figures).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from benchmarks._table import best_time, print_table


def main() -> None:
    from offrec.logs.items import encode
    from offrec.reward import RewardModel

    rng = np.random.default_rng(0)
    n, k = 2_000_000, 10_000
    ids = np.array([f"item{i}" for i in range(k)], dtype=object)
    raw = pd.Series(ids[rng.integers(0, k, n)])

    def old() -> None:
        u = np.sort(raw.dropna().unique())
        pd.Categorical(raw, categories=u).codes.astype(np.int64)

    items, actions, _ = encode(raw.to_numpy())
    assert (np.array(items.ids, dtype=object)[actions] == raw.to_numpy()).all()
    t_new, t_old = best_time(lambda: encode(raw.to_numpy())), best_time(old)

    m, d, a_k = 200_000, 5, 10
    x = rng.normal(size=(m, d))
    a = rng.integers(0, a_k, m)
    p = 1 / (1 + np.exp(-(x[:, 0] * (a % 3 - 1))))
    clicks = (rng.random(m) < p).astype(float)
    cont = np.clip(p + rng.normal(0, 0.2, m), 0, 1)
    rm = RewardModel(kind="logistic", seed=0)
    dom = {"kind": "continuous", "low": 0.0, "high": 1.0}
    t_clicks = best_time(lambda: rm.fit(x, a, clicks, n_actions=a_k), repeat=2)
    t_cont = best_time(lambda: rm.fit(x, a, cont, n_actions=a_k, reward_domain=dom), repeat=2)
    print_table(
        f"item identity and reward domains (load {os.getloadavg()[0]:.1f})",
        ["what", "new (s)", "baseline (s)", "ratio"],
        [
            [
                f"number {n:,} item ids ({k:,} distinct strings)",
                f"{t_new:.2f}",
                f"{t_old:.2f}",
                f"{t_new / t_old:.2f}",
            ],
            [
                f"logistic reward model, {m:,} rows: continuous vs clicks",
                f"{t_cont:.2f}",
                f"{t_clicks:.2f}",
                f"{t_cont / t_clicks:.2f}",
            ],
        ],
    )


if __name__ == "__main__":
    main()
