"""Plots of learning: offline RL training curves and online bandit learning curves.

Matplotlib through its object API only: a bare :class:`matplotlib.figure.Figure` drawn
by the Agg canvas (:class:`~matplotlib.backends.backend_agg.FigureCanvasAgg`), so no
pyplot state and no global backend is touched, and the PNG is published atomically
(written to a temporary file next to it, then renamed).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from offrec.core.errors import InputError

if TYPE_CHECKING:  # type names only: plotting must not import torch / d3rlpy
    from offrec.policies.online import LearningCurve
    from offrec.rl.train import TrainingCurve, TrainResult

__all__ = ["plot_learning_curves", "plot_training_curve"]


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
            curve.eval_steps, curve.eval_value, yerr=1.96 * curve.eval_stderr,
            marker="o", capsize=3, color="tab:green",
        )  # fmt: skip
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
