"""Plots of learning: offline RL training curves and online bandit learning curves.

Matplotlib through its object API only: a bare :class:`matplotlib.figure.Figure` drawn
by the Agg canvas (:class:`~matplotlib.backends.backend_agg.FigureCanvasAgg`), so no
pyplot state and no global backend is touched, and the PNG is published atomically
(written to a temporary file next to it, then renamed).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from offrec.core.errors import InputError

if TYPE_CHECKING:  # type names only: plotting must not import torch / d3rlpy
    from offrec.policies.online import LearningCurve, ValueCurve
    from offrec.rl.online_baseline import OnlineRun
    from offrec.rl.q_learning import TrainingCurve, TrainResult
    from offrec.sim import World

__all__ = [
    "online_vs_offline",
    "online_vs_offline_section",
    "plot_learning_curves",
    "plot_training_curve",
    "plot_value_curves",
    "save_online_runs",
]


def _save(fig: Figure, path: str | Path, *, dpi: int) -> Path:
    """Render ``fig`` with the Agg canvas into ``path`` (format from its suffix), atomically."""
    path = Path(path)
    FigureCanvasAgg(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format=path.suffix.lstrip(".") or "png", dpi=dpi)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def plot_training_curve(
    result: TrainResult | TrainingCurve, path: str | Path, *, title: str | None = None
) -> Path:
    """Save a PNG of the training curve: losses (log scale) and Q(s0) on the left, true
    online value per session (with +-1.96 stderr) on the right when measured."""
    curve: TrainingCurve = result.curve if hasattr(result, "curve") else result
    config = getattr(result, "config", None)
    if title is None:
        title = (
            f"{config.algo} training ({config.n_steps} steps, batch {config.batch_size})"
            if config is not None
            else "offline RL training"
        )
    has_eval = curve.eval_steps.size > 0
    fig = Figure(figsize=(15 if has_eval else 10, 4))
    axes = fig.subplots(1, 3 if has_eval else 2)
    marker = "o" if curve.steps.size < 10 else None  # a line of one point would not show
    ax = axes[0]
    for name, values in curve.losses.items():
        ax.plot(curve.steps, values, label=name, marker=marker)
    if any((v > 0).all() for v in curve.losses.values()):
        ax.set_yscale("log")
    ax.set_xlabel("gradient step")
    ax.set_ylabel(f"mean loss per chunk of {int(curve.steps[0]) if curve.steps.size else 0} steps")
    ax.set_title("training loss")
    ax.legend()
    ax.grid(alpha=0.3)
    ax = axes[1]
    ax.plot(curve.steps, curve.q_start, color="tab:purple", marker=marker)
    ax.set_xlabel("gradient step")
    ax.set_ylabel("mean max_a Q(s0, a)")
    ax.set_title("model's value of a session start")
    ax.grid(alpha=0.3)
    if has_eval:
        ax = axes[2]
        ax.errorbar(
            curve.eval_steps,
            curve.eval_value,
            yerr=1.96 * curve.eval_stderr,
            marker="o",
            capsize=3,
            color="tab:green",
        )
        ax.set_xlabel("gradient step")
        ax.set_ylabel("true clicks per session (online)")
        ax.set_title("greedy policy in the world (95% CI)")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path, dpi=100)


def plot_learning_curves(
    curves: dict[str, LearningCurve],
    path: str | Path,
    *,
    title: str | None = None,
    references: dict[str, float] | None = None,
    expected: bool = True,
) -> Path:
    """Plot several learners' curves on one figure and write it (PNG, atomically) to ``path``.

    Left panel: windowed CTR against decisions (``expected=True`` plots the expected CTR,
    smooth; ``False`` the realized clicks), with the myopic oracle as a dashed black line
    and optional horizontal ``references`` (e.g. ``{"best single item": 0.218}``).
    Right panel: cumulative regret against the myopic oracle. Returns the path.
    """
    if not curves:
        raise InputError("curves must hold at least one LearningCurve; got an empty dict")
    fig = Figure(figsize=(12, 5.5), layout="constrained")
    ax_ctr, ax_reg = fig.subplots(1, 2)
    longest = max(curves.values(), key=lambda c: c.n_decisions)
    ax_ctr.plot(
        longest.decisions, longest.windowed_oracle_ctr, "k--", lw=1.5, label="myopic oracle"
    )
    styles = [":", "-."]
    for i, (label, value) in enumerate((references or {}).items()):
        ax_ctr.axhline(value, color="0.45", ls=styles[i % 2], lw=1.2, label=label)
    for name, curve in curves.items():
        y = curve.windowed_expected_ctr if expected else curve.windowed_ctr
        (line,) = ax_ctr.plot(curve.decisions, y, lw=1.8, label=name)
        ax_reg.plot(
            curve.decisions, curve.cumulative_regret, lw=1.8, color=line.get_color(), label=name
        )
    kind = "expected CTR" if expected else "CTR"
    ax_ctr.set_xlabel("decisions")
    ax_ctr.set_ylabel(f"{kind} (trailing window of {longest.window:,} decisions)")
    ax_ctr.set_title(f"Windowed {kind}")
    ax_ctr.set_ylim(bottom=0)
    ax_ctr.grid(alpha=0.3)
    ax_reg.set_xlabel("decisions")
    ax_reg.set_ylabel("cumulative expected regret (clicks)")
    ax_reg.set_title("Regret against the myopic oracle")
    ax_reg.grid(alpha=0.3)
    thousands = FuncFormatter(lambda v, _: f"{v / 1000:g}k" if v else "0")
    for ax in (ax_ctr, ax_reg):
        ax.xaxis.set_major_formatter(thousands)
    # one legend for both panels (same colours), below them so it never hides a curve
    handles, labels = ax_ctr.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(4, len(labels)), fontsize=9)
    if title:
        fig.suptitle(title)
    return _save(fig, path, dpi=120)


def plot_value_curves(
    curves: dict[str, ValueCurve],
    path: str | Path,
    *,
    points: dict[str, tuple[float, float, float]] | None = None,
    references: dict[str, float] | None = None,
    title: str | None = None,
) -> Path:
    """Bandits, online RL and offline methods on one axis; write the PNG atomically.

    ``curves`` (learned online) are lines with a band of ±2 standard errors; ``points``
    (``name -> (interactions, value, stderr)``, e.g. offline methods at the number of
    logged interactions they were trained on) are markers with ±2 SE bars; ``references``
    (oracles, the logger) are horizontal lines. x: interactions with users. Returns the path.
    """
    if not curves and not points:
        raise InputError("plot_value_curves needs at least one curve or point; got none")
    metrics = {c.metric for c in curves.values()}
    if len(metrics) > 1:
        raise InputError(f"curves must share one metric; got {sorted(metrics)}")
    metric = metrics.pop() if metrics else "value"
    fig = Figure(figsize=(10, 6), layout="constrained")
    ax = fig.subplots()
    styles = ["--", ":", "-."]
    for i, (label, value) in enumerate((references or {}).items()):
        ax.axhline(
            value,
            color=f"{0.15 + 0.2 * (i % 3):.2f}",
            ls=styles[i % 3],
            lw=1.3,
            label=f"{label} ({value:.3f})",
        )
    for name, c in curves.items():
        (line,) = ax.plot(c.interactions, c.value, lw=1.8, marker=".", label=name)
        ax.fill_between(
            c.interactions,
            c.value - 2 * c.stderr,
            c.value + 2 * c.stderr,
            color=line.get_color(),
            alpha=0.15,
            lw=0,
        )
    markers = ["D", "s", "^", "v", "P"]
    for i, (name, (x, v, se)) in enumerate((points or {}).items()):
        ax.errorbar(
            [x],
            [v],
            yerr=[2 * se],
            fmt=markers[i % len(markers)],
            ms=8,
            capsize=4,
            label=f"{name} ({x:,.0f} logged decisions)",
        )
    ax.set_xlabel("interactions with users (online: live decisions; offline: logged decisions)")
    ax.set_ylabel(f"true {metric} of the deployable policy")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1000:g}k" if v else "0"))
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(3, len(labels)), fontsize=9)
    if title:
        ax.set_title(title)
    return _save(fig, path, dpi=120)


def save_online_runs(
    runs: dict[str, OnlineRun],
    out: str | Path,
    *,
    references: dict[str, float] | None = None,
    overwrite: bool = False,
    title: str | None = None,
) -> Path:
    """Write ``curves.json`` (every run), ``value_curves.png`` (the true value of every
    learner's deployable policy against interactions, one figure) and, when bandit learners
    ran, ``learning_curves.png`` (their windowed CTR and regret) to ``out``, atomically."""
    import json

    from offrec.core.atomic import atomic_dir
    from offrec.logs.items import ItemMap
    from offrec.policies.persist import save_policy
    from offrec.rl.online_baseline import SB3Policy

    with atomic_dir(out, overwrite=overwrite) as tmp:
        payload = {"runs": {k: r.to_dict() for k, r in runs.items()}, "references": references}
        (tmp / "curves.json").write_text(json.dumps(payload))
        plot_value_curves(
            {k: r.curve for k, r in runs.items()},
            tmp / "value_curves.png",
            references=references,
            title=title,
        )
        bandit = {k: r.bandit_curve for k, r in runs.items() if r.bandit_curve is not None}
        if bandit:
            plot_learning_curves(bandit, tmp / "learning_curves.png")
        for name, run in runs.items():  # models/<name>/ (offrec model) or models/<name>.zip (SB3)
            (tmp / "models").mkdir(exist_ok=True)
            if isinstance(run.policy, SB3Policy):
                run.policy.save(tmp / "models" / f"{name}.zip")
            else:  # learned in the simulated world: its items are the world's 0..n-1
                if getattr(run.policy, "item_map", None) is None:
                    run.policy.item_map = ItemMap.identity(run.policy.n_actions)
                save_policy(run.policy, tmp / "models" / name)
    return Path(out)


# ------------------------------------------------------------------------------ online vs offline
def online_vs_offline(
    world: World,
    targets: Mapping[str, Any],
    roles: Mapping[str, str],
    online_curves: Mapping[str, ValueCurve],
    train_rows: int,
    plot_path: Path,
    *,
    mode: str,
    n_sessions: int,
    seed: int,
    title: str,
) -> tuple[pd.DataFrame, str, Path]:
    """A table (CTR, clicks per session, session length of every target, with standard
    errors, :func:`~offrec.policies.online.session_stats` over ``n_sessions`` sessions), a
    note, and one learning-curve plot (online learners against their interactions;
    offline ones, ``roles[name] == "learned"`` without a curve, at the ``train_rows``
    logged rows they used; references as lines). ``mode`` (``"bandit"`` / ``"session"``)
    picks the metric: CTR or clicks per session."""
    from offrec.policies.online import session_stats

    rows = []
    for name, policy in targets.items():
        st = session_stats(world, policy, n_sessions=n_sessions, seed=seed)
        if name in online_curves:
            approach, live, logged = "online", int(online_curves[name].interactions[-1]), 0
        elif roles.get(name) == "learned":
            approach, live, logged = "offline", 0, train_rows
        else:
            approach, live, logged = "reference", 0, 0
        rows.append(
            {
                "policy": name,
                "approach": approach,
                "live interactions": live,
                "logged interactions": logged,
                **{k: v for k, v in st.items() if k != "exact"},
            }
        )
    table = pd.DataFrame(rows)
    metric = "clicks_per_session" if mode == "session" else "ctr"
    label = "clicks per session" if mode == "session" else "CTR"
    refs = table[table["approach"] == "reference"]
    best_ref = refs.loc[refs[metric].idxmax()] if len(refs) else None
    lines = []
    for d in table[table["approach"] != "reference"].to_dict("records"):
        cost = (
            f"{d['live interactions']:,} live interactions with users"
            if d["approach"] == "online"
            else f"no live interaction: trained on {d['logged interactions']:,} logged decisions"
        )
        share = (
            f", {d[metric] / best_ref[metric]:.0%} of the {best_ref['policy']}"
            if best_ref is not None and best_ref[metric] > 0
            else ""
        )
        lines.append(
            f"- **{d['policy']}**: costs {cost}; earns "
            f"{d[metric]:.3f} ± {d[metric + '_se']:.3f} {label}{share}."
        )
    note = (
        "Online learners pay for what they learn with live traffic (their curve shows the "
        "policy they would deploy after each number of interactions); offline learners use "
        "only the logger's decisions and pay nothing more before deployment. Values are the "
        f"simulator's truth over {n_sessions:,} sessions (± one standard error).\n\n"
        + "\n".join(lines)
    )
    points = {
        str(n): (float(train_rows), float(r[metric]), float(r[metric + "_se"]))
        for n, r in table.set_index("policy").iterrows()
        if r["approach"] == "offline"
    }
    references = {str(r["policy"]): float(r[metric]) for r in refs.to_dict("records")}
    path = plot_value_curves(
        dict(online_curves),
        plot_path,
        points=points,
        references=references,
        title=f"{title}: true {label} against interactions with users",
    )
    return table, note, path


def online_vs_offline_section(note: str, plot: Path, table: pd.DataFrame) -> tuple[str, Any]:
    """The report section of :func:`online_vs_offline`: the note, the plot, the table."""
    from offrec.report.render import Plot, Table

    return (
        "Online vs offline: what each approach costs and earns",
        [
            note,
            Plot(
                plot,
                "True value against interactions with users",
                "Online learners: the policy each would deploy after that many live interactions "
                "(band: ±2 standard errors). Offline learners: one point at the number of logged "
                "decisions they were trained on. Lines: the logger and the oracles.",
            ),
            Table(table, caption="True values from the simulator (± one standard error)."),
        ],
    )
