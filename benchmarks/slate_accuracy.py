"""Slate estimator accuracy against the slate world's truth (issue 24's acceptance study).

World: the default world's users and items (100 items, ``--users`` users, bandit mode),
slates of 5, three click models (independent, position-based with eta 1, cascade).
Logger: Plackett-Luce over the softmax production-model policy (beta 0.5). Targets:
Plackett-Luce over the softmax policy with beta 0.75 (*near*) and 1.5 (*far*: on 20,000
slates the effective sample size of its joint slate weights is about 1.5% of the slates).

Each seed logs ``--slates`` slates to Parquet (:func:`offrec.logs.slate.collect_slates`)
and evaluates both targets with every slate estimator through the streamed
:func:`offrec.ope.slate_log.evaluate_slates` (95% bootstrap over whole slates). Prints,
per click model, target and estimator: the truth (exact, or Monte-Carlo with its standard
error), the mean relative error ``|V^ - V| / V`` over seeds, and the share of seeds whose
interval holds the truth. Logger and target marginals are computed once per user
(``MarginalCache``) and reused across seeds and click models.

Run: ``.venv/bin/python -m benchmarks.slate_accuracy [--seeds 20] [--slates 20000]``
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._table import print_table

ASSUMPTION_HOLDS = {
    "independent": ("iips", "rips", "sips", "cascade-dr"),
    "pbm": ("iips", "rips", "sips", "cascade-dr"),
    "cascade": ("rips", "sips", "cascade-dr"),
}
"""Unbiased estimators under each click model (the self-normalized forms are consistent)."""


def main(
    seeds: int = 20,
    n_slates: int = 20_000,
    n_users: int = 1_000,
    slate_size: int = 5,
    n_bootstrap: int = 300,
    marginal_samples: int = 1_000,
    out: str | None = None,
) -> dict:
    from offrec.logs.slate import collect_slates
    from offrec.ope.slate import SLATE_ESTIMATORS
    from offrec.ope.slate_log import evaluate_slates
    from offrec.policies.loggers import logging_policy
    from offrec.sim.config import WorldConfig
    from offrec.sim.slate import ClickModel, MarginalCache, PlackettLuce, SlateWorld
    from offrec.sim.world import World

    world = World(WorldConfig(n_items=100, n_users=n_users), seed=0)
    logger = PlackettLuce(logging_policy(world, "softmax", beta=0.5), slate_size)
    targets = {
        "near (PL, beta 0.75)": PlackettLuce(
            logging_policy(world, "softmax", beta=0.75), slate_size
        ),
        "far (PL, beta 1.5)": PlackettLuce(logging_policy(world, "softmax", beta=1.5), slate_size),
    }
    t0 = time.perf_counter()
    log_cache = MarginalCache(logger, marginal_samples, seed=1)
    caches = {name: MarginalCache(t, marginal_samples, seed=2) for name, t in targets.items()}
    results: dict = {"config": {"seeds": seeds, "n_slates": n_slates, "n_users": n_users,
                                "slate_size": slate_size, "n_items": 100, "n_bootstrap": n_bootstrap,
                                "marginal_samples": marginal_samples}, "rows": []}  # fmt: skip
    rows = []
    for kind in ("independent", "pbm", "cascade"):
        sw = SlateWorld(world, slate_size, ClickModel(kind, eta=1.0))
        truths = {name: sw.true_value(t, n_samples=500, seed=3) for name, t in targets.items()}
        errors: dict = {(n, e): [] for n in targets for e in SLATE_ESTIMATORS}
        covered: dict = {(n, e): [] for n in targets for e in SLATE_ESTIMATORS}
        ess: dict = {(n, e): [] for n in targets for e in SLATE_ESTIMATORS}
        for seed in range(seeds):
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "log"
                collect_slates(sw, logger, out=path, n_slates=n_slates, seed=seed,
                               marginals=log_cache)  # fmt: skip
                for name, target in targets.items():
                    truth = truths[name].value
                    for r in evaluate_slates(path, target, n_bootstrap=n_bootstrap, seed=seed,
                                             marginals=caches[name]):  # fmt: skip
                        errors[name, r.estimator].append(abs(r.value - truth) / truth)
                        covered[name, r.estimator].append(r.low <= truth <= r.high)
                        ess[name, r.estimator].append(r.ess)
        for name in targets:
            tv = truths[name]
            for est in SLATE_ESTIMATORS:
                row = {
                    "click_model": kind, "target": name, "estimator": est,
                    "truth": tv.value, "truth_stderr": tv.stderr, "truth_exact": tv.exact,
                    "rel_error_mean": float(np.mean(errors[name, est])),
                    "coverage": float(np.mean(covered[name, est])),
                    "ess_mean": float(np.mean(ess[name, est])),
                    "assumption_holds": est.removeprefix("sn") in ASSUMPTION_HOLDS[kind]
                    or est in ASSUMPTION_HOLDS[kind],
                }  # fmt: skip
                rows.append(row)
        print(f"{kind}: done at {time.perf_counter() - t0:.0f}s", flush=True)
    results["rows"] = rows
    results["seconds"] = time.perf_counter() - t0
    results["load"] = os.getloadavg()
    print_table(
        f"Slate OPE accuracy: {seeds} seeds x {n_slates:,} slates of {slate_size} (100 items, "
        f"{n_users} users), 95% bootstrap ({n_bootstrap}) over whole slates, "
        f"{results['seconds']:.0f}s",
        ["click model", "target", "estimator", "truth", "mean rel. error %", "coverage", "mean ESS",
         "assumption holds"],
        [[r["click_model"], r["target"], r["estimator"],
          f"{r['truth']:.4f}" + ("" if r["truth_exact"] else f" ± {r['truth_stderr']:.4f}"),
          f"{100 * r['rel_error_mean']:.2f}", f"{r['coverage']:.2f}", f"{r['ess_mean']:.0f}",
          "yes" if r["assumption_holds"] else "no"] for r in rows],
    )  # fmt: skip
    if out:
        Path(out).write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--slates", type=int, default=20_000)
    ap.add_argument("--users", type=int, default=1_000)
    ap.add_argument("--slate-size", type=int, default=5)
    ap.add_argument("--n-bootstrap", type=int, default=300)
    ap.add_argument("--marginal-samples", type=int, default=1_000)
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    a = ap.parse_args()
    main(a.seeds, a.slates, a.users, a.slate_size, a.n_bootstrap, a.marginal_samples, a.out)
