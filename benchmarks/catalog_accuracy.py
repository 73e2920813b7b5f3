"""Estimator accuracy on a large catalog (issue 23): IPS fails, group-level weights work.

World: 100,000 items (8 topics), 10,000 users, bandit mode (exact truth). Logger: two-stage
softmax (top 200 retrieved by the production model, softmax over them, 5% uniform floor
over the catalog). Target: the shared-parameter learner (:class:`HybridLinear`, greedy over
its exact top candidates, 10% uniform over its top 20) trained on a separate log of
``--train-rows`` rows; its reward model serves DR / DM / OffCEM (fitted on other rows
than the evaluated ones). Per seed, a fresh log of ``--rows`` rows; estimates with 95%
normal intervals; relative error ``|V^ - V| / V`` against the exact value and coverage.

Run: ``.venv/bin/python -m benchmarks.catalog_accuracy [--items 100000] [--seeds 20]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks._table import print_table


def main(
    n_items: int,
    n_rows: int,
    seeds: int,
    train_rows: int,
    clusters: list[int],
    folds: int,
    first_seed: int = 0,
    user_noise: float | None = None,
) -> None:
    from offrec.ope import estimate_interval
    from offrec.ope.embedding import cluster_items, cross_fit_interval, logging_group_pscore
    from offrec.ope.terms import PairRewards
    from offrec.policies.bandits.hybrid import HybridLinear, catalog_features
    from offrec.policies.loggers import logging_policy
    from offrec.reward.bilinear import BilinearLogistic
    from offrec.sim import World, WorldConfig

    t0 = time.perf_counter()
    noise = {} if user_noise is None else {"user_noise": user_noise}
    world = World(WorldConfig(n_items=n_items, n_users=10_000, **noise), seed=0)
    logger = logging_policy(world, "softmax", candidates=200, floor=0.05)
    train = world.run_sessions(logger, train_rows, np.random.default_rng(10_000))
    target = HybridLinear(catalog_features(world), world.context_dim, candidates=20, epsilon=0.1)
    target.partial_fit(train.obs, train.action, train.reward)
    truth = world.true_value(target).value
    v_logger = world.true_value(logger).value
    print(f"truth {truth:.4f} (logger {v_logger:.4f}); setup {time.perf_counter() - t0:.0f}s")
    # the catalog table's columns: embedding and quality (scaled like the click logit)
    table = np.hstack([world.item_vec, world.item_quality[:, None] / world.config.theta1])
    groupings = {"topic": world.item_topic}
    groupings.update({f"kmeans{c}": cluster_items(table, c) for c in clusters})
    items = catalog_features(world)
    ests = ["ips", "snips", "dm", "dr", "dm+bilinear", "dr+bilinear"] + [
        f"{e}/{g}" for g in groupings for e in ("mips", "snmips", "offcem", "offcem+bilinear")
    ]
    err = {e: [] for e in ests}
    cover = {e: [] for e in ests}
    value = {e: [] for e in ests}
    fit_s: list[float] = []
    for seed in range(first_seed, first_seed + seeds):
        log = world.run_sessions(logger, n_rows, np.random.default_rng(seed))
        x = log.obs
        dist = target.action_dist_compact(x)
        pairs = PairRewards(
            logged=target.predict_pairs(x, log.action[:, None])[:, 0],
            at_items=target.predict_pairs(x, dist.items),
            support_mean=target.predict_mean(x),
        )
        b_dist = logger.action_dist_compact(x)
        base = dict(reward=log.reward, action=log.action, pscore=log.pscore, action_dist=dist)
        t1 = time.perf_counter()
        model = BilinearLogistic(items, n_folds=folds, seed=seed).fit(x, log.action, log.reward)
        fit_s.append(time.perf_counter() - t1)
        for e in ests:
            head, _, g = e.partition("/")
            name, _, how = head.partition("+")
            kw = dict(base)
            if g:
                kw.update(
                    item_groups=groupings[g],
                    pscore_group=logging_group_pscore(b_dist, groupings[g], log.action),
                )
            if how:  # the cross-fitted bilinear model, interval with its fitting noise
                iv = cross_fit_interval(name, model, x, **kw)
            else:
                if name in ("dm", "dr", "offcem"):
                    kw["estimated_rewards"] = pairs
                iv = estimate_interval(name, method="normal", **kw)
            value[e].append(iv.value)
            err[e].append(abs(iv.value - truth) / truth)
            cover[e].append(iv.low <= truth <= iv.high)
    rows = [
        [
            e,
            f"{np.mean(value[e]):.4f}",
            f"{100 * np.mean(err[e]):.1f}",
            f"{100 * np.std(err[e]):.1f}",
            f"{100 * np.mean(cover[e]):.0f}%",
        ]
        for e in ests
    ]
    print_table(
        f"{n_items:,} items, {n_rows:,} rows x {seeds} seeds, truth {truth:.4f}, "
        f"{time.perf_counter() - t0:.0f}s (bilinear fit {np.mean(fit_s):.1f}s per seed)",
        ["estimator", "mean estimate", "mean rel. error %", "std %", "coverage (95% normal)"],
        rows,
    )


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--train-rows", type=int, default=200_000)
    p.add_argument("--clusters", type=int, nargs="*", default=[1024])
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0, help="logs use seeds first.. first+seeds-1")
    p.add_argument(
        "--user-noise", type=float, help="the world's user_noise (default WorldConfig's 0.3)"
    )
    a = p.parse_args()
    main(a.items, a.rows, a.seeds, a.train_rows, a.clusters, a.folds, a.first_seed, a.user_noise)
