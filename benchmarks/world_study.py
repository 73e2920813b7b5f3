"""The study across worlds (issue 26): estimator choice, the gate and offline RL with
selection, on offrec's world at a setting the earlier studies never looked at and on
SCOPE-RL's RECEnv (binary and continuous rewards), against Monte-Carlo truth.

Per (world, seed): a logger's sessions, 70% to train offline RL (CQL over an alpha x
steps grid chosen by off-policy selection, :func:`offrec.rl.select.select_offline_rl`),
30% held out for OPE; targets = the logger, the selected CQL, and (RECEnv) two hand-made
policies on the env's item features (greedy, and epsilon-greedy 0.3); (offrec) the myopic
reward-model bandit trained on the 70%, greedy and epsilon-greedy 0.3. On the held-out
log: every estimator of ``--estimators`` (normal intervals), the estimator chosen from the
log (in-sample checks + held-out checks, :func:`offrec.ope.held_out.held_out_checks`,
then SLOPE), and the gate (:func:`offrec.ope.gate.decide`). Truth: Monte-Carlo
(``--truth-episodes`` per policy). Printed per world:

- each estimator's mean relative error over the non-logger targets, relative to the value
  ``|V^ - V| / V`` and to the logger-to-best gap ``|V^ - V| / (max_pi V - V_logger)``,
  its 95% coverage, and Spearman = 1 count;
- the chosen estimator per seed and its errors;
- the gate's verdict and whether it was right (a recommendation is right when the pick is
  truly better than the logger; "cannot tell" is counted);
- whether the selected CQL truly beats the logger by more than 3 standard errors.

Run: ``PYTHONPATH=. python -m benchmarks.world_study --worlds rec-binary rec-continuous
offrec-h20 --seeds 0 1`` (small settings by default: it is CPU-heavy).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import time
from typing import Any

import numpy as np
import pandas as pd

from benchmarks._table import print_table

ESTIMATORS = ("mb", "pdis", "wpdis", "dr", "dr-nn", "sndr-nn", "mis")


@dataclasses.dataclass
class Case:
    """One (world, seed): held-out log, targets with roles, truth (value, se), logger."""

    world: str
    seed: int
    train: Any
    held: Any
    targets: dict[str, Any]
    roles: dict[str, str]
    logger: Any
    truth_fn: Any  # policy -> (value, se)


class _SoftmaxOnFeatures:
    """RECEnv logger / targets: scores ``x @ V.T`` of (noisy) item features V."""

    def __init__(self, feats: np.ndarray, beta: float, eps: float = 0.0) -> None:
        self.feats, self.beta, self.eps = feats, beta, eps
        self.n_actions = feats.shape[0]

    def action_dist(self, obs: np.ndarray) -> np.ndarray:
        s = np.asarray(obs, np.float64) @ self.feats.T
        if np.isinf(self.beta):
            p = (s == s.max(axis=1, keepdims=True)).astype(np.float64)
        else:
            p = np.exp(self.beta * (s - s.max(axis=1, keepdims=True)))
        p /= p.sum(axis=1, keepdims=True)
        return (1 - self.eps) * p + self.eps / self.n_actions

    def sample(self, obs: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        from offrec.core.policy import sample_from_dist

        return sample_from_dist(self.action_dist(obs), rng)


def rec_case(kind: str, seed: int, n_sessions: int, truth_episodes: int) -> Case:
    from offrec.logs.env_collect import env_log
    from offrec.pipeline import split_sessions
    from offrec.sim.adapter import mc_value
    from offrec.sim.recgym_world import recgym_world

    w = recgym_world(reward_type=kind, step_per_episode=10, n_items=100, world_seed=12345)
    env = w.make_env().env
    v = np.asarray(env.item_feature_vector, np.float64)
    rng = np.random.default_rng(seed)
    logger = _SoftmaxOnFeatures(v + rng.normal(0, 0.3, v.shape), beta=3.0)
    data = env_log(w, logger, n_sessions=n_sessions, seed=seed)
    train, held = split_sessions(data, 0.3, seed=seed)
    targets = {
        "logger": logger,
        "greedy on item features": _SoftmaxOnFeatures(v, beta=np.inf),
        "eps-greedy 0.3 on item features": _SoftmaxOnFeatures(v, beta=np.inf, eps=0.3),
    }
    roles = {"logger": "logger", **{n: "hand-made" for n in targets if n != "logger"}}

    def truth(p: Any) -> tuple[float, float]:
        m = mc_value(w, p, truth_episodes, seed=10_000 + seed)
        return m.value, m.se

    return Case(f"RECEnv {kind}", seed, train, held, targets, roles, logger, truth)


OFFREC_WORLDS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "offrec-h20": (
        "offrec h20/300 items/eps 0.3",
        {"horizon": 20, "n_items": 300},
        {"kind": "epsilon_greedy", "epsilon": 0.3},
    ),
    "offrec-h10-1000": (
        "offrec h10/1,000 items/softmax 0.5",
        {"horizon": 10, "n_items": 1000},
        {"kind": "softmax", "beta": 0.5},
    ),
}
"""offrec's own world at settings the earlier studies never looked at: (name, WorldConfig
fields, logger) per ``--worlds`` key."""


def offrec_case(world_key: str, seed: int, n_sessions: int, truth_episodes: int) -> Case:
    from offrec.ope.evaluation import simulate_logged_data
    from offrec.pipeline import split_sessions
    from offrec.policies.loggers import logging_policy
    from offrec.sim import World
    from offrec.sim.config import WorldConfig

    name, fields, log = OFFREC_WORLDS[world_key]
    world = World(WorldConfig(**fields), seed=seed)
    logger = logging_policy(world, **log)
    # simulate_logged_data's count is of sessions (World.run_sessions); this passed
    # n_sessions * horizon before, so the README's "500" and "1,000 sessions" of issue 26's
    # first offrec-world runs were 5,000 (h10) and 20,000 (h20) sessions
    data = simulate_logged_data(world, logger, n_sessions, seed=seed)
    train, held = split_sessions(data, 0.3, seed=seed)
    from offrec.training import LearnerSpec, train_policy

    targets: dict[str, Any] = {"logger": logger}
    for label, head in (
        ("bandit greedy", {"kind": "greedy"}),
        ("bandit eps-greedy 0.3", {"kind": "epsilon_greedy", "epsilon": 0.3}),
    ):  # the myopic reward-model bandit of session_rl.toml, two heads
        targets[label] = train_policy(LearnerSpec("reward-model", head=head), train, None, seed)[0]
    roles = {n: ("logger" if n == "logger" else "learned") for n in targets}

    def truth(p: Any) -> tuple[float, float]:
        v = world.true_value(p, n_sessions=truth_episodes, seed=10_000 + seed)
        return v.value, getattr(v, "se", getattr(v, "stderr", float("nan")))

    return Case(name, seed, train, held, targets, roles, logger, truth)


def run_case(case: Case, estimators: tuple[str, ...], rl: bool, steps: tuple[int, ...]) -> dict:
    from offrec.ope import evaluate
    from offrec.ope.gate import decide
    from offrec.ope.held_out import held_out_checks
    from offrec.ope.selection import rechoose, spearman

    t0 = time.perf_counter()
    out: dict[str, Any] = {"world": case.world, "seed": case.seed}
    targets, roles = dict(case.targets), dict(case.roles)
    if rl:
        from offrec.rl import RLConfig
        from offrec.rl.select import select_offline_rl

        base = RLConfig(algo="cql", seed=case.seed)
        sel = select_offline_rl(
            case.train,
            case.held,
            case.logger,
            alphas=(0.1, 1.0, 4.0),
            steps=steps,
            base=base,
            seed=case.seed,
        )
        if sel.policy is not None:
            targets["CQL (selected)"] = sel.policy
            roles["CQL (selected)"] = "learned"
            out["rl"] = sel
    t_rl = time.perf_counter()
    res = evaluate(
        case.held,
        targets,
        estimators=list(estimators),
        interval="normal",
        seed=case.seed,
        mode="session",
    )
    checks = held_out_checks(case.held, case.logger, list(estimators), seed=case.seed)
    res = rechoose(res, checks)
    t_ope = time.perf_counter()

    def paired(a: str, b: str, e: str) -> tuple[float, float, float]:
        iv = res.compare(a, b, e)
        return iv.value, iv.low, iv.high

    dec = decide(res.table, roles, mode="session", paired=paired, choice=res.choice)
    truth = {n: case.truth_fn(p) for n, p in targets.items()}
    t_truth = time.perf_counter()
    tab = res.table.copy()
    tab["truth"] = tab["policy"].map(lambda p: truth[p][0])
    v_log = truth["logger"][0]
    gap = max(v for v, _ in truth.values()) - v_log
    tab["rel_error"] = (tab["value"] - tab["truth"]).abs() / tab["truth"].abs()
    tab["gap_error"] = (tab["value"] - tab["truth"]).abs() / gap if gap > 0 else np.nan
    tab["covered"] = (tab["low"] <= tab["truth"]) & (tab["truth"] <= tab["high"])
    sp = {
        e: spearman(g["value"].to_numpy(), g["truth"].to_numpy())
        for e, g in tab.groupby("estimator", sort=False)
    }
    right = None
    if dec.verdict == "recommend" and dec.pick is not None:
        right = truth[dec.pick][0] > v_log
    elif dec.verdict == "keep the logger":
        right = all(v <= v_log for n, (v, _) in truth.items() if roles.get(n) != "logger")
    better5 = any(v > 1.05 * v_log for n, (v, _) in truth.items() if n != "logger")
    out.update(
        table=tab,
        spearman=sp,
        chosen=res.choice.estimator if res.choice else None,
        verdict=dec.verdict,
        pick=dec.pick,
        gate_reasons=list(dec.reasons),
        best=dec.best,
        lift=(None if dec.lift is None else (dec.lift.diff, dec.lift.low, dec.lift.high)),
        right=right,
        better5=better5,
        truth=truth,
        gap=gap,
        held_failed=[(c.estimator, c.target) for c in checks if not c.passed],
        seconds=(t_rl - t0, t_ope - t_rl, t_truth - t_ope),
    )
    return out


SLATE_ESTIMATORS = ("sips", "iips", "rips", "snsips", "sniips", "snrips")


def sardine_study(seeds: list[int], n_slates: int, truth_slates: int) -> None:
    """The slate estimators on SARDINE's ``SlateTopK-Bored-v0`` (1,000 items, slates of 10;
    :mod:`offrec.sim.sardine_world`) against Monte-Carlo truth: a factored softmax logger
    (beta 10 on the items' alignment with the mean user direction), targets on the same
    scores at beta 30 (sharper) and 0 (uniform); ``n_slates`` logged first slates per
    seed, normal intervals. Prints each estimator's mean relative error over the two
    targets (to the value and to the logger-to-best gap), coverage and Spearman = 1."""
    from offrec.ope.slate import make_slate_estimator
    from offrec.sim.sardine_world import (
        FactoredSlatePolicy,
        log_first_slates,
        sardine_env,
        slate_mc_value,
    )

    env = sardine_env()
    emb = env.item_embedd
    score = emb @ (np.ones(emb.shape[1]) / np.sqrt(emb.shape[1]))
    pols = {
        name: FactoredSlatePolicy.softmax(score, beta, env.slate_size)
        for name, beta in (("logger", 10.0), ("sharper (beta 30)", 30.0), ("uniform", 0.0))
    }
    rows: list[dict[str, Any]] = []
    for seed in seeds:
        t0 = time.perf_counter()
        log = log_first_slates(env, pols["logger"], n_slates, seed)
        truth = {
            n: slate_mc_value(env, p, truth_slates, 10_000 + 7 * seed + i)
            for i, (n, p) in enumerate(pols.items())
        }
        gap = max(v.value for v in truth.values()) - truth["logger"].value
        for e in SLATE_ESTIMATORS:
            est = make_slate_estimator(e)
            vals = {}
            for n, p in pols.items():
                arr = log.arrays(p)
                iv = est.estimate_interval(method="normal", **arr)
                ess = est.diagnostics(est.terms(keys=False, **arr))["ess"]
                vals[n] = iv.value
                rows.append(
                    dict(
                        seed=seed,
                        estimator=e,
                        policy=n,
                        value=iv.value,
                        truth=truth[n].value,
                        covered=iv.low <= truth[n].value <= iv.high,
                        gap=gap,
                        ess=ess,
                    )
                )
            sp = spearman_of(vals, {n: v.value for n, v in truth.items()})
            rows[-1]["spearman"] = sp
        print(
            f"sardine seed {seed}: truth "
            + ", ".join(f"{n} {v.value:.4f} ± {v.se:.4f}" for n, v in truth.items())
            + f"; {time.perf_counter() - t0:.0f}s, load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
    tab = pd.DataFrame(rows)
    tab["rel_error"] = (tab["value"] - tab["truth"]).abs() / tab["truth"].abs()
    tab["gap_error"] = (tab["value"] - tab["truth"]).abs() / tab["gap"]
    out = []
    for e in SLATE_ESTIMATORS:
        s = tab[(tab["estimator"] == e) & (tab["policy"] != "logger")]
        ones = int((tab[tab["estimator"] == e]["spearman"].dropna() > 1 - 1e-9).sum())
        out.append(
            [
                e,
                100 * s["rel_error"].mean(),
                100 * s["gap_error"].mean(),
                100 * s["covered"].mean(),
                f"{ones}/{len(seeds)}",
                s["ess"].min(),
            ]
        )
    print_table(
        f"SARDINE SlateTopK-Bored-v0: seeds {seeds}, {n_slates} logged slates, truth "
        f"{truth_slates} episodes per policy; estimators over the two targets",
        [
            "estimator",
            "mean rel.err % (value)",
            "mean err % of gap",
            "coverage %",
            "Spearman = 1",
            "smallest ESS",
        ],
        out,
    )


def spearman_of(est: dict[str, float], truth: dict[str, float]) -> float:
    from offrec.ope.selection import spearman

    names = list(truth)
    return spearman(np.array([est[n] for n in names]), np.array([truth[n] for n in names]))


def _chosen_rows(run: dict) -> pd.DataFrame:
    """The chosen estimator's rows over the non-logger targets of one case (empty when
    nothing was chosen)."""
    t = run["table"]
    return t[(t["estimator"] == run["chosen"]) & (t["policy"] != "logger")]


def truth_se_of_gap(run: dict) -> float:
    """The Monte-Carlo standard error of the truth's logger-to-best gap, relative to the gap:
    ``hypot(se_best, se_logger) / (V_best - V_logger)`` (inf when the logger is best)."""
    truth = run["truth"]
    v_log, se_log = truth["logger"]
    best = max((n for n in truth if n != "logger"), key=lambda n: truth[n][0], default=None)
    if best is None or run["gap"] <= 0:
        return float("inf")
    return float(np.hypot(truth[best][1], se_log) / run["gap"])


def misorders_only_ties(run: dict) -> bool:
    """Whether every pair of policies the chosen estimator orders against the truth is a
    pair the truth itself cannot order: true values within two Monte-Carlo standard errors
    of their difference, ``|V_i - V_j| < 2 hypot(se_i, se_j)`` (False when nothing was
    chosen or some misordered pair is resolved; True when nothing is misordered)."""
    if not run["chosen"]:
        return False
    t = run["table"]
    est = dict(
        zip(
            t.loc[t["estimator"] == run["chosen"], "policy"],
            t.loc[t["estimator"] == run["chosen"], "value"],
            strict=True,
        )
    )
    truth = run["truth"]
    names = [n for n in truth if n in est]
    for i, u in enumerate(names):
        for v in names[i + 1 :]:
            (tu, su), (tv, sv) = truth[u], truth[v]
            if (est[u] - est[v]) * (tu - tv) < 0 and abs(tu - tv) >= 2 * math.hypot(su, sv):
                return False
    return True


@dataclasses.dataclass(frozen=True)
class Bars:
    """The issue's bars for the chosen estimator over a set of (world, seed) cases.

    Per case (:attr:`per_case_ok`: mean error <= 10% of the value and <= 25% of the gap
    and coverage >= 80% in that case) and pooled as the bar reads: ``mean_rel`` and
    ``mean_gap`` the mean over cases of the chosen estimator's mean error over the non-logger
    targets (over the cases where something was chosen), ``coverage`` the share of covered
    (case, target) intervals over every case's non-logger targets (a case where nothing was
    chosen counts all its targets as not covered), ``spearman_ones`` the cases where the
    chosen estimator ranks the policies exactly as the truth (nothing chosen: not). The
    error bars are missed whenever a case has no chosen estimator (``no_choice``)."""

    n: int
    no_choice: int
    per_case_ok: int
    mean_rel: float
    mean_gap: float
    covered: int
    intervals: int
    spearman_ones: int
    worst_truth_se_of_gap: float
    spearman_ties: int = 0  # cases below Spearman 1 whose every misordered pair is a tie

    @property
    def coverage(self) -> float:
        return self.covered / self.intervals if self.intervals else float("nan")

    @property
    def errors_met(self) -> bool:
        return self.no_choice == 0 and self.mean_rel <= 0.10 and self.mean_gap <= 0.25

    @property
    def coverage_met(self) -> bool:
        return self.coverage >= 0.8

    @property
    def spearman_met(self) -> bool:
        return self.spearman_ones >= 0.8 * self.n

    def sentence(self) -> str:
        miss = (
            f"; {self.no_choice} case(s) where nothing was chosen count as misses (their "
            "targets as not covered, their ranking as wrong, and the error bars as missed)"
            if self.no_choice
            else ""
        )
        yes = {True: "met", False: "missed"}
        below = self.n - self.spearman_ones
        ties = (
            f"; of the other {below}, {self.spearman_ties} misorder only policies whose true "
            "values are within two Monte-Carlo standard errors of each other"
            if below
            else ""
        )
        return (
            f"pooled over {self.n} case(s): the chosen estimator's mean error "
            f"{100 * self.mean_rel:.3g}% of the value and {100 * self.mean_gap:.3g}% of the gap "
            f"(bars 10% and 25%: {yes[self.errors_met]}), coverage {self.covered}/"
            f"{self.intervals} = {100 * self.coverage:.3g}% (bar 80%: {yes[self.coverage_met]}), "
            f"Spearman = 1 in {self.spearman_ones} of {self.n} (bar 80%: "
            f"{yes[self.spearman_met]}{ties}); per case, all three bars in {self.per_case_ok} of "
            f"{self.n}{miss}; the truth's s.e. is at most "
            f"{100 * self.worst_truth_se_of_gap:.3g}% of the gap"
        )


def bars(runs: list[dict]) -> Bars:
    """:class:`Bars` of ``runs`` (each a :func:`run_case` result, or a saved one)."""
    rel, gap, ok, covered, intervals, ones, none, ties = [], [], 0, 0, 0, 0, 0, 0
    for r in runs:
        t = r["table"]
        n_targets = int(t.loc[t["policy"] != "logger", "policy"].nunique())
        intervals += n_targets
        c = _chosen_rows(r) if r["chosen"] else t.iloc[:0]
        if not len(c):
            none += 1
            continue
        rel.append(float(c["rel_error"].mean()))
        gap.append(float(c["gap_error"].mean()))
        covered += int(c["covered"].sum())
        ok += bool(rel[-1] <= 0.10 and gap[-1] <= 0.25 and c["covered"].mean() >= 0.8)
        one = bool(r["spearman"].get(r["chosen"], 0.0) > 1 - 1e-9)  # rounding: 0.99999..
        ones += one
        ties += (not one) and misorders_only_ties(r)
    return Bars(
        n=len(runs),
        no_choice=none,
        per_case_ok=ok,
        mean_rel=float(np.mean(rel)) if rel else float("nan"),
        mean_gap=float(np.mean(gap)) if gap else float("nan"),
        covered=covered,
        intervals=intervals,
        spearman_ones=ones,
        worst_truth_se_of_gap=max((truth_se_of_gap(r) for r in runs), default=float("nan")),
        spearman_ties=ties,
    )


def summary(runs: list[dict]) -> None:
    """Across every (world, seed): the gate's record and the chosen estimator's bars, per
    case and pooled (:func:`bars`)."""
    n = len(runs)
    wrong = sum(r["right"] is False for r in runs)
    better5 = [r for r in runs if r["better5"]]
    cannot = sum(r["verdict"] == "cannot tell" for r in better5)
    print(
        f"\nAll {n} cases: the gate shipped a policy truly below the logger in {wrong}; "
        f"'cannot tell' in {cannot} of the {len(better5)} cases where some policy is truly "
        f"better than the logger by > 5%; {bars(runs).sentence()}.",
        flush=True,
    )


def saved(run: dict) -> dict:
    """A run without the trained policy (picklable): the RL selection as a summary."""
    out = {k: v for k, v in run.items() if k != "rl"}
    rl = run.get("rl")
    if rl is not None:
        out["rl_summary"] = (rl.selected, rl.verdict, rl.estimator, rl.lift, rl.lift_low)
    return out


def report(runs: list[dict], estimators: tuple[str, ...]) -> None:
    for world in dict.fromkeys(r["world"] for r in runs):
        rs = [r for r in runs if r["world"] == world]
        tab = pd.concat([r["table"] for r in rs])
        nonlog = tab[tab["policy"] != "logger"]
        rows = []
        for e in estimators:
            s = nonlog[nonlog["estimator"] == e]
            ones = sum(r["spearman"].get(e, 0.0) > 1 - 1e-9 for r in rs)  # rounding: 0.99999..
            rows.append(
                [
                    e,
                    100 * s["rel_error"].mean(),
                    100 * s["gap_error"].mean(),
                    100 * s["covered"].mean(),
                    f"{ones}/{len(rs)}",
                ]
            )
        print_table(
            f"{world}: seeds {[r['seed'] for r in rs]}, estimators over the non-logger targets",
            [
                "estimator",
                "mean rel.err % (value)",
                "mean err % of gap",
                "coverage %",
                "Spearman = 1",
            ],
            rows,
        )
        rows = []
        for r in rs:
            t = r["table"]
            c = t[(t["estimator"] == r["chosen"]) & (t["policy"] != "logger")]
            rl = r.get("rl_summary")
            cql = r["truth"].get("CQL (selected)")
            v_log, se_log = r["truth"]["logger"]
            beats = (
                ""
                if cql is None
                else f"{cql[0] - v_log:+.3f} ({(cql[0] - v_log) / np.hypot(cql[1], se_log):+.1f} se)"
            )
            rows.append(
                [
                    r["seed"],
                    r["chosen"],
                    100 * c["rel_error"].mean() if len(c) else np.nan,
                    100 * c["gap_error"].mean() if len(c) else np.nan,
                    100 * c["covered"].mean() if len(c) else np.nan,
                    r["verdict"],
                    r["pick"],
                    {True: "right", False: "WRONG", None: "-"}[r["right"]],
                    r["better5"],
                    f"{r['gap']:.3f}",
                    f"{100 * truth_se_of_gap(r):.3g}",
                    "" if rl is None else f"{rl[0]} ({rl[1]})",
                    beats,
                    "; ".join(f"{e}:{t.split(' (')[0]}" for e, t in r["held_failed"]),
                    "/".join(f"{s:.0f}" for s in r["seconds"]),
                ]
            )
            if r.get("gate_reasons"):
                lift = r.get("lift")
                print(
                    f"  seed {r['seed']}: gate on {r.get('best')} (lift "
                    + ("-" if lift is None else f"{lift[0]:+.3f}, {lift[1]:+.3f} to {lift[2]:+.3f}")
                    + f", truth {r['truth'][r['best']][0] - r['truth']['logger'][0]:+.3f}): "
                    + "; ".join(r["gate_reasons"]),
                    flush=True,
                )
        print_table(
            f"{world}: chosen estimator and gate per seed",
            [
                "seed",
                "chosen",
                "rel.err %",
                "err % of gap",
                "coverage %",
                "gate",
                "pick",
                "gate right",
                "some policy > logger +5%",
                "gap (best - logger)",
                "truth s.e. % of gap",
                "CQL selected (its gate)",
                "CQL - logger in truth",
                "held-out checks failed",
                "s (rl/ope/truth)",
            ],
            rows,
        )
        print(f"{world}: {bars(rs).sentence()}.", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--worlds",
        nargs="+",
        default=["rec-binary", "rec-continuous", "offrec-h20", "offrec-h10-1000"],
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--sessions", type=int, default=4000, help="logged sessions per case")
    p.add_argument("--truth-episodes", type=int, default=2000)
    p.add_argument("--estimators", default=",".join(ESTIMATORS))
    p.add_argument("--no-rl", action="store_true")
    p.add_argument("--steps", type=int, nargs="+", default=[1000, 3000])
    p.add_argument("--slates", type=int, default=10_000, help="SARDINE: logged slates")
    p.add_argument("--save", default=None, help="pickle the runs here (for --load)")
    p.add_argument("--load", nargs="+", default=None, help="report saved runs; run nothing")
    a = p.parse_args()
    est = tuple(a.estimators.split(","))
    if a.load:
        import pickle

        loaded = [r for f in a.load for r in pickle.load(open(f, "rb"))]  # noqa: SIM115
        report(loaded, est)
        summary(loaded)
        return
    import torch

    torch.set_num_threads(1)
    if "sardine" in a.worlds:
        sardine_study(a.seeds, a.slates, a.truth_episodes)
        a.worlds = [w for w in a.worlds if w != "sardine"]
    runs: list[dict] = []
    for world in a.worlds:
        for s in a.seeds:
            t = time.perf_counter()
            if world.startswith("rec-"):
                case = rec_case(world[4:], s, a.sessions, a.truth_episodes)
            else:
                case = offrec_case(world, s, a.sessions, a.truth_episodes)
            runs.append(saved(run_case(case, est, not a.no_rl, tuple(a.steps))))
            if a.save:
                import pickle

                with open(a.save, "wb") as fh:
                    pickle.dump(runs, fh)
            report(runs[-1:], est)  # each case as it finishes; all of them at the end
            print(
                f"{world} seed {s}: {time.perf_counter() - t:.0f}s, load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    if runs:
        report(runs, est)
        summary(runs)


if __name__ == "__main__":
    main()
