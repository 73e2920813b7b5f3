"""Session OPE study (issue 16): which sequential estimator to trust, measured against truth.

Part 1, ``pipelines/session_rl.toml`` as it is (softmax logger, beta 1, default noise):
for every seed, the pipeline's own stages (logs -> myopic bandit, DQN, CQL trained on 70%
of the sessions, cached under ``--out``) and then every estimator of
:data:`offrec.ope.sequential.SEQUENTIAL_ESTIMATORS` on the held-out 30%, as the
pipeline's OPE stage runs them, against the pipeline's Monte-Carlo truth online (same
seeds); per estimator:

- mean relative error ``|V^ - V| / V`` over the learned policies (and the logger);
- coverage of the 95% intervals over the (learned policy, seed) pairs;
- Spearman rank correlation over the four estimable policies, per seed (how many seeds
  reach 1.0), and the regret of picking by the point estimate and by the lower bound
  (safe selection).

Part 2, how to log: the same trained targets (seed 0) and soft heads on them
(epsilon-greedy 0.3 on DQN and CQL: near the logger) scored on fresh logs from loggers
that explore more or less (softmax beta 0.5/1/2, epsilon-greedy 0.1/0.3), one log per
logger of the same size as session_rl's held-out part.

Run: ``PYTHONPATH=. .venv/bin/python -m benchmarks.session_ope_study [--seeds 0 1 2 3 4]
[--skip-part2]`` (logs and models are cached under ``--out``; a first run trains them).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks._table import print_table

LEARNED = ("reward-model greedy (myopic bandit)", "DQN", "CQL")


def _config(estimators: tuple[str, ...]) -> Any:
    from offrec.pipeline_config import PipelineConfig

    cfg = PipelineConfig.from_file(Path(__file__).parents[1] / "pipelines" / "session_rl.toml")
    return dataclasses.replace(cfg, ope=dataclasses.replace(cfg.ope, estimators=estimators))


def load_seed(seed: int, out: Path) -> tuple[Any, Any, dict[str, Any], dict[str, float]]:
    """session_rl.toml's world, held-out log, estimable targets (trained on the other 70%,
    cached under ``out``) and their online truth, exactly as ``offrec run`` makes them."""
    from offrec.core.cache import StageCache
    from offrec.pipeline import logs_stage, models_stage
    from offrec.sim import World
    from offrec.training import split_sessions

    cfg = dataclasses.replace(_config(("pdis",)), seed=seed)
    world = World(cfg.world, seed=cfg.world_seed)
    cache = out / f"seed{seed}" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    logger = cfg.logging.create(world)
    data, key, _ = logs_stage(cfg, world, logger, StageCache(cache), lambda m: None)
    train, held = split_sessions(data, cfg.ope.holdout, seed=cfg.seed)
    policies, _, _ = models_stage(cfg, train, key, world, StageCache(cache), lambda m: None)
    refs = {r.name: r.create(world, logger, cfg.logging.model_seed) for r in cfg.references}
    targets = {**policies, **{n: p for n, p in refs.items() if not hasattr(p, "action_dist_state")}}
    on = cfg.online
    truth = {
        n: world.true_value(p, n_sessions=on.n_sessions, seed=on.seed).value
        for n, p in targets.items()
    }
    return world, held, targets, truth


def part1(seeds: list[int], out: Path, estimators: tuple[str, ...]) -> pd.DataFrame:
    """Every estimator on session_rl's held-out log per seed (the pipeline's OPE stage with
    all estimators), against the pipeline's online truth."""
    import torch

    from offrec.ope.evaluate import evaluate_sequential
    from offrec.ope.selection import selection_regret, spearman
    from offrec.ope.sequential import SessionFits

    torch.set_num_threads(1)
    tables, times = [], []
    for s in seeds:
        _, held, targets, truth = load_seed(s, out)
        t = time.perf_counter()
        tab = evaluate_sequential(
            held, targets, estimators, method="normal", seed=s, fits=SessionFits(held, seed=s)
        )
        times.append(time.perf_counter() - t)
        tab["seed"] = s
        tab["truth"] = tab["policy"].map(truth)
        tab["rel_error"] = (tab["value"] - tab["truth"]).abs() / tab["truth"]
        tab["covered"] = (tab["low"] <= tab["truth"]) & (tab["truth"] <= tab["high"])
        tables.append(tab)
        print(f"seed {s}: OPE {times[-1]:.0f}s", flush=True)
    runs = pd.concat(tables, ignore_index=True)
    runs.to_pickle(out / "part1_runs.pkl")
    rows = []
    for est in estimators:
        sub = runs[runs["estimator"] == est]
        learned = sub[sub["policy"].isin(LEARNED)]
        per_seed = [g for _, g in sub.groupby("seed")]
        sp = [spearman(g["value"].to_numpy(), g["truth"].to_numpy()) for g in per_seed]
        reg = [selection_regret(g["value"].to_numpy(), g["truth"].to_numpy()) for g in per_seed]
        safe = [selection_regret(g["low"].to_numpy(), g["truth"].to_numpy()) for g in per_seed]
        rows.append(
            [
                est,
                100 * learned["rel_error"].mean(),
                100 * learned["rel_error"].max(),
                100 * sub[sub["policy"] == "logger"]["rel_error"].mean(),
                100 * learned["covered"].mean(),
                100 * sub["covered"].mean(),
                float(np.nanmean(sp)),
                f"{sum(v == 1.0 for v in sp)}/{len(sp)}",
                float(np.mean(reg)),
                float(np.mean(safe)),
                sum(len(w) > 0 for w in learned["warnings"]) / max(len(learned), 1),
            ]
        )
    print_table(
        f"Part 1: pipelines/session_rl.toml, seeds {seeds}, held-out OPE vs online truth "
        f"(mean OPE time {np.mean(times):.0f}s per seed, all estimators)",
        [
            "estimator",
            "mean rel.err % (learned)",
            "max rel.err %",
            "rel.err % (logger)",
            "coverage % (learned)",
            "coverage % (all 4)",
            "mean Spearman",
            "Spearman = 1",
            "regret (point)",
            "regret (lower bound)",
            "share of learned rows warned",
        ],
        rows,
    )
    return runs


def part2(estimators: tuple[str, ...], n_sessions: int, out: Path) -> pd.DataFrame:
    import torch

    from offrec.core.policy import Head
    from offrec.ope.evaluate import evaluate_sequential
    from offrec.ope.evaluation import simulate_logged_data
    from offrec.ope.sequential import SessionFits
    from offrec.policies.loggers import logging_policy

    torch.set_num_threads(1)
    world, _, learned, _ = load_seed(0, out)
    pols = {n: p for n, p in learned.items() if n in LEARNED}
    targets = dict(pols)
    for name in ("DQN", "CQL"):
        targets[f"{name} eps-greedy 0.3"] = pols[name].with_head(
            Head("epsilon_greedy", epsilon=0.3)
        )
    truth = {n: world.true_value(p, n_sessions=20_000, seed=1).value for n, p in targets.items()}
    loggers = {
        "softmax beta 0.5": logging_policy(world, "softmax", beta=0.5),
        "softmax beta 1 (session_rl)": logging_policy(world, "softmax", beta=1.0),
        "softmax beta 2": logging_policy(world, "softmax", beta=2.0),
        "eps-greedy 0.1": logging_policy(world, "epsilon_greedy", epsilon=0.1),
        "eps-greedy 0.3": logging_policy(world, "epsilon_greedy", epsilon=0.3),
    }
    tables = []
    for k, (lname, logger) in enumerate(loggers.items()):
        t = time.perf_counter()
        log = simulate_logged_data(world, logger, n_sessions, seed=1000 + k)
        tab = evaluate_sequential(
            log, targets, estimators, method="normal", seed=k, fits=SessionFits(log, seed=k)
        )
        tab["logger"] = lname
        tables.append(tab)
        print(f"logger {lname}: {time.perf_counter() - t:.0f}s", flush=True)
    runs = pd.concat(tables, ignore_index=True)
    runs["truth"] = runs["policy"].map(truth)
    runs["rel_error"] = (runs["value"] - runs["truth"]).abs() / runs["truth"]
    runs["covered"] = (runs["low"] <= runs["truth"]) & (runs["truth"] <= runs["high"])
    runs.to_pickle(out / "part2_runs.pkl")
    for far in (True, False):
        sel = runs[runs["policy"].str.contains("eps-greedy") != far]
        piv = sel.groupby(["logger", "estimator"], sort=False).agg(
            err=("rel_error", "mean"), cov=("covered", "mean")
        )
        rows = [
            [
                lg,
                *(
                    f"{100 * piv.loc[(lg, e), 'err']:.1f} ({100 * piv.loc[(lg, e), 'cov']:.0f})"
                    for e in estimators
                ),
            ]
            for lg in loggers
        ]
        print_table(
            f"Part 2: mean relative error % (coverage %) on {'greedy learned targets' if far else 'epsilon-greedy 0.3 heads on DQN/CQL'}"
            f" by logger; {n_sessions:,} logged sessions, one log per logger",
            ["logger", *estimators],
            rows,
        )
    return runs


def main() -> None:
    from offrec.ope.sequential import SEQUENTIAL_ESTIMATORS

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--out", type=Path, default=Path("runs/session_ope_study"))
    p.add_argument("--estimators", default=",".join(SEQUENTIAL_ESTIMATORS))
    p.add_argument("--part2-estimators", default="pdis,wpdis,mb,mis")
    p.add_argument("--part2-sessions", type=int, default=6000)
    p.add_argument("--skip-part1", action="store_true")
    p.add_argument("--skip-part2", action="store_true")
    a = p.parse_args()
    if not a.skip_part1:
        part1(a.seeds, a.out, tuple(a.estimators.split(",")))
    if not a.skip_part2:
        part2(tuple(a.part2_estimators.split(",")), a.part2_sessions, a.out)


if __name__ == "__main__":
    main()
