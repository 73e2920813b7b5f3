r"""How good are the estimators? Generate logs, estimate, compare with the world's truth.

For each seed: log ``n_rows`` decisions of ``logger`` in ``world``, estimate every target
with every estimator (with intervals), and compare with
:meth:`~offrec.sim.World.true_value` — exact in bandit mode; in session mode a
Monte-Carlo value over ``truth_sessions`` sessions, with the sequential estimators of
:mod:`offrec.ope.sequential`. Per (policy, estimator) it reports

- relative error :math:`|\hat V - V| / V`: mean and standard deviation over seeds;
- bias :math:`\operatorname{mean}(\hat V - V)` and its standard error;
- coverage: the fraction of seeds whose interval contains :math:`V`;
- mean interval width.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from offrec.core.errors import InputError
from offrec.core.validation import check_scalar
from offrec.logs.data import LoggedData
from offrec.ope.evaluate import evaluate
from offrec.reward.model import RewardModel


def simulate_logged_data(world: Any, logger: Any, n_rows: int, seed: int) -> LoggedData:
    """A bandit-mode log of ``n_rows`` decisions held in memory (no files)."""
    traj = world.run_sessions(
        logger, n_rows, np.random.default_rng(np.random.SeedSequence([seed, 11]))
    )
    return trajectory_data(traj, world.n_actions)


def trajectory_data(traj: Any, n_actions: int, *, true_ctr: bool = True) -> LoggedData:
    """The log of a simulated trajectory (``World.run_sessions``'s result) in memory: one
    row per decision, position 0; ``true_ctr`` keeps the simulator's click probability of
    each logged row beside it."""
    return LoggedData(
        context=traj.obs,
        action=traj.action,
        reward=traj.reward,
        pscore=traj.pscore,
        session_id=traj.session,
        step=traj.step,
        position=np.zeros(traj.action.shape[0], np.int64),
        user_id=traj.user,
        terminated=traj.terminated,
        truncated=traj.truncated,
        n_actions=n_actions,
        true_ctr=traj.click_prob if true_ctr else None,
    )


@dataclass
class EstimatorEvaluation:
    """Per-seed results (``runs``) and their summary (``summary``), as DataFrames."""

    runs: pd.DataFrame
    summary: pd.DataFrame

    def plot(self, path: str | Path) -> Path:
        """Two panels: mean relative error (error bars: std over seeds) per estimator and
        target; and estimate vs truth over all seeds."""
        import io

        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        from offrec.core.atomic import atomic_write_bytes

        s = self.summary
        policies = list(dict.fromkeys(s["policy"]))
        estimators = list(dict.fromkeys(s["estimator"]))
        fig = Figure(figsize=(12, 4.5))
        FigureCanvasAgg(fig)
        ax1, ax2 = fig.subplots(1, 2)
        width = 0.8 / max(len(policies), 1)
        x = np.arange(len(estimators))
        for j, pol in enumerate(policies):
            sub = s[s["policy"] == pol].set_index("estimator").reindex(estimators)
            ax1.bar(
                x - 0.4 + (j + 0.5) * width,
                100 * sub["rel_error_mean"],
                width,
                yerr=100 * sub["rel_error_std"],
                capsize=2,
                label=pol,
            )
        ax1.set_xticks(x, estimators)
        ax1.set_ylabel("relative error |V̂ - V| / V (%)")
        ax1.set_title(f"Mean relative error over {self.runs['seed'].nunique()} seeds (bars: std)")
        ax1.legend(fontsize=8)
        ax1.grid(axis="y", alpha=0.3)
        for est, sub in self.runs.groupby("estimator", sort=False):
            ax2.scatter(sub["truth"], sub["value"], s=10, alpha=0.6, label=str(est))
        lo, hi = (
            self.runs[["truth", "value"]].min().min(),
            self.runs[["truth", "value"]].max().max(),
        )
        ax2.plot([lo, hi], [lo, hi], "k--", lw=1, label="estimate = truth")
        ax2.set_xlabel("true value")
        ax2.set_ylabel("estimate")
        ax2.set_title("Estimate vs truth (one point per seed)")
        ax2.legend(fontsize=8)
        ax2.grid(alpha=0.3)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        atomic_write_bytes(path, buf.getvalue())
        return Path(path)


def evaluate_estimators(
    world: Any,
    logger: Any,
    targets: Mapping[str, Any],
    *,
    estimators: Sequence[str] = ("ips", "snips", "dm", "dr"),
    n_rows: int = 100_000,
    seeds: Sequence[int] = tuple(range(5)),
    reward_model: RewardModel | None = None,
    interval: str = "bootstrap",
    n_bootstrap: int = 500,
    alpha: float = 0.05,
    truth_sessions: int = 50_000,
    progress: Callable[[int], None] | None = None,
) -> EstimatorEvaluation:
    """Run the estimator-accuracy loop (module docstring) and return its tables.

    Every log goes through :func:`~offrec.ope.evaluate.evaluate`. Bandit mode:
    ``reward_model`` defaults to a cross-fitted logistic model when a model-based
    estimator (dm, dr, sndr, switch-dr, dr-os) is asked for. Session mode:
    ``estimators`` are sequential ones (pdis, tis, wpdis, wtis, dr, fqe), each log has
    ``n_rows // horizon`` sessions, and oracles (which need the hidden state) cannot
    be targets.
    """
    check_scalar(n_rows, "n_rows", int, min=2)
    if not seeds:
        raise InputError("seeds must name at least one seed")
    session = world.config.horizon > 1
    truth = {
        name: world.true_value(p, n_sessions=truth_sessions, seed=12345).value
        for name, p in targets.items()
    }
    rows = []
    for k, seed in enumerate(seeds):
        n_units = max(1, n_rows // world.config.horizon) if session else n_rows
        data = simulate_logged_data(world, logger, n_units, seed)
        rm = (
            None
            if reward_model is None
            else RewardModel(**{**reward_model.__dict__, "seed": int(seed)})
        )
        table = evaluate(
            data,
            dict(targets),
            estimators=list(estimators),
            reward_model=rm,
            interval=interval,
            n_bootstrap=n_bootstrap,
            alpha=alpha,
            seed=int(seed),
        ).table
        table["seed"] = seed
        rows.append(table)
        if progress is not None:
            progress(k + 1)
    runs = pd.concat(rows, ignore_index=True)
    runs["truth"] = runs["policy"].map(truth)
    runs["error"] = runs["value"] - runs["truth"]
    runs["rel_error"] = runs["error"].abs() / runs["truth"].abs()
    runs["covered"] = (runs["low"] <= runs["truth"]) & (runs["truth"] <= runs["high"])
    runs["width"] = runs["high"] - runs["low"]
    g = runs.groupby(["policy", "estimator"], sort=False)
    n = g.size()
    summary = pd.DataFrame(
        {
            "truth": g["truth"].first(),
            "rel_error_mean": g["rel_error"].mean(),
            "rel_error_std": g["rel_error"].std(ddof=1).fillna(0.0),
            "bias": g["error"].mean(),
            "bias_stderr": (g["error"].std(ddof=1) / np.sqrt(n)).fillna(0.0),
            "coverage": g["covered"].mean(),
            "mean_width": g["width"].mean(),
            "n_seeds": n,
        }
    ).reset_index()
    return EstimatorEvaluation(runs=runs, summary=summary)
