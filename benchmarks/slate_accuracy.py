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
import inspect
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._table import peak_rss_mb_of, print_table

ASSUMPTION_HOLDS = {
    "independent": ("iips", "rips", "sips", "cascade-dr"),
    "pbm": ("iips", "rips", "sips", "cascade-dr"),
    "cascade": ("rips", "sips", "cascade-dr"),
}
"""Unbiased estimators under each click model (the self-normalized forms are consistent).
PI is in none: its per-slot-marginal form assumes a logger whose slots are independent,
and this study's Plackett-Luce logger ranks without replacement (PI's docstring), so
``evaluate_slates`` refuses it here and the study leaves it out."""


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
    results: dict = {
        "config": {
            "seeds": seeds,
            "n_slates": n_slates,
            "n_users": n_users,
            "slate_size": slate_size,
            "n_items": 100,
            "n_bootstrap": n_bootstrap,
            "marginal_samples": marginal_samples,
        },
        "rows": [],
    }
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
                collect_slates(
                    sw, logger, out=path, n_slates=n_slates, seed=seed, marginals=log_cache
                )
                for name, target in targets.items():
                    truth = truths[name].value
                    for r in evaluate_slates(
                        path, target, n_bootstrap=n_bootstrap, seed=seed, marginals=caches[name]
                    ):
                        errors[name, r.estimator].append(abs(r.value - truth) / truth)
                        covered[name, r.estimator].append(r.low <= truth <= r.high)
                        ess[name, r.estimator].append(r.ess)
        for name in targets:
            tv = truths[name]
            # the estimators evaluate_slates ran (PI is refused on this ranking logger)
            for est in (e for e in SLATE_ESTIMATORS if errors[name, e]):
                row = {
                    "click_model": kind,
                    "target": name,
                    "estimator": est,
                    "truth": tv.value,
                    "truth_stderr": tv.stderr,
                    "truth_exact": tv.exact,
                    "rel_error_mean": float(np.mean(errors[name, est])),
                    "coverage": float(np.mean(covered[name, est])),
                    "ess_mean": float(np.mean(ess[name, est])),
                    "assumption_holds": est.removeprefix("sn") in ASSUMPTION_HOLDS[kind]
                    or est in ASSUMPTION_HOLDS[kind],
                }
                rows.append(row)
        print(f"{kind}: done at {time.perf_counter() - t0:.0f}s", flush=True)
    results["rows"] = rows
    results["seconds"] = time.perf_counter() - t0
    results["load"] = os.getloadavg()
    print_table(
        f"Slate OPE accuracy: {seeds} seeds x {n_slates:,} slates of {slate_size} (100 items, "
        f"{n_users} users), 95% bootstrap ({n_bootstrap}) over whole slates, "
        f"{results['seconds']:.0f}s",
        [
            "click model",
            "target",
            "estimator",
            "truth",
            "mean rel. error %",
            "coverage",
            "mean ESS",
            "assumption holds",
        ],
        [
            [
                r["click_model"],
                r["target"],
                r["estimator"],
                f"{r['truth']:.4f}" + ("" if r["truth_exact"] else f" ± {r['truth_stderr']:.4f}"),
                f"{100 * r['rel_error_mean']:.2f}",
                f"{r['coverage']:.2f}",
                f"{r['ess_mean']:.0f}",
                "yes" if r["assumption_holds"] else "no",
            ]
            for r in rows
        ],
    )
    if out:
        Path(out).write_text(json.dumps(results, indent=1))
    return results


def best_of(
    fn: Callable[[], Any], low: int = 3, high: int = 20, budget: float = 0.5
) -> tuple[float, Any]:
    """Fastest of ``low`` to ``high`` calls of ``fn`` (seconds) and its last result: more
    calls while under ``budget`` seconds in all, so short calls on a loaded machine are
    not all caught by a preemption. The same rule times offrec and OBP (its source is
    sent to OBP's process)."""
    ts, out, spent = [], None, 0.0
    while len(ts) < low or (len(ts) < high and spent < budget):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
        spent += ts[-1]
    return min(ts), out


OBP_TIMER = """
import numpy as np
from obp.ope import (SlateStandardIPS, SlateIndependentIPS, SlateRewardInteractionIPS,
    SelfNormalizedSlateStandardIPS, SelfNormalizedSlateIndependentIPS,
    SelfNormalizedSlateRewardInteractionIPS, SlateCascadeDoublyRobust)
a = dict(np.load(sys.argv[1]))
K, m = int(a["len_list"]), int(a["n_actions"])
base = dict(slate_id=a["slate_id"], reward=a["reward"], position=a["position"])
kw = {
    "joint": dict(pscore=a["pscore"], evaluation_policy_pscore=a["evaluation_policy_pscore"]),
    "item": dict(pscore_item_position=a["pscore_item_position"],
                 evaluation_policy_pscore_item_position=a["evaluation_policy_pscore_item_position"]),
    "casc": dict(pscore_cascade=a["pscore_cascade"],
                 evaluation_policy_pscore_cascade=a["evaluation_policy_pscore_cascade"]),
}
out = {}
for name, cls, k in [("sips", SlateStandardIPS, "joint"), ("iips", SlateIndependentIPS, "item"),
                     ("rips", SlateRewardInteractionIPS, "casc"), ("snsips", SelfNormalizedSlateStandardIPS, "joint"),
                     ("sniips", SelfNormalizedSlateIndependentIPS, "item"),
                     ("snrips", SelfNormalizedSlateRewardInteractionIPS, "casc")]:
    t, v = best_of(lambda: cls(len_list=K).estimate_policy_value(**base, **kw[k]))
    out[name] = (t, float(v))
t, v = best_of(lambda: SlateCascadeDoublyRobust(len_list=K, n_unique_action=m).estimate_policy_value(
    **base, action=a["action"], **kw["casc"], q_hat=a["q_hat"],
    evaluation_policy_action_dist=a["evaluation_policy_action_dist"]))
out["cascade-dr"] = (t, float(v))
print(json.dumps(out))
"""


def speed(
    n_slates: int = 200_000,
    n_items: int = 100,
    slate_size: int = 5,
    obp_python: str = "/tmp/venv-obp/bin/python",
) -> None:
    """Time offrec's slate estimators against OBP 0.5.7's on the same arrays (one process
    each, the same run; each the fastest of 3 to 20 calls, :func:`best_of`): point estimates of the estimators OBP ships
    (``in_obp``), values checked equal to 1e-12. Also times one plain read of cascade-DR's
    two dense arrays, the floor of any estimator that must read them (OBP's layout)."""
    import subprocess

    from offrec.ope.slate import SLATE_ESTIMATORS, make_slate_estimator

    load0 = os.getloadavg()[0]
    rng = np.random.default_rng(0)
    n, K, m = n_slates, slate_size, n_items
    slates = np.argsort(rng.random((n, m)), axis=1)[:, :K]
    b = rng.uniform(0.05, 1.0, (n, K))
    e = rng.uniform(0.05, 1.0, (n, K))
    bc, ec = np.cumprod(b, axis=1), np.cumprod(e, axis=1)
    dist = rng.dirichlet(np.ones(m), n * K)
    arrays = {
        "slate_id": np.repeat(np.arange(n), K),
        "position": np.tile(np.arange(K), n),
        "action": slates.ravel(),
        "reward": (rng.random(n * K) < 0.2).astype(float),
        "pscore": np.repeat(bc[:, -1], K),
        "evaluation_policy_pscore": np.repeat(ec[:, -1], K),
        "pscore_item_position": b.ravel(),
        "evaluation_policy_pscore_item_position": e.ravel(),
        "pscore_cascade": bc.ravel(),
        "evaluation_policy_pscore_cascade": ec.ravel(),
        "q_hat": rng.random((n * K, m)).ravel(),
        "evaluation_policy_action_dist": dist.ravel(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "arrays.npz"
        np.savez(path, **arrays, len_list=np.array(K), n_actions=np.array(m))
        ours = {}
        names = [n for n, cls in SLATE_ESTIMATORS.items() if cls.in_obp]  # OBP has no PI
        for name in names:
            est = make_slate_estimator(name)
            v = est.estimate_policy_value(**arrays)
            ours[name] = (best_of(lambda est=est: est.estimate_policy_value(**arrays))[0], v)
        # the same timing rule in OBP's process (annotations left unevaluated there too)
        head = "from __future__ import annotations\nimport sys, time, json\n"
        code = head + inspect.getsource(best_of) + OBP_TIMER
        done = subprocess.run(
            [obp_python, "-c", code, str(path)], capture_output=True, text=True, check=True
        )
        theirs = json.loads(done.stdout.strip().splitlines()[-1])
    # cascade-DR's floor: one read of its two dense (rows, items) arrays, one thread
    q2 = arrays["q_hat"].reshape(n * K, m)
    d2 = arrays["evaluation_policy_action_dist"].reshape(n * K, m)
    floor = best_of(lambda: (q2.sum(), d2.sum()))[0]
    rows = []
    for name in names:
        (to, vo), (tt, vt) = ours[name], theirs[name]
        assert abs(vo - vt) <= 1e-12 * max(1.0, abs(vt)), (name, vo, vt)
        rows.append([name, f"{1000 * to:.2f}", f"{1000 * tt:.1f}", f"{tt / to:.1f}x"])
    tot_o = sum(v[0] for v in ours.values())
    tot_t = sum(v[0] for v in theirs.values())
    rows.append(
        [f"all {len(names)}", f"{1000 * tot_o:.2f}", f"{1000 * tot_t:.1f}", f"{tot_t / tot_o:.1f}x"]
    )
    print_table(
        f"Slate estimators, {n:,} slates of {K} ({n * K:,} rows, {m} items), point estimates, "
        f"load {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end",
        ["estimator", "offrec ms", "OBP 0.5.7 ms", "speed-up"],
        rows,
    )
    print(
        f"one read of q_hat and evaluation_policy_action_dist ({2 * q2.nbytes / 2**20:,.0f} MB, "
        f"np.sum of each, one thread): {1000 * floor:.1f} ms; OBP's cascade-DR over it: "
        f"{theirs['cascade-dr'][0] / floor:.1f}x"
    )


def scale(n_slates: int = 2_000_000, slate_size: int = 5, batch_rows: int = 65_536) -> None:
    """Streamed slate OPE on a log of ``n_slates * slate_size`` slots (10M by default): write
    the log, then evaluate a Plackett-Luce target with every slate estimator in a fresh
    process, reporting its peak RSS and wall time."""
    from offrec.logs.slate import collect_slates
    from offrec.policies.loggers import logging_policy
    from offrec.sim.config import WorldConfig
    from offrec.sim.slate import ClickModel, MarginalCache, PlackettLuce, SlateWorld
    from offrec.sim.world import World

    world = World(WorldConfig(n_items=100, n_users=1000), seed=0)
    logger = PlackettLuce(logging_policy(world, "softmax", beta=0.5), slate_size)
    sw = SlateWorld(world, slate_size, ClickModel("cascade"))
    with tempfile.TemporaryDirectory(dir=os.environ.get("SLATE_BENCH_DIR")) as tmp:
        path = Path(tmp) / "log"
        t = time.perf_counter()
        collect_slates(
            sw,
            logger,
            out=path,
            n_slates=n_slates,
            seed=0,
            chunk_slates=65_536,
            marginals=MarginalCache(logger, 1000, seed=1),
        )
        t_write = time.perf_counter() - t
        size = sum(f.stat().st_size for f in path.iterdir())
        code = f"""
import time
from offrec.policies.loggers import logging_policy
from offrec.sim.config import WorldConfig
from offrec.sim.slate import PlackettLuce
from offrec.sim.world import World
from offrec.ope.slate_log import evaluate_slates
world = World(WorldConfig(n_items=100, n_users=1000), seed=0)
target = PlackettLuce(logging_policy(world, "softmax", beta=1.0), {slate_size})
t = time.perf_counter()
res = evaluate_slates({str(path)!r}, target, n_bootstrap=1000, batch_rows={batch_rows},
                      marginal_samples=1000)
OUT = {{"seconds": time.perf_counter() - t, "values": {{r.estimator: r.value for r in res}}}}
"""
        peak, out = peak_rss_mb_of(code)
    print_table(
        f"Streamed slate OPE, {n_slates * slate_size:,} slots ({n_slates:,} slates of {slate_size}, "
        f"100 items), batches of {batch_rows:,} rows, {len(out['values'])} estimators + 1000 "
        "bootstrap resamples, "
        f"load {os.getloadavg()[0]:.1f}",
        ["write log s", "log MB", "evaluate s", "peak RSS MB (evaluating process)"],
        [[f"{t_write:.0f}", f"{size / 2**20:.0f}", f"{out['seconds']:.0f}", f"{peak:.0f}"]],
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--slates", type=int, default=20_000)
    ap.add_argument("--users", type=int, default=1_000)
    ap.add_argument("--slate-size", type=int, default=5)
    ap.add_argument("--n-bootstrap", type=int, default=300)
    ap.add_argument("--marginal-samples", type=int, default=1_000)
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    ap.add_argument(
        "--speed",
        action="store_true",
        help="instead: time offrec's slate estimators against OBP's on the same arrays",
    )
    ap.add_argument(
        "--scale",
        type=int,
        default=None,
        metavar="N_SLATES",
        help="instead: streamed OPE on a log of N_SLATES slates, peak memory",
    )
    a = ap.parse_args()
    if a.scale:
        scale(a.scale, a.slate_size)
        raise SystemExit(0)
    if a.speed:
        speed(a.slates)
        raise SystemExit(0)
    main(a.seeds, a.slates, a.users, a.slate_size, a.n_bootstrap, a.marginal_samples, a.out)
