"""Plots for reports (matplotlib, Agg backend; nothing is shown, files are written)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from offrec.core.atomic import atomic_write_bytes  # noqa: E402


def _save(fig: plt.Figure, path: str | Path) -> Path:
    import io

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def plot_value_bars(table: pd.DataFrame, path: str | Path, *, value_label: str = "CTR") -> Path:
    """Grouped bars per policy: the true value and each estimator's estimate with its interval.

    ``table`` columns: policy, estimator, value, low, high, truth, truth_stderr.
    """
    policies = list(dict.fromkeys(table["policy"]))
    estimators = list(dict.fromkeys(table["estimator"]))
    groups = ["truth", *estimators]
    width = 0.8 / len(groups)
    x = np.arange(len(policies))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(policies) * len(groups) / 3), 4.2))
    colors = plt.get_cmap("tab10")
    truth = table.drop_duplicates("policy").set_index("policy").loc[policies]
    ax.bar(x - 0.4 + width / 2, truth["truth"], width, yerr=1.96 * truth["truth_stderr"],
           color="black", alpha=0.75, label="true (online)", capsize=2)  # fmt: skip
    for j, est in enumerate(estimators):
        sub = table[table["estimator"] == est].set_index("policy").reindex(policies)
        err = np.vstack([sub["value"] - sub["low"], sub["high"] - sub["value"]])
        ax.bar(x - 0.4 + (j + 1.5) * width, sub["value"], width, yerr=np.clip(err, 0, None),
               color=colors(j % 10), label=est, capsize=2)  # fmt: skip
    ax.set_xticks(x, policies, rotation=20, ha="right")
    ax.set_ylabel(value_label)
    ax.set_title(f"Off-policy estimates (95% intervals) vs true online {value_label}")
    ax.legend(fontsize=8, ncol=min(4, len(groups)))
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def plot_estimate_vs_truth(
    table: pd.DataFrame, path: str | Path, *, value_label: str = "CTR"
) -> Path:
    """Scatter of estimate (with interval) against the true value, one marker per estimator."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    markers = "osD^v<>ph*"
    for j, (est, sub) in enumerate(table.groupby("estimator", sort=False)):
        err = np.vstack([sub["value"] - sub["low"], sub["high"] - sub["value"]])
        ax.errorbar(sub["truth"], sub["value"], yerr=np.clip(err, 0, None), fmt=markers[j % 10],
                    label=str(est), capsize=2, alpha=0.85)  # fmt: skip
    lo = float(np.nanmin([table["truth"].min(), table["low"].min()]))
    hi = float(np.nanmax([table["truth"].max(), table["high"].max()]))
    pad = 0.05 * (hi - lo + 1e-9)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=1, label="estimate = truth")
    ax.set_xlabel(f"true {value_label} (online)")
    ax.set_ylabel(f"estimated {value_label} (off-policy)")
    ax.set_title("Estimate vs truth")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_curves(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    path: str | Path,
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    hlines: Mapping[str, float] | None = None,
) -> Path:
    """Line plot of several named (x, y) curves, with optional labelled horizontal references."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, (xs, ys) in curves.items():
        ax.plot(xs, ys, label=name, lw=1.6)
    for k, (name, y) in enumerate((hlines or {}).items()):
        ax.axhline(y, color="gray", ls=["--", ":", "-."][k % 3], lw=1, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)
