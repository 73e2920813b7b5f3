"""The pipeline's report, assembled in one place: main table, headline, trust section,
plots, and the report part of ``metrics.json``.

:func:`build_report` takes the OPE table, the ground truth, the policies' roles, the log
and the training curves, and writes ``report.md``, ``report.html`` and ``plots/*.png``
into the output folder. The OPE table may carry the diagnostics columns ``ess,
ess_share, max_weight, support_violation, warnings`` and a ``recommended`` estimator;
any of them may be missing (sequential OPE reports fewer), and the report says so.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from offrec.core.fmt import format_number
from offrec.ope.gate import DEPLOYABLE, PAIRED, Decision, Paired, decide, disagreements
from offrec.ope.selection import Choice
from offrec.report.decision import trust_table
from offrec.report.plots import plot_curves, plot_estimate_vs_truth, plot_value_bars
from offrec.report.render import Body, Plot, Table, write_report

LOSS_NOTE = (
    "How to read it: d3rlpy's DQN and CQL report the temporal-difference loss, the squared "
    "(Huber) gap between Q(s, a) and its bootstrapped target r + gamma * max Q(s', a'). "
    "Q starts near 0 and grows towards the return (several clicks per session) as training "
    "propagates rewards back through the steps, and the TD error grows with the size of Q "
    "and of its targets, so a loss that rises and then levels off is expected, not "
    "divergence. Divergence shows as a loss growing without bound together with an online "
    "value that falls; judge training by the online value plot, not by the loss."
)


@dataclass
class ReportInput:
    """What a pipeline run hands to :func:`build_report`.

    Attributes:
        name, description: the pipeline's name and description.
        mode: ``"bandit"`` or ``"session"``.
        value_label: unit of the values (``"CTR"``, ``"clicks per session"``).
        ope: the OPE table, one row per (policy, estimator).
        truth: ``{policy: {"value", "stderr", "exact", ...}}`` from the simulator.
        roles: ``{policy: role}`` (see :data:`offrec.report.decision.ROLES`).
        data: the whole log (a ``LoggedData``), for the data summary.
        train_rows, eval_rows: rows used to train and to score.
        seed, alpha, interval, holdout: the run's settings, for the "About" text.
        curves: ``{policy: training curve dict}`` (steps, losses, eval_steps, eval_value).
        paired: ``paired(a, b, estimator) -> (diff, low, high)``, the OPE's paired
            difference (:meth:`offrec.ope.OPEResult.compare`); None: the comparisons are
            approximated as independent, and the report says so.
        extra_sections: ``(title, body)`` sections placed after the decision (e.g. the
            online-vs-offline comparison of a pipeline with online learners).
        choice: the OPE's data-driven estimator choice (:attr:`offrec.ope.OPEResult.choice`),
            shown in the trust section and used by the gate.
        decision: the gate's decision (:func:`offrec.ope.gate.decide`); None: the gate is
            run here on ``ope`` with ``paired`` and ``choice``.
    """

    name: str
    description: str
    mode: str
    value_label: str
    ope: pd.DataFrame
    truth: Mapping[str, Mapping[str, Any]]
    roles: Mapping[str, str]
    data: Any
    train_rows: int
    eval_rows: int
    seed: int = 0
    alpha: float = 0.05
    interval: str = "bootstrap"
    holdout: float = 0.0
    curves: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    paired: Paired | None = None
    extra_sections: tuple[tuple[str, Body], ...] = ()
    choice: Choice | None = None
    decision: Decision | None = None


@dataclass
class ReportOutput:
    """The main table (OPE + truth + errors + ranks), the report's parts for
    ``metrics.json``, and the written files."""

    table: pd.DataFrame
    summary: dict[str, Any]
    selection: list[dict[str, Any]]
    decision: Decision
    trust: pd.DataFrame
    disagreements: list[str]
    plots: dict[str, Path]
    files: tuple[Path, Path]
    choice: Choice | None = None

    def metrics(self) -> dict[str, Any]:
        """The report's part of ``metrics.json`` (JSON-ready)."""
        import json

        return {
            "data": self.summary,
            "estimates": json.loads(self.table.to_json(orient="records")),
            "selection": self.selection,
            "decision": self.decision.to_dict(),
            "trust": json.loads(self.trust.to_json(orient="records")),
            "disagreements": self.disagreements,
            "estimator_choice": None if self.choice is None else self.choice.to_dict(),
        }


def slug(name: str) -> str:
    """A file-name-safe version of ``name``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "policy"


def main_table(ope: pd.DataFrame, truth: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """The OPE table plus truth, truth_stderr, rel_error, covered, rank_ope and rank_true
    (ranks among the policies each estimator scored, 1 = best)."""
    from offrec.ope.selection import ranks

    table = ope.copy()
    table["truth"] = table["policy"].map(lambda p: truth[p]["value"])
    table["truth_stderr"] = table["policy"].map(lambda p: truth[p]["stderr"])
    table["rel_error"] = (table["value"] - table["truth"]).abs() / table["truth"].abs()
    table["covered"] = (table["low"] <= table["truth"]) & (table["truth"] <= table["high"])
    table["rank_ope"] = 0
    table["rank_true"] = 0
    for _, sub in table.groupby("estimator", sort=False):
        table.loc[sub.index, "rank_ope"] = ranks(sub["value"].to_numpy())
        table.loc[sub.index, "rank_true"] = ranks(sub["truth"].to_numpy())
    return table


def selection_table(table: pd.DataFrame, roles: Mapping[str, str]) -> list[dict[str, Any]]:
    """Per estimator: Spearman correlation of estimates and truths over all the policies
    it scored; the deployable policy it would pick; the regret of that pick among the
    deployable policies (true best minus true value of the pick); mean relative error."""
    from offrec.ope.selection import spearman

    out = []
    for est, sub in table.groupby("estimator", sort=False):
        dep = sub[sub["policy"].map(lambda p: roles.get(str(p)) in DEPLOYABLE)]
        row: dict[str, Any] = {
            "estimator": str(est),
            "spearman": spearman(sub["value"].to_numpy(), sub["truth"].to_numpy()),
        }
        if len(dep):
            i = int(np.argmax(dep["value"].to_numpy()))
            row["picked_deployable"] = str(dep["policy"].iloc[i])
            row["regret"] = float(dep["truth"].max() - dep["truth"].iloc[i])
        else:
            row["picked_deployable"], row["regret"] = None, float("nan")
        row["mean_rel_error"] = float(sub["rel_error"].mean())
        out.append(row)
    return out


def data_summary(data: Any, train_rows: int, eval_rows: int) -> dict[str, Any]:
    """Rows, sessions, CTR, clicks per session, pscore range and the uniform-target ESS."""
    sessions = int(np.unique(data.session_id).size)
    w = (1.0 / data.n_actions) / data.pscore
    return {
        "rows": int(data.n_rows),
        "train_rows": int(train_rows),
        "eval_rows": int(eval_rows),
        "sessions": sessions,
        "ctr": float(data.reward.mean()),
        "clicks_per_session": float(data.reward.sum() / sessions),
        "pscore_min": float(data.pscore.min()),
        "pscore_max": float(data.pscore.max()),
        "ess_uniform_target": float(w.sum() ** 2 / (w**2).sum()),
    }


def build_report(out: str | Path, inp: ReportInput) -> ReportOutput:
    """Write the report of one pipeline run into ``out`` and return its parts."""
    out = Path(out)
    table = main_table(inp.ope, inp.truth)
    roles = {p: inp.roles.get(p, "oracle") for p in inp.truth}
    level = f"{100 * (1 - inp.alpha):.0f}%"
    summary = data_summary(inp.data, inp.train_rows, inp.eval_rows)
    selection = selection_table(table, roles) if len(table) else []
    decision = inp.decision or decide(
        inp.ope,
        roles,
        mode=inp.mode,
        alpha=inp.alpha,
        paired=inp.paired,
        value_label=inp.value_label,
        choice=inp.choice,
    )
    headline = [*decision.sentences, *_truth_check(decision, inp.truth, inp.value_label)]
    trust = trust_table(table, roles) if len(table) else pd.DataFrame()
    clash = disagreements(inp.ope) if len(table) else []

    plots_dir = out / "plots"
    plots: dict[str, Path] = {}
    result_blocks: list[Body] = []
    if len(table):
        plots["values"] = plot_value_bars(
            table, plots_dir / "values.png", value_label=inp.value_label
        )
        plots["estimate_vs_truth"] = plot_estimate_vs_truth(
            table, plots_dir / "estimate_vs_truth.png", value_label=inp.value_label
        )
        result_blocks += [
            Plot(
                plots["values"],
                "Estimates vs truth by policy",
                f"Each marker is an estimator's estimate with its {level} interval; the grey "
                "bar is the true online value (with its 95% Monte-Carlo interval when "
                "simulated).",
            ),
            Plot(
                plots["estimate_vs_truth"],
                "Estimate vs truth",
                "Points above the dashed line over-estimate the policy, below it "
                "under-estimate; an interval that does not cross the line misses the truth.",
            ),
        ]
    training_blocks = _training_plots(inp, plots_dir, plots, summary)

    main = table[
        [
            c
            for c in (
                "policy",
                "estimator",
                "value",
                "low",
                "high",
                "truth",
                "rel_error",
                "covered",
                "rank_ope",
                "rank_true",
            )
            if c in table.columns
        ]
    ]
    truth_df = pd.DataFrame(
        [
            {
                "policy": p,
                "role": roles[p],
                "true value": v["value"],
                "stderr": v["stderr"],
                "exact": bool(v["exact"]),
            }
            for p, v in inp.truth.items()
        ]
    )
    truth_df = truth_df.sort_values("true value", ascending=False, kind="stable")
    truth_df.insert(2, "rank", np.arange(1, len(truth_df) + 1))
    about = (
        (inp.description or inp.name)
        + f"\n\nValue: {inp.value_label}. Mode: {inp.mode}. Seed {inp.seed}. Intervals: "
        f"{inp.interval}, {level}. Policies were trained on {inp.train_rows:,} logged rows and "
        f"scored off-policy on {inp.eval_rows:,} held-out rows"
        + (
            " (the same rows: holdout = 0, so estimates of trained policies are optimistic)."
            if inp.holdout == 0
            else "."
        )
    )
    sections: list[tuple[str, Body]] = [
        ("Decision", _decision_blocks(decision, level)),
        *inp.extra_sections,
        ("Can these estimates be trusted?", _trust_blocks(trust, table, clash, inp)),
        (
            "Results: off-policy estimates vs true online value",
            [
                Table(
                    main,
                    caption="One row per policy and estimator; the truth comes from running "
                    "every policy online in the simulator, which a real team cannot do.",
                ),
                *result_blocks,
            ],
        ),
        ("True online value of every policy", Table(truth_df)),
        (
            "Off-policy selection (would each estimator pick the best deployable policy?)",
            Table(pd.DataFrame(selection)),
        ),
        *([("Training", training_blocks)] if training_blocks else []),
        ("Data", Table(pd.DataFrame([summary]))),
        ("About this run", about),
    ]
    files = write_report(
        out, title=f"offrec report: {inp.name}", sections=sections, headline=headline
    )
    return ReportOutput(table, summary, selection, decision, trust, clash, plots, files, inp.choice)


def _truth_check(
    decision: Decision, truth: Mapping[str, Mapping[str, Any]], value_label: str
) -> list[str]:
    """A simulation-only sentence: the candidate's true value against the logger's and the
    truly best deployable policy's (what a real team cannot know)."""
    best = decision.best
    if best is None or best not in truth:
        return []
    f = format_number
    tv = {p: float(v["value"]) for p, v in truth.items()}
    logger = decision.logger
    return [
        f"Simulation check: the {'pick' if decision.pick else 'best candidate'}'s true "
        f"{value_label} is {f(tv[best])}"
        + (f" (logger {f(tv[logger])})" if logger in tv else "")
        + "."
    ]


def _decision_blocks(decision: Decision, level: str) -> list[Body]:
    blocks: list[Body] = [
        f"Only deployable policies (learned from the log or hand-made rules) can be "
        f"recommended; oracles (which know the true click model) and the logging policy are "
        f"shown as references. Headline estimator: {decision.estimator}."
    ]
    if decision.comparisons:
        methods = {c.method for c in decision.comparisons}
        how = (
            "Differences are paired: both policies are scored on the same logged rows, so the "
            "difference is estimated from the per-row differences and is tighter than the two "
            "intervals suggest."
            if methods == {PAIRED}
            else "Some differences are approximated from the two estimates' standard errors "
            "as if independent (no paired interval was available): those intervals are "
            "conservative, i.e. too wide, when the estimates are positively correlated."
        )
        blocks.append(
            Table(
                decision.comparisons_table(),
                legend={
                    "low": "lower end of the difference's interval",
                    "high": "upper end of the difference's interval",
                },
                caption=f"Pairwise comparisons of the top deployable candidates by "
                f"{decision.estimator} ({level} intervals of the difference). {how}",
            )
        )
    return blocks


def _trust_blocks(
    trust: pd.DataFrame, table: pd.DataFrame, clash: list[str], inp: ReportInput
) -> list[Body]:
    blocks: list[Body] = []
    if not len(trust):
        return ["No estimates were made."]
    blocks += _choice_blocks(inp.choice)
    missing = [c for c in ("ess", "max_weight", "support") if c not in trust.columns]
    if missing:
        blocks.append(
            f"This evaluation does not report {', '.join(missing)} "
            + (
                "(sequential estimators weight whole trajectories; their per-decision "
                "weights are not summarised here)."
                if inp.mode == "session"
                else "."
            )
        )
    if "support" in trust.columns and trust["support"].isna().all():
        blocks.append(
            "Support is not measured: the log does not record the logging policy's full "
            "distribution (logging_dist), only the propensity of the logged action."
        )
    flagged = trust[trust["warnings"] != ""]
    if len(flagged):
        blocks.append(f"{len(flagged)} of {len(trust)} estimates carry warnings.")
    else:
        blocks.append("No estimate carries a warning.")
    blocks.append(
        Table(
            trust,
            caption="Per policy and estimator: how many logged rows the estimate "
            "is really worth (ESS), the largest importance weight, how much of the target's "
            "choices the logger ever made (support), and the evaluation's warnings.",
        )
    )
    if clash:
        shown = clash[:12]
        more = f"\n- ... and {len(clash) - len(shown)} more pairs" if len(clash) > 12 else ""
        blocks.append(
            "Estimators that disagree beyond their intervals (at most one of each pair can be "
            "right):\n\n" + "\n".join(f"- {s}" for s in shown) + more
        )
    else:
        blocks.append("No two estimators disagree beyond their intervals for any policy.")
    if "covered" in table.columns and len(table):
        miss = table[~table["covered"].astype(bool)]
        by_est = miss.groupby("estimator", sort=False)["policy"].apply(list)
        lines = [f"- {est}: {', '.join(map(str, pols))}" for est, pols in by_est.items()]
        n_all = len(table)
        blocks.append(
            f"Simulation check (truth known here, not in production): {n_all - len(miss)} of "
            f"{n_all} intervals cover the true value."
            + ("\n\nIntervals that miss it:\n\n" + "\n".join(lines) if lines else "")
        )
    return blocks


def _choice_blocks(choice: Choice | None) -> list[Body]:
    """The estimator the OPE chose from the log, the checks and the reasons, as told."""
    if choice is None:
        return []
    head = (
        f"Estimator chosen from the log: {choice.estimator} ({choice.method})."
        if choice.estimator is not None
        else "No estimator was chosen from the log: none passed its checks."
    )
    checks = pd.DataFrame(
        [
            {
                "estimator": c.estimator,
                "passed": c.passed,
                "logger_error": c.logger_error,
                "logger_low": c.logger_low,
                "logger_high": c.logger_high,
                "reasons": "; ".join(c.reasons),
            }
            for c in choice.checks
        ]
    )
    return [
        head + "\n\n" + "\n".join(f"- {r}" for r in choice.reasons),
        Table(
            checks,
            caption="The checks every estimator must pass before it may be chosen "
            "(an informative interval, values in the feasible range, an ESS not in single "
            "digits, and the logging policy's own value, which the log reveals on-policy); "
            "SLOPE then takes the narrowest passing estimator consistent with the wider ones.",
            legend={
                "passed": "✓ when every check passed",
                "logger_error": "its estimate of the logging policy minus the value "
                "observed on-policy",
                "logger_low": "lower end of that difference's interval",
                "logger_high": "upper end of that difference's interval",
                "reasons": "why it failed, or what could not be checked",
            },
        ),
        *_held_out_blocks(choice),
    ]


def _held_out_blocks(choice: Choice) -> list[Body]:
    """The held-out checks of the choice (:func:`offrec.ope.held_out.held_out_checks`)."""
    if not choice.held_out:
        return []
    rows = pd.DataFrame([asdict(h) for h in choice.held_out])
    return [
        Table(
            rows,
            caption="Held-out checks: each estimator, run on half of the sessions, against "
            "values the other half reveals on-policy: the logging policy's mean return, "
            "a sharper and a flatter version of the logger (measured by rejection sampling "
            "of whole sessions), and mb's model (its simulated returns of the logger from the "
            "held-out sessions' first contexts).",
            legend={
                "estimate": "the estimator's value on the fitting half (low, high: interval)",
                "truth": "the on-policy value of the held-out half (truth_low, truth_high)",
                "n_sessions": "held-out sessions behind it (accepted ones when perturbed)",
                "passed": "✓ when the difference's interval contains 0",
            },
        )
    ]


def _training_plots(
    inp: ReportInput, plots_dir: Path, plots: dict[str, Path], summary: dict[str, Any]
) -> list[Body]:
    blocks: list[Body] = []
    baseline = (
        summary["clicks_per_session"] if inp.mode == "session" else summary["ctr"]
    )  # the logger's on-policy value, observed in the log
    for name, c in inp.curves.items():
        losses = c.get("losses") or {}
        if losses:
            key = "loss" if "loss" in losses else next(iter(losses))
            path = plots_dir / f"loss-{slug(name)}.png"
            plots[f"loss-{name}"] = plot_curves(
                {name: (c["steps"], losses[key])},
                path,
                xlabel="gradient steps",
                ylabel=f"{key}: TD error² (reward units²), chunk mean",
                title=f"{name}: training loss",
            )
            blocks.append(Plot(path, f"Training loss: {name}", LOSS_NOTE))
        if len(c.get("eval_steps") or []):
            path = plots_dir / f"online-{slug(name)}.png"
            stderr = c.get("eval_stderr")
            bands = (
                {name: 1.96 * np.asarray(stderr)} if stderr is not None and len(stderr) else None
            )
            plots[f"online-{name}"] = plot_curves(
                {name: (c["eval_steps"], c["eval_value"])},
                path,
                xlabel="gradient steps",
                ylabel=inp.value_label,
                title=f"{name}: true online value while training",
                hlines={"logging policy (observed in the log)": baseline},
                bands=bands,
            )
            n = len(c["eval_steps"])
            note = (
                f"{n} online evaluation{'s' if n > 1 else ''} in the simulator"
                + (" (95% Monte-Carlo band)" if bands else "")
                + f"; final value {format_number(float(c['eval_value'][-1]))}."
            )
            vals = np.asarray(c["eval_value"], float)
            se = np.asarray(stderr, float) if stderr is not None and len(stderr) == n else None
            best = int(np.argmax(vals))
            gap = float(vals[best] - vals[-1])
            if best < n - 1 and se is not None and gap > 1.96 * float(np.hypot(se[best], se[-1])):
                note += (
                    f" The value peaked at step {int(c['eval_steps'][best]):,} "
                    f"({format_number(float(vals[best]))}) and then fell by "
                    f"{format_number(gap)}, beyond Monte-Carlo noise: training longer made the "
                    "policy worse (offline RL over-fitting the log); fewer steps or early "
                    "stopping on an off-policy estimate would help."
                )
            if n < 3:
                note += (
                    " Too few points for a learning curve: set eval_every in the policy's "
                    "params to evaluate during training."
                )
            blocks.append(Plot(path, f"Online value during training: {name}", note))
    return blocks
