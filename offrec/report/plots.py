"""Plots for reports, sized to read at report width (about 1000 px) without scaling.

matplotlib through its object API only (:class:`matplotlib.figure.Figure`): no pyplot,
no backend switch, no global state; figures are rendered to PNG bytes and published
atomically. Colours are the Okabe-Ito palette (distinguishable with the common forms of
colour blindness), and every series also has its own marker, so nothing depends on
colour alone.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from offrec.core.atomic import atomic_write_bytes

PALETTE: tuple[str, ...] = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#D55E00",  # vermillion
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#000000",  # black
    "#F0E442",  # yellow (last: faint on white)
)
"""Okabe & Ito (2008), "Color Universal Design": eight colours safe for colour-blind readers."""
MARKERS = "osD^v<>pXh"
DPI = 120
WIDTH_IN = 8.0
"""Figure width in inches: 960 px at :data:`DPI`, under the report's 1100 px column."""


def _save(fig: Figure, path: str | Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def plot_value_bars(table: pd.DataFrame, path: str | Path, *, value_label: str = "CTR") -> Path:
    """Each policy's estimates (one marker and horizontal interval per estimator) and its
    true online value (a black bar with its 95% Monte-Carlo interval), one row per policy.

    Horizontal, so long policy names read without rotation; the figure is
    :data:`WIDTH_IN` wide and grows in height with policies x estimators, so it is drawn
    at report width and never squeezed. ``table`` columns: policy, estimator, value, low,
    high, and optionally truth, truth_stderr.
    """
    policies = list(dict.fromkeys(table["policy"].astype(str)))
    estimators = list(dict.fromkeys(table["estimator"].astype(str)))
    has_truth = "truth" in table.columns
    k = len(estimators) + int(has_truth)
    row_h = 0.17
    fig = Figure(
        figsize=(WIDTH_IN, 1.3 + row_h * k * len(policies) + 0.12 * len(policies)),
        layout="constrained",
    )
    ax = fig.subplots()
    step = 0.8 / max(k, 1)
    y0 = np.arange(len(policies))[::-1].astype(float)  # first policy at the top
    if has_truth:
        t = table.drop_duplicates("policy")
        t = t.set_index(t["policy"].astype(str)).reindex(policies)
        se = t["truth_stderr"].fillna(0).to_numpy(float) if "truth_stderr" in t else 0.0
        ax.barh(
            y0 + 0.4 - step / 2,
            t["truth"].to_numpy(float),
            height=step * 0.9,
            xerr=1.96 * se,
            color="#BBBBBB",
            edgecolor="black",
            lw=0.6,
            label="true online value",
            capsize=2,
        )
    for j, est in enumerate(estimators):
        sub = table[table["estimator"].astype(str) == est].copy()
        sub.index = sub["policy"].astype(str)
        sub = sub.reindex(policies)
        err = np.vstack([sub["value"] - sub["low"], sub["high"] - sub["value"]])
        ax.errorbar(
            sub["value"],
            y0 + 0.4 - (j + 1 + int(has_truth) - 0.5) * step,
            xerr=np.clip(np.nan_to_num(err), 0, None),
            fmt=MARKERS[j % len(MARKERS)],
            color=PALETTE[j % len(PALETTE)],
            ms=5,
            capsize=2,
            lw=1.2,
            label=est,
        )
    ax.set_yticks(y0, policies)
    ax.set_ylim(-0.6, len(policies) - 0.4)
    ax.set_xlabel(f"{value_label} (estimate with 95% interval; bar: true online value)")
    ax.set_title(f"Off-policy estimates vs true online {value_label}", fontsize=11)
    for y in y0[:-1]:
        ax.axhline(y - 0.5, color="#DDDDDD", lw=0.8)
    ax.grid(axis="x", alpha=0.3)
    fig.legend(
        *ax.get_legend_handles_labels(),
        loc="outside lower center",
        ncol=min(5, k),
        fontsize=8,
        frameon=False,
    )
    return _save(fig, path)


def plot_estimate_vs_truth(
    table: pd.DataFrame, path: str | Path, *, value_label: str = "CTR"
) -> Path:
    """Estimate (with its interval) against the true value, one small panel per estimator
    (so overlapping estimators do not hide each other), each with the line
    estimate = truth (points above it over-estimate) and, in its title, how many of its
    intervals cover the truth. Up to 4 panels a row, :data:`WIDTH_IN` wide."""
    estimators = list(dict.fromkeys(table["estimator"].astype(str)))
    k = max(len(estimators), 1)
    ncols = min(4, k)
    nrows = -(-k // ncols)
    panel = WIDTH_IN / ncols
    fig = Figure(figsize=(WIDTH_IN, 0.9 + nrows * max(2.5, min(panel, 3.2))), layout="constrained")
    axes = np.atleast_1d(
        fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)
    ).ravel()
    vals = np.concatenate([table[c].to_numpy(float) for c in ("truth", "low", "high")])
    vals = vals[np.isfinite(vals)]
    lo, hi = (float(vals.min()), float(vals.max())) if vals.size else (0.0, 1.0)
    pad = 0.05 * (hi - lo + 1e-9)
    for j, est in enumerate(estimators):
        ax = axes[j]
        sub = table[table["estimator"].astype(str) == est]
        err = np.vstack([sub["value"] - sub["low"], sub["high"] - sub["value"]])
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=0.8)
        ax.errorbar(
            sub["truth"],
            sub["value"],
            yerr=np.clip(np.nan_to_num(err), 0, None),
            fmt=MARKERS[j % len(MARKERS)],
            color=PALETTE[j % len(PALETTE)],
            capsize=2,
            ms=4,
            lw=1,
        )
        covered = int(((sub["low"] <= sub["truth"]) & (sub["truth"] <= sub["high"])).sum())
        ax.set_title(f"{est}: {covered}/{len(sub)} cover", fontsize=9)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    for ax in axes[k:]:
        ax.set_visible(False)
    fig.supxlabel(f"true {value_label} (online)", fontsize=10)
    fig.supylabel(f"off-policy estimate ({value_label})", fontsize=10)
    fig.suptitle("Estimate with its 95% interval vs truth (dashed: estimate = truth)", fontsize=11)
    return _save(fig, path)


def plot_curves(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    path: str | Path,
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    hlines: Mapping[str, float] | None = None,
    bands: Mapping[str, Sequence[float] | np.ndarray] | None = None,
) -> Path:
    """Named (x, y) curves with optional labelled horizontal references.

    Curves with few points (at most 30) get a marker at each point, so a single
    evaluation is a visible dot, not an invisible one-point line; the x axis starts at 0
    when every x is non-negative (steps), so one point does not produce a meaningless
    range around it. ``bands`` (``{name: (k,) half-widths}``) draws a shaded interval.
    """
    fig = Figure(figsize=(WIDTH_IN, 4.0), layout="constrained")
    ax = fig.subplots()
    xmax = 0.0
    xmin = 0.0
    for j, (name, (xs, ys)) in enumerate(curves.items()):
        x, y = np.asarray(xs, float), np.asarray(ys, float)
        color = PALETTE[j % len(PALETTE)]
        marker = MARKERS[j % len(MARKERS)] if x.size <= 30 else None
        ax.plot(x, y, label=name, lw=1.6, color=color, marker=marker, ms=6)
        if bands and name in bands:
            h = np.asarray(bands[name], float)
            ax.fill_between(x, y - h, y + h, color=color, alpha=0.2, lw=0)
        if x.size:
            xmax, xmin = max(xmax, float(x.max())), min(xmin, float(x.min()))
    for k, (name, level) in enumerate((hlines or {}).items()):
        ax.axhline(level, color="#555555", ls=["--", ":", "-."][k % 3], lw=1.2, label=name)
    if xmin >= 0 and xmax > 0:
        ax.set_xlim(0, xmax * 1.04)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)
