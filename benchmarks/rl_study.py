"""Session-mode study: does offline RL trained only on logs beat the logger and a myopic
bandit, online?

For each seed: log ``--rows`` decisions of the softmax logging policy
(``logging_policy(world, "softmax", beta=1.0)``) in the default session world
(``WorldConfig(horizon=10)``, ``World`` seed 0) with that seed; train on that log

- ``bandit``: the myopic reward-model-greedy policy
  (:class:`offrec.policies.offline.RewardModelGreedy`, logistic reward model, greedy), or
  a stand-in (per-item logistic regression, greedy) when that class is not available;
- ``cql`` and ``dqn``: :func:`offrec.rl.train_rl` with the default :class:`RLConfig`
  (only ``algo`` and ``seed`` changed);

and measure every policy's true clicks per session online with
``world.true_value(policy, n_sessions=--sessions, seed=1000 + seed)`` (the same simulated
users for every policy of a seed). The logger is measured the same way. The myopic and
lookahead oracles (which see the true state) are printed once, for scale.

Run: ``nice .venv/bin/python -m benchmarks.rl_study`` (about 10 minutes on 2 busy cores;
``--seeds 0`` for one seed, ``--json PATH`` to keep the numbers, ``--compare-plain`` to
train each algo a second time with offrec's speed-ups off, ``matmul_precision="highest",
fused_adam=False, lean_q_function=False``, and print the differences: same seed, so the
same initial weights and mini-batches; only the arithmetic differs).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._table import print_table


def _bandit(data: Any, n_actions: int) -> tuple[Any, str]:
    try:
        from offrec.policies.offline import RewardModelGreedy
    except ImportError:  # stand-in: per-item logistic regression on the context, greedy
        from scipy import sparse
        from sklearn.linear_model import LogisticRegression

        from offrec.core.policy import Head, ScorePolicy

        x, a = np.asarray(data.context, np.float64), np.asarray(data.action)
        n, d = x.shape
        rows = np.repeat(np.arange(n), d + 1)
        cols = (a[:, None] * (d + 1) + np.arange(d + 1)[None, :]).ravel()
        vals = np.hstack([np.ones((n, 1)), x]).ravel()
        feats = sparse.csr_matrix((vals, (rows, cols)), shape=(n, n_actions * (d + 1)))
        clf = LogisticRegression(C=1.0, max_iter=500).fit(feats, data.reward > 0)
        w = clf.coef_[0].reshape(n_actions, d + 1)

        def scores(obs: np.ndarray) -> np.ndarray:
            return np.asarray(obs, np.float64) @ w[:, 1:].T + w[:, 0] + clf.intercept_[0]

        return ScorePolicy(scores, n_actions, Head("greedy")), "per-item logistic (stand-in)"
    return RewardModelGreedy("logistic").fit(data), "RewardModelGreedy(logistic)"


def main(
    seeds: tuple[int, ...] = (0, 1, 2),
    n_rows: int = 200_000,
    n_sessions: int = 20_000,
    algos: tuple[str, ...] = ("cql", "dqn"),
    json_path: str | None = None,
    compare_plain: bool = False,
) -> dict[str, Any]:
    from offrec.logs import collect, read_logs
    from offrec.policies.loggers import logging_policy
    from offrec.rl import RLConfig, train_rl
    from offrec.sim import World, WorldConfig
    from offrec.sim.oracles import LookaheadOracle, MyopicOracle

    world = World(WorldConfig(horizon=10), seed=0)
    logger = logging_policy(world, "softmax", beta=1.0)
    results: list[dict[str, Any]] = []
    tmp = Path(tempfile.mkdtemp(prefix="offrec-rl-study-"))
    try:
        for seed in seeds:
            out = tmp / f"log-{seed}"
            collect(world, logger, out=out, n_decisions=n_rows, seed=seed)
            data = read_logs(out)
            value_seed = 1000 + seed

            def record(
                name: str, policy: Any, seconds: float, note: str, seed: int, value_seed: int
            ) -> None:
                est = world.true_value(policy, n_sessions=n_sessions, seed=value_seed)
                results.append(
                    {
                        "policy": name,
                        "seed": seed,
                        "value": est.value,
                        "stderr": est.stderr,
                        "train_seconds": seconds,
                        "note": note,
                    }
                )
                print(
                    f"seed {seed} {name:8s} {est.value:.4f} +- {est.stderr:.4f}  ({seconds:.0f} s)",
                    flush=True,
                )

            record("logger", logger, 0.0, "softmax beta=1", seed, value_seed)
            t = time.perf_counter()
            bandit, bandit_note = _bandit(data, world.n_actions)
            record("bandit", bandit, time.perf_counter() - t, bandit_note, seed, value_seed)
            for algo in algos:
                variants = {algo: RLConfig(algo=algo, seed=seed)}
                if compare_plain:  # the same run with offrec's speed-ups off
                    variants[f"{algo}-plain"] = RLConfig(
                        algo=algo,
                        seed=seed,
                        matmul_precision="highest",
                        fused_adam=False,
                        lean_q_function=False,
                    )
                for name, cfg in variants.items():
                    t = time.perf_counter()
                    res = train_rl(data, cfg)
                    note = (
                        f"{cfg.n_steps} steps, matmul {cfg.matmul_precision}, fused Adam "
                        f"{cfg.fused_adam}, lean Q {cfg.lean_q_function}, "
                        f"{res.steps_per_second:.0f} steps/s"
                    )
                    record(name, res.policy, time.perf_counter() - t, note, seed, value_seed)
        oracles = []
        for name, policy in (
            ("myopic oracle", MyopicOracle(world)),
            ("lookahead oracle", LookaheadOracle(world)),
        ):
            est = world.true_value(policy, n_sessions=min(n_sessions, 5_000), seed=999)
            oracles.append([name, "-", f"{est.value:.3f} ± {est.stderr:.3f}", "-", "-"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    by = {(r["policy"], r["seed"]): r for r in results}
    rows = []
    for r in results:
        base = by[("logger", r["seed"])]
        rows.append(
            [
                r["policy"],
                r["seed"],
                f"{r['value']:.3f} ± {r['stderr']:.3f}",
                f"{100 * (r['value'] / base['value'] - 1):+.1f}%",
                f"{r['train_seconds']:.0f}",
            ]
        )
    print_table(
        f"True clicks per session online ({n_sessions:,} simulated sessions each), "
        f"trained on {n_rows:,} logged decisions of the softmax logger",
        ["policy", "seed", "clicks/session ± se", "vs logger", "train s"],
        rows + oracles,
    )
    checks = []
    for algo in algos:
        for other, need in (("logger", 1.15), ("bandit", 1.0)):
            for seed in seeds:
                a, b = by[(algo, seed)], by[(other, seed)]
                diff = a["value"] - b["value"]
                se = math.hypot(a["stderr"], b["stderr"])
                ok = a["value"] >= need * b["value"] and diff > se
                checks.append(
                    [
                        f"{algo} vs {other}",
                        seed,
                        f"{diff:+.3f}",
                        f"{se:.3f}",
                        f"{a['value'] / b['value']:.3f}",
                        f">= {need:.2f} and diff > se",
                        "yes" if ok else "NO",
                    ]
                )
    notes = {r["policy"]: r["note"] for r in results}
    print("\n" + "; ".join(f"{k}: {v}" for k, v in notes.items()))
    print_table(
        "Differences (se = sqrt(se_a^2 + se_b^2), conservative: same users for both policies)",
        ["comparison", "seed", "difference", "se", "ratio", "rule", "holds"],
        checks,
    )
    if compare_plain:
        same = []
        for algo in algos:
            for seed in seeds:
                a, b = by[(algo, seed)], by[(f"{algo}-plain", seed)]
                diff = a["value"] - b["value"]
                se = math.hypot(a["stderr"], b["stderr"])
                same.append(
                    [
                        algo,
                        seed,
                        f"{a['value']:.3f}",
                        f"{b['value']:.3f}",
                        f"{diff:+.4f}",
                        f"{se:.4f}",
                        "yes" if abs(diff) <= se else "NO",
                        f"{b['train_seconds'] / a['train_seconds']:.2f}x",
                    ]
                )
        print_table(
            "Default RLConfig vs the same run with the speed-ups off (-plain)",
            [
                "algo",
                "seed",
                "default",
                "plain",
                "difference",
                "se",
                "|diff| <= se",
                "train time plain/default",
            ],
            same,
        )
    summary = {"results": results, "n_rows": n_rows, "n_sessions": n_sessions}
    if json_path:
        Path(json_path).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rows", type=int, default=200_000, help="logged decisions per seed")
    parser.add_argument("--sessions", type=int, default=20_000, help="sessions per online value")
    parser.add_argument("--algos", nargs="+", default=["cql", "dqn"])
    parser.add_argument("--json", default=None, help="write the results to this JSON file")
    parser.add_argument(
        "--compare-plain",
        action="store_true",
        help="also train each algo at float32 matmul precision with plain Adam (the speed-ups off)",
    )
    args = parser.parse_args()
    main(
        tuple(args.seeds),
        args.rows,
        args.sessions,
        tuple(args.algos),
        args.json,
        args.compare_plain,
    )
