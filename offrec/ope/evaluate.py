r"""The one OPE entry point: :func:`evaluate` a log and target policies, at any size.

The CLI (``offrec evaluate``), the pipelines and the estimator study all call
:func:`evaluate`. It streams the log through a kernel in batches (bounded memory), on
the engine asked for (``"local"`` or ``"ray"``), and returns an :class:`OPEResult`:
estimates, intervals, diagnostics and warnings per (policy, estimator), plus the
estimator offrec recommends for this kind of log.

How it works (DESIGN.md, "Engines: one kernel, any size"):

1. **Look** at the log's footers (:func:`~offrec.logs.scan.open_log`): rows, columns,
   longest session. A log whose sessions have several steps is scored with the session
   (sequential) estimators, a one-step log with the bandit ones; ``mode`` overrides
   (``"bandit"`` on a session log scores every decision as a bandit round).
2. **Fit** the models the estimators need on a bounded, seeded sample of at most
   ``fit_rows`` rows (bandit: a reward model per cross-fitting fold; sessions: a
   Q-model per target, on whole sessions). Rows are sampled and assigned to folds by a
   hash of their key (session id, step, position) and the seed, so the sample and the
   folds do not depend on batch size, file layout or engine. Trade-off: past
   ``fit_rows`` more data no longer improves the models, only the averages; raise it
   when the reward model is the bottleneck (DR's bias is the model's error times the
   weights' error).
3. **Map** the kernel over batches: the target's distribution for that batch only, the
   per-row (or per-session) terms, and :class:`~offrec.ope.moments.Moments` of every
   column every estimator needs, with bootstrap sums from hashed resample weights.
4. **Merge** the partials by addition and **finish**: estimates, intervals from one
   engine (:mod:`offrec.ope.intervals`), diagnostics and warnings.

The in-memory functional API (:func:`~offrec.ope.estimators.estimate_policy_value`,
:func:`~offrec.ope.estimators.estimate_interval`) applies the same formulas to one
array; it is tested equal to this streamed path.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from offrec.core.errors import InputError
from offrec.core.hashing import distinct_rows, hash_uniform, row_keys
from offrec.core.policy import GreedyDist, SparseDist
from offrec.core.validation import check_scalar
from offrec.engines.sample import draw_sample
from offrec.logs.data import LoggedData
from offrec.logs.items import ItemMap, translate_target
from offrec.logs.scan import Batch, LogSource, open_log
from offrec.ope.estimators import ESTIMATORS, Estimator, make_estimator
from offrec.ope.intervals import Contrast, Form, Interval, check_interval_options, interval
from offrec.ope.moments import Moments
from offrec.ope.selection import Choice, choose_estimator
from offrec.ope.sequential import (
    LEARNED_SEQUENTIAL,
    SEQUENTIAL_ESTIMATORS,
    SESSION_CLASSES,
    RowQ,
    SampleContext,
    SequentialResult,
    SessionFits,
    SessionTerms,
    episode_index,
    paired_difference,
)
from offrec.ope.terms import greedy_q_target, round_terms
from offrec.ope.trust import (
    DEFAULT_BANDIT,
    DEFAULT_SESSION,
    ESTIMATE_COLUMNS,
    RECOMMENDED,
    Estimate,
    EstimatorMeta,
    disagreement_warnings,
    range_warning,
    recommended_for,
    weight_warnings,
)
from offrec.reward.bilinear import BilinearLogistic
from offrec.reward.model import (
    FittedRewardModel,
    RewardModel,
    predict_by_fold,
    predict_reduced_by_fold,
)

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

MODES: tuple[str, ...] = ("auto", "bandit", "session")
SESSION_ESTIMATORS: tuple[str, ...] = SEQUENTIAL_ESTIMATORS
"""Session (sequential) estimators by name (:mod:`offrec.ope.sequential` owns them); ``dr``
on a session log is sequential DR."""
COLUMNS: tuple[str, ...] = ESTIMATE_COLUMNS
"""Columns of :attr:`OPEResult.table`, in order (:class:`~offrec.ope.trust.Estimate`)."""

_FOLD_SALT = 0xF01D

Source = LogSource | LoggedData
"""A log: a Parquet dataset opened for streaming, or one in memory."""
Progress = Callable[[int], None] | None
"""Called with the rows done so far (per pass over the log)."""
EstimatorNames = Sequence[str | Estimator] | None
"""Estimators by name (or bandit estimator instances); None: the defaults."""


class Target(Protocol):
    """A target policy as OPE reads it: its number of actions and its distribution
    ``(n, n_actions)`` on the logged contexts."""

    @property
    def n_actions(self) -> int: ...

    def action_dist(self, obs: np.ndarray) -> Any: ...


class Engine(Protocol):
    """How batches of a log reach a kernel (:mod:`offrec.engines`: local or ray): map the
    kernel over the batches and merge the partial :class:`~offrec.ope.moments.Moments`."""

    def map_reduce(
        self,
        source: Source,
        kernel: Callable[[Batch], Moments],
        *,
        sessions: bool = False,
        progress: Progress = None,
    ) -> Moments: ...


@dataclass(frozen=True)
class FixedProbs:
    """A target given as its probabilities on the log's rows, ``(n_rows, n_actions)``
    (e.g. from a file), instead of a policy to call on the contexts."""

    probs: np.ndarray

    @property
    def n_actions(self) -> int:
        return int(self.probs.shape[1])


TargetLike = Target | FixedProbs | np.ndarray
"""A target as :func:`evaluate` takes it: a policy, or its probabilities on the log's rows
(:class:`FixedProbs`, or the bare ``(n_rows, n_actions)`` array)."""


@dataclass
class OPEResult:
    """What :func:`evaluate` found.

    Attributes:
        table: one row per (policy, estimator), columns :data:`COLUMNS`: ``stderr`` the
            delta-method standard error, ``ess`` the effective sample size of the
            importance weights (per session: of the whole-session weights) and
            ``ess_share`` its share of the rows (sessions), ``max_weight`` the largest
            weight, ``support_violation`` the target's mean mass on actions the logger
            never takes (nan without ``logging_dist``), ``warnings`` "; "-joined, "" if
            none.
        recommended: the estimator offrec recommends for this log (see
            :data:`RECOMMENDED`); it is among the table's estimators when it was asked for.
        mode: ``"bandit"`` or ``"session"``. n_rows: rows read. n_units: rows (bandit)
            or sessions (session mode).
        value_range: the feasible range of the value (clicks in [0, 1] per decision;
            [0, horizon] per session).
        skipped: ``{estimator: reason}`` for the estimators that could not apply.
        choice: the data-driven estimator choice (:class:`~offrec.ope.selection.Choice`:
            the checks every estimator had to pass, the SLOPE order and the reasons);
            ``recommended`` is its pick when one passed.
    """

    table: pd.DataFrame
    recommended: str
    mode: str
    n_rows: int
    n_units: int
    value_range: tuple[float, float]
    moments: Moments = field(repr=False)
    forms: dict[tuple[str, str], Form] = field(repr=False)
    method: str | None = None
    alpha: float = 0.05
    skipped: dict[str, str] = field(default_factory=dict)
    """Estimators asked for (or defaults) that could not apply to the log: ``{name:
    reason}`` (see ``strict`` in :func:`evaluate`); the table has the others."""
    weights: dict[str, int] = field(default_factory=dict, repr=False)
    on_policy_column: int | None = field(default=None, repr=False)
    choice: Choice | None = None
    fitted: dict[tuple[str, str], SequentialResult] = field(default_factory=dict, repr=False)

    @property
    def estimates(self) -> list[Estimate]:
        """The table as typed rows (:class:`~offrec.ope.trust.Estimate`)."""
        return [Estimate.from_row(r) for r in self.table.to_dict("records")]

    def weight_sum(self, policy: str) -> float:
        r""":math:`\sum w` of ``policy``'s (whole-session) importance weights."""
        return float(self.moments.mean[self.weights[policy]] * self.moments.n)

    def weight_max(self, policy: str) -> float:
        """The largest (whole-session) importance weight of ``policy``."""
        return float(self.moments.high[self.weights[policy]])

    def weight_ess(self, policy: str) -> float:
        r"""Kish's ESS :math:`(\sum w)^2 / \sum w^2` of ``policy's`` weights."""
        m, c = self.moments, self.weights[policy]
        w_sq = m.m2[c, c] + m.n * m.mean[c] ** 2
        return float(self.weight_sum(policy) ** 2 / w_sq) if w_sq > 0 else 0.0

    def weight_mean(self, policy: str) -> Interval:
        r"""The mean (whole-session) importance weight of ``policy`` with its t interval;
        :math:`E_{\pi_0}[w] = 1`, so an interval far from 1 says the log has not sampled
        the weights' tail (:func:`offrec.ope.selection.tail_reason`)."""
        return interval(self.moments, Form(self.weights[policy]), method="normal", alpha=self.alpha)

    def on_policy_targets(self) -> list[str]:
        """Targets whose every importance weight is 1: the logging policy itself (its value
        is observed in the log, so it checks the estimators)."""
        m = self.moments
        return [
            p
            for p, c in self.weights.items()
            if abs(m.low[c] - 1.0) < 1e-9 and abs(m.high[c] - 1.0) < 1e-9
        ]

    def on_policy(self, method: str | None = None) -> Interval | None:
        """The logging policy's value observed on-policy (mean reward per row or return
        per session) with its interval; None when not recorded."""
        if self.on_policy_column is None:
            return None
        m = method or self.method or "normal"
        return interval(self.moments, Form(self.on_policy_column), method=m, alpha=self.alpha)

    def check_against_on_policy(self, policy: str, estimator: str) -> Interval:
        """``V_est(policy) - V_on-policy`` with an interval: paired (one contrast on the
        same sessions) for the streamed estimators, the independent approximation from the
        two intervals for those fitted on the whole log."""
        on = self.on_policy()
        if on is None or self.on_policy_column is None:
            raise InputError("this result has no on-policy value to check against")
        if (policy, estimator) in self.forms:
            contrast = Contrast(
                ((self.forms[policy, estimator], 1.0), (Form(self.on_policy_column), -1.0))
            )
            return interval(
                self.moments, contrast, method=self.method or "normal", alpha=self.alpha
            )
        t = self.table
        r = t[(t["policy"] == policy) & (t["estimator"] == estimator)].iloc[0]
        half = math.hypot((float(r["high"]) - float(r["low"])) / 2, (on.high - on.low) / 2)
        d = float(r["value"]) - on.value
        return Interval(d, d - half, d + half, "independent approximation", self.alpha)

    def warnings(self) -> list[str]:
        """Every warning, prefixed by its policy and estimator."""
        t = self.table
        return [
            f"{p} / {e}: {w}"
            for p, e, ws in zip(t["policy"], t["estimator"], t["warnings"], strict=True)
            for w in (ws.split("; ") if ws else [])
        ]

    def compare(
        self, policy: str, baseline: str, estimator: str | None = None, method: str | None = None
    ) -> Interval:
        """The paired difference ``V(policy) - V(baseline)`` by ``estimator`` (default the
        recommended one), with an interval: both estimates come from the same rows, so
        the difference's variance counts their covariance (usually far narrower than
        the two intervals suggest)."""
        est = estimator or self.recommended
        if est in LEARNED_SEQUENTIAL:  # fitted on the whole log: paired per session
            a, b = self.fitted.get((policy, est)), self.fitted.get((baseline, est))
            iv = None if a is None or b is None else paired_difference(a, b, self.alpha)
            if iv is not None:
                return iv
            t = self.table
            v = [
                float(t[(t["policy"] == p) & (t["estimator"] == est)]["value"].iloc[0])
                for p in (policy, baseline)
            ]
            return Interval(v[0] - v[1], math.nan, math.nan, "none", self.alpha)
        for key in ((policy, est), (baseline, est)):
            if key not in self.forms:
                raise InputError(f"no estimate for policy {key[0]!r} by {key[1]!r} in this result")
        contrast = Contrast(((self.forms[policy, est], 1.0), (self.forms[baseline, est], -1.0)))
        m = method or self.method or "normal"
        return interval(self.moments, contrast, method=m, alpha=self.alpha)


def evaluate(
    logs: str | Path | LoggedData,
    targets: Mapping[str, TargetLike] | Target,
    *,
    estimators: Sequence[str | Estimator] | None = None,
    reward_model: RewardModel | BilinearLogistic | None = None,
    interval: str | None = "bootstrap",
    n_bootstrap: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    mode: str = "auto",
    gamma: float = 1.0,
    engine: str = "local",
    batch_size: int = 65_536,
    workers: int = 2,
    ray_address: str | None = None,
    fit_rows: int = 200_000,
    progress: Callable[[int], None] | None = None,
    strict: bool = False,
    fits: SessionFits | None = None,
) -> OPEResult:
    """Estimate the value of ``targets`` from ``logs`` (module docstring: how).

    Args:
        logs: a Parquet log (file or dataset directory) or a ``LoggedData`` in memory.
        targets: ``{name: policy}`` (or one policy); a policy has ``n_actions`` and
            ``action_dist(obs) -> (n, n_actions)``; :class:`FixedProbs` gives
            probabilities aligned with the log's rows.
        estimators: names (bandit: ``ips, snips, dm, dr, sndr, switch-dr, dr-os``;
            session: :data:`SESSION_ESTIMATORS`, e.g. ``mb, pdis, wpdis, dr, mis``) or bandit
            estimator instances
            (``IPS(lambda_=10)``). Default: ``ips, snips, dr`` (bandit) or
            ``mb, pdis, wpdis, dr, fqe`` (session; ``mb`` and the other whole-log estimators
            are fitted on the log, or on a sample of whole sessions above ``fit_rows``).
        reward_model: the reward model DM/DR-type bandit estimators use (default a
            cross-fitted logistic model). Large catalogs: an already fitted model of
            (context, item) pairs with ``predict_pairs(context, items (n, M))`` and
            ``predict_mean(context)`` (e.g. :class:`~offrec.policies.bandits.hybrid.HybridLinear`,
            fitted on other rows than the evaluated ones), read at the logged items and
            the target's candidates only (no ``(n, n_items)`` table, no cross-fitting);
            or a :class:`~offrec.reward.bilinear.BilinearLogistic` (unfitted): cross-fitted
            here on the fitting sample, and its fitting noise added to the intervals of
            the estimators linear in the residual (DM, DR, OffCEM, ...) for sparse or
            greedy targets (:func:`~offrec.ope.embedding.sample_model_noise`).
        interval: ``"bootstrap"``, ``"normal"``, ``"bernstein"`` or None (no interval).
        n_bootstrap, alpha, seed: resamples, 1 - coverage, and the seed of everything
            random (bootstrap, folds, fitting sample).
        mode: ``"auto"``, ``"bandit"`` or ``"session"`` (see the module docstring).
        gamma: discount per step (session mode).
        engine: ``"local"`` or ``"ray"``; ``batch_size``, ``workers`` (local threads),
            ``ray_address`` (a Ray cluster; default ``RAY_ADDRESS`` or a local Ray).
        fit_rows: the bounded sample the models are fitted on.
        progress: called with the rows done so far (per pass over the log).
        strict: an estimator named in ``estimators`` that cannot apply to the log (e.g.
            ``mb``, which needs clicks, on a continuous reward) is an ``InputError``. By
            default (and always for the default estimators) it is left out, the others
            are reported, and :attr:`OPEResult.skipped` says which and why.

        fits: session mode, models already fitted on a sample of this log (e.g. the log
            itself, in memory), shared across calls; by default they are fitted here.

    Returns:
        :class:`OPEResult`.
    """
    check_scalar(seed, "seed", int, min=0)
    check_scalar(fit_rows, "fit_rows", int, min=10)
    check_scalar(gamma, "gamma", float, min=0.0, max=1.0)
    if interval is not None:
        check_interval_options(interval, n_bootstrap, alpha)
    if mode not in MODES:
        raise InputError(f"mode must be one of {list(MODES)}; got {mode!r}")
    from offrec.engines import make_engine

    options: dict[str, Any] = {"batch_size": batch_size}
    if engine == "local":
        options["workers"] = workers
    elif ray_address is not None:
        options["address"] = ray_address
    eng = make_engine(engine, **options)
    source: LogSource | LoggedData = logs if isinstance(logs, LoggedData) else open_log(logs)
    n_actions, session_log = _shape(source)
    named = _named_targets(targets, n_actions, ItemMap.of_metadata(source.metadata, n_actions))
    if engine == "ray" and any(isinstance(t, FixedProbs) for t in named.values()):
        raise InputError(
            "fixed probabilities are aligned with row numbers, which the ray engine does not "
            "track; use engine='local' or pass a policy"
        )
    session = _pick_mode(mode, session_log, estimators)
    n_boot = n_bootstrap if interval == "bootstrap" else 0
    asked = estimators or (DEFAULT_SESSION if session else DEFAULT_BANDIT)
    kept, skipped = _applicable(asked, _reward_domain(source), strict and estimators is not None)
    sparse = not session and all(getattr(t, "sparse_form", False) for t in named.values())
    dense_model = session or (
        not hasattr(reward_model, "predict_pairs")
        and not isinstance(reward_model, BilinearLogistic)
        and any((e if isinstance(e, Estimator) else make_estimator(e)).needs_model for e in kept)
    )
    check_evaluate_memory(
        n_actions,
        batch_size,
        workers if engine == "local" else 1,
        n_boot,
        min(fit_rows, source.n_rows),
        dense_rows=not sparse,
        dense_model=dense_model,
    )
    if session:
        result = _evaluate_session(
            source,
            eng,
            named,
            kept,
            interval,
            n_boot,
            alpha,
            seed,
            gamma,
            fit_rows,
            progress,
            fits,
        )
    else:
        result = _evaluate_bandit(
            source,
            eng,
            named,
            kept,
            reward_model,
            interval,
            n_boot,
            alpha,
            seed,
            fit_rows,
            progress,
        )
    result.skipped = skipped
    return result


def evaluate_sequential(
    data: LoggedData,
    targets: Mapping[str, TargetLike],
    estimators: Sequence[str],
    *,
    method: str = "normal",
    n_bootstrap: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    fits: SessionFits | None = None,
    gamma: float = 1.0,
) -> pd.DataFrame:
    """Every target x every estimator on a session log in memory, as a table: policy,
    estimator, value, low, high, interval_method, recommended (bool: the row of
    :data:`~offrec.ope.trust.RECOMMENDED` ``["session"]``), warnings (a list of strings per row).

    The in-memory form of :func:`evaluate` (``mode="session"``, the log itself as the
    fitting sample, ``fits`` shared when given): one engine, the same numbers and warnings
    (weight diagnostics, feasible range, disagreement with the chosen estimator);
    :func:`evaluate`'s :class:`OPEResult` has the rest.
    """
    res = evaluate(
        data,
        dict(targets),
        estimators=list(estimators),
        mode="session",
        interval=method,
        n_bootstrap=n_bootstrap,
        alpha=alpha,
        seed=seed,
        gamma=gamma,
        fit_rows=max(data.n_rows, 10),
        batch_size=max(data.n_rows, 1),  # the kernel on one batch: any row order
        workers=1,
        fits=fits,
        strict=True,
    )
    table = res.table[["policy", "estimator", "value", "low", "high", "interval_method"]].copy()
    table["recommended"] = table["estimator"] == RECOMMENDED["session"]
    table["warnings"] = [list(e.warnings) for e in res.estimates]
    return table.reset_index(drop=True)


def why_not(estimator: str, domain: dict[str, Any]) -> str | None:
    """Why ``estimator`` (a name) cannot apply to a log with the declared reward
    ``domain``, or None when it can. Owned by the estimators' modules: the session
    estimators with a click model (:data:`offrec.ope.sequential.NEEDS_CLICKS`) need a
    binary reward; every other estimator takes bounded continuous rewards (the reward
    models fit them as a fractional response, :mod:`offrec.reward.model`)."""
    from offrec.core.domain import describe, is_binary
    from offrec.ope.sequential import NEEDS_CLICKS

    if estimator in NEEDS_CLICKS and not is_binary(domain):
        return (
            f"needs a binary (0/1 click) reward (its session model is a logistic click model); "
            f"this log's reward is {describe(domain)}"
        )
    return None


def _applicable(
    asked: Sequence[str | Estimator], domain: dict[str, Any], strict: bool
) -> tuple[list[str | Estimator], dict[str, str]]:
    """The estimators of ``asked`` that apply to the log, and ``{name: reason}`` for the
    others (an ``InputError`` for the first of those when ``strict``). When none is left
    the reasons are the error."""
    kept: list[str | Estimator] = []
    skipped: dict[str, str] = {}
    for e in asked:
        name = e if isinstance(e, str) else e.name
        reason = why_not(name, domain) if isinstance(name, str) else None
        if reason is None:
            kept.append(e)
        elif strict:
            raise InputError(f"estimator {name!r} cannot apply to this log: {reason}")
        else:
            skipped[name] = reason
    if not kept:
        raise InputError(
            "no estimator asked for applies to this log: "
            + "; ".join(f"{k}: {v}" for k, v in skipped.items())
        )
    return kept, skipped


# ------------------------------------------------------------------------------ setup
DENSE_CELL_BYTES = 24
"""Bytes per (row, action) cell a batch holds at once: the target's distribution, the
reward model's predictions for every action (DM/DR) and one float64 temporary."""


def evaluate_bytes(
    n_actions: int,
    batch_size: int,
    workers: int,
    n_bootstrap: int,
    fit_rows: int,
    *,
    dense_rows: bool = True,
    dense_model: bool = True,
) -> dict[str, int]:
    """Upper estimate of :func:`evaluate`'s peak memory by what scales with a user-given
    size: ``batch_size x n_actions`` dense arrays per worker, the fitting sample's
    predictions (``fit_rows x n_actions``), and the bootstrap's per-batch buffers
    (``n_bootstrap`` x (resample bits of :data:`~offrec.ope.moments.BITS_ROWS` units, the
    float32 block of :data:`~offrec.ope.moments.BOOT_ROWS`, the resample sums)) per worker.

    ``dense_rows=False``: every target's compact form is a
    :class:`~offrec.core.policy.SparseDist` (``sparse_form = True``), so no batch holds
    ``(batch_size, n_actions)``; ``dense_model=False``: no estimator fits the dense
    (per-item) reward model (none needs one, or a pairwise model was given). The parts
    not held are left out."""
    from offrec.ope.moments import BITS_ROWS, BOOT_ROWS

    parts = {
        "--batch-size x items": DENSE_CELL_BYTES * batch_size * n_actions * workers,
        "--fit-rows x items": 2 * 8 * fit_rows * n_actions,
        "--n-bootstrap": n_bootstrap * (2 * BITS_ROWS + 4 * BOOT_ROWS + 64 * 12) * workers,
    }
    if not dense_rows:
        del parts["--batch-size x items"]
    if not dense_model:
        del parts["--fit-rows x items"]
    return parts


def check_evaluate_memory(
    n_actions: int, batch_size: int, workers: int, n_bootstrap: int, fit_rows: int, **layout: bool
) -> None:
    """Refuse before reading the log when :func:`evaluate_bytes` (same arguments,
    ``layout`` its ``dense_rows`` / ``dense_model``) does not fit in memory; the message
    names the largest part and what to lower."""
    from offrec.sim.limits import check_memory

    parts = evaluate_bytes(n_actions, batch_size, workers, n_bootstrap, fit_rows, **layout)
    big = max(parts, key=lambda k: parts[k])
    check_memory(
        sum(parts.values()),
        f"evaluate ({n_actions:,} items, --batch-size {batch_size:,}, --workers {workers}, "
        f"--n-bootstrap {n_bootstrap:,}, --fit-rows {fit_rows:,})",
        f"lower {big.split(' x ')[0]} (the largest part)",
    )


def _shape(source: LogSource | LoggedData) -> tuple[int, bool]:
    if isinstance(source, LoggedData):
        return source.n_actions, bool(source.n_rows and source.step.max() > 0)
    n = source.n_actions
    if n is None:
        raise InputError(f"log {source.path} does not record n_actions in its metadata")
    return n, source.is_session_log


def _named_targets(
    targets: Mapping[str, TargetLike] | Target,
    n_actions: int,
    items: ItemMap | None = None,
) -> dict[str, Target | FixedProbs]:
    """``{name: target}``, each checked against the log: a target that carries the item
    map it was trained with (``item_map``) is laid onto the log's map through the source
    ids (:func:`~offrec.logs.items.translate_target`; a model item the log lacks is an
    error), so no target is ever scored against the wrong items."""
    given: dict[str, TargetLike] = (
        dict(targets) if isinstance(targets, Mapping) else {_name(targets): targets}
    )
    if not given:
        raise InputError("targets must name at least one policy; got none")
    named: dict[str, Target | FixedProbs] = {}
    for name, g in given.items():
        t = FixedProbs(g) if isinstance(g, np.ndarray) else g
        if items is not None:
            t = translate_target(t, items, f"target {name!r}")
        named[name] = t
        if not isinstance(t, FixedProbs) and not callable(getattr(t, "action_dist", None)):
            raise InputError(f"target {name!r} must have an action_dist(obs) method")
        if getattr(t, "n_actions", None) != n_actions:
            raise InputError(
                f"target {name!r} must have n_actions == the log's n_actions ({n_actions}); "
                f"got {getattr(t, 'n_actions', None)!r}"
            )
    return named


def _name(policy: object) -> str:
    name = getattr(policy, "name", None)
    return name if isinstance(name, str) else type(policy).__name__


def _pick_mode(mode: str, session_log: bool, estimators: Sequence[str | Estimator] | None) -> bool:
    names = [e if isinstance(e, str) else e.name for e in estimators or ()]
    if mode == "bandit" or (mode == "auto" and not session_log):
        bad = [n for n in names if n not in ESTIMATORS]
        if bad:
            raise InputError(
                f"estimator(s) {bad} are not bandit estimators; valid: {list(ESTIMATORS)}"
                + ("" if session_log else " (this log has one step per session)")
            )
        return False
    if (
        mode == "auto"
        and names
        and all(n in ESTIMATORS for n in names)
        and not all(n in SESSION_ESTIMATORS for n in names)
    ):
        return False  # only bandit estimators named: score each decision as a bandit round
    bad = [n for n in names if not isinstance(n, str) or n not in SESSION_ESTIMATORS]
    if bad:
        raise InputError(
            f"estimator(s) {bad} are not session estimators; valid: {list(SESSION_ESTIMATORS)} "
            "(pass mode='bandit' to score every decision as a bandit round)"
        )
    return True


def _dist(target: Target | FixedProbs, batch: Batch, name: str, compact: bool = False) -> Any:
    """The target's distribution on the batch's contexts, ``(n, n_actions)``: dense, or
    with ``compact`` in the factored form of a greedy head when the target offers
    ``action_dist_compact`` (:class:`~offrec.core.policy.GreedyDist`, the same numbers
    without the dense array; :func:`~offrec.ope.terms.round_terms` reads either)."""
    data = batch.data
    if isinstance(target, FixedProbs):
        stop = batch.row + data.n_rows
        if target.probs.shape[0] < stop:
            raise InputError(
                f"target {name!r}: its probabilities have {target.probs.shape[0]} rows; "
                f"the log has more (row {stop - 1})"
            )
        return np.asarray(target.probs[batch.row : stop])
    method = getattr(target, "action_dist_compact", None) if compact else None
    dist = method(data.context) if callable(method) else target.action_dist(data.context)
    if not isinstance(dist, GreedyDist | SparseDist):
        dist = np.asarray(dist)
    if dist.shape != (data.n_rows, data.n_actions):
        raise InputError(
            f"policy {name!r}: action_dist must return shape (n, {data.n_actions}); "
            f"got {dist.shape}"
        )
    return dist


def _keys(data: LoggedData) -> np.ndarray:
    return row_keys(data.session_id, data.step, data.position)


def _by_key(keys: np.ndarray, sorted_keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values`` (aligned with ``sorted_keys``) at each of ``keys`` (n,), 0 where absent."""
    pos = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return np.where(sorted_keys[pos] == keys, values[pos], 0.0)


def _relocate(err: InputError, batch: Batch, name: str) -> InputError:
    from offrec.logs.scan import locate

    if batch.file == "<memory>":
        return InputError(f"policy {name!r}: " + locate(str(err), "", batch.row, 0))
    where = f"log file {Path(batch.file).name}"
    msg = locate(str(err), where, batch.file_row, batch.row - batch.file_row)
    return InputError(f"policy {name!r}: {msg}")


@dataclass
class FoldModels:
    """Cross-fitted reward models: row ``i`` is predicted by the model of its fold
    (a hash of its key and the seed), fitted on the sampled rows of the other folds."""

    models: list[FittedRewardModel]
    seed: int
    n_positions: int

    def folds(self, keys: np.ndarray) -> np.ndarray:
        k = len(self.models)
        return np.minimum((hash_uniform(keys, self.seed, _FOLD_SALT) * k).astype(np.int64), k - 1)

    def predict(self, data: LoggedData) -> np.ndarray:
        """:math:`\\hat q(x_i, a)` at each row's own position, ``(n, n_actions)``
        (:func:`~offrec.reward.model.predict_by_fold`)."""
        position = data.position if self.n_positions > 1 else None
        return predict_by_fold(self.models, self.folds(_keys(data)), data.context, position)

    def greedy_terms(
        self, data: LoggedData, dists: Mapping[str, GreedyDist]
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """:math:`\\hat q(x_i, a_i)` (n,) and, per greedy / epsilon-greedy target, its
        :math:`\\sum_a \\pi(a|x_i) \\hat q(x_i, a)` (n,), from reductions of the
        predictions (:func:`~offrec.reward.model.predict_reduced_by_fold`; one position):
        the numbers of :meth:`predict` followed by ``GreedyDist.expect``, without the
        ``(n, n_actions)`` array. Only the tied rows of a target are predicted densely."""
        fold = self.folds(_keys(data))
        names = list(dists)
        floors = np.stack([dists[p].floor for p in names], axis=1)  # (n_actions, P)
        cols = np.stack([data.action] + [dists[p].best for p in names], axis=1)
        sums, picked = predict_reduced_by_fold(self.models, fold, data.context, floors, cols)
        odd = np.unique(np.concatenate([dists[p].odd for p in names]))
        dense = predict_by_fold(self.models, fold[odd], data.context[odd]) if odd.size else None
        targets = {}
        for j, p in enumerate(names):
            d = dists[p]
            odd_q = (
                np.zeros((0, d.shape[1])) if dense is None else dense[np.searchsorted(odd, d.odd)]
            )
            targets[p] = greedy_q_target(d, sums[:, j], picked[:, 1 + j], odd_q)
        return picked[:, 0].copy(), targets


def fit_fold_models(sample: LoggedData, rm: RewardModel, seed: int, n_positions: int) -> FoldModels:
    """Fit one reward model per fold on ``sample`` (rows of the other folds)."""
    keys = _keys(sample)
    shell = FoldModels([], seed, n_positions)
    shell.models = [None] * rm.n_folds  # type: ignore[list-item]
    fold = shell.folds(keys)
    position = sample.position if n_positions > 1 else None
    models = []
    for k in range(rm.n_folds):
        rows = np.flatnonzero(fold != k)
        if rows.size < 2:
            raise InputError(f"reward-model fold {k} has {rows.size} training rows; raise fit_rows")
        models.append(
            rm.fit(
                sample.context[rows],
                sample.action[rows],
                sample.reward[rows],
                sample.pscore[rows],
                None if position is None else position[rows],
                n_actions=sample.n_actions,
                reward_domain=sample.reward_domain,
            )
        )
        if n_positions > 1 and models[-1].n_positions < n_positions:
            models[-1].n_positions = n_positions  # constant models: broadcast positions
    return FoldModels(models, seed, n_positions)


# ---------------------------------------------------------------------------- bandit
@dataclass(frozen=True)
class _Layout:
    """Which column of the kernel's matrix holds what, per policy."""

    policies: tuple[str, ...]
    estimators: tuple[Estimator, ...]
    weight: dict[str, int]
    support: dict[str, int]
    forms: dict[tuple[str, str], Form]
    width: int
    own_weight: dict[tuple[str, str], int]
    """(policy, estimator) -> the column of the estimator's own weights, for estimators
    that do not weight by the item-level ratio (MIPS, OffCEM: group-level weights); their
    diagnostics (ESS, largest weight) describe those weights."""


def _own_weights(e: Estimator) -> bool:
    """Whether ``e`` averages with weights of its own (it overrides ``weights``)."""
    return type(e).weights is not Estimator.weights


def _bandit_layout(names: Sequence[str], ests: Sequence[Estimator], support: bool) -> _Layout:
    col = 0
    weight, supp, forms, own = {}, {}, {}, {}
    for p in names:
        weight[p] = col
        col += 1
        if support:
            supp[p] = col
            col += 1
        for e in ests:
            if _own_weights(e):
                own[p, e.label] = col
                col += 1
        for e in ests:
            a = col if not e.self_normalized or e.needs_model else None
            if e.self_normalized:
                first = col + (1 if a is not None else 0)
                forms[p, e.label] = Form(a, (first,), (first + 1,))
                col = first + 2
            else:
                forms[p, e.label] = Form(a)
                col += 1
    return _Layout(tuple(names), tuple(ests), weight, supp, forms, col + 1, own)


def _evaluate_bandit(
    source: Source,
    eng: Engine,
    named: dict[str, Target | FixedProbs],
    estimators: EstimatorNames,
    reward_model: RewardModel | BilinearLogistic | None,
    method: str | None,
    n_boot: int,
    alpha: float,
    seed: int,
    fit_rows: int,
    progress: Progress,
) -> OPEResult:
    ests = [
        e if isinstance(e, Estimator) else make_estimator(e) for e in estimators or DEFAULT_BANDIT
    ]
    if not ests:
        raise InputError("estimators must name at least one estimator; got none")
    models = None
    pair_model: Any = reward_model if hasattr(reward_model, "predict_pairs") else None
    has_support = _has_logging_dist(source)
    groups = None
    if any(e.needs_groups for e in ests):  # MIPS & co: the logger's group propensities
        from offrec.ope.embedding import LoggerGroups

        groups = LoggerGroups(source.metadata, has_support, _has_column(source, "pscore_group"))
    # the bilinear model's fitting noise: per-row terms of its fitting sample, by row key
    noise: dict[tuple[str, str], np.ndarray] = {}
    noise_keys = noise_order = np.zeros(0, np.int64)
    if any(e.needs_model for e in ests) and isinstance(reward_model, BilinearLogistic):
        from offrec.ope.embedding import sample_model_noise

        log.info("cross-fitting the bilinear model on a sample of at most %d rows", fit_rows)
        fitted_on = draw_sample(source, eng, fit_rows, seed, progress=progress).data
        assert fitted_on is not None  # draw_sample refuses an empty sample
        x_fit = np.asarray(fitted_on.context)
        pair_model = reward_model.fit(x_fit, fitted_on.action, fitted_on.reward)
        if method is not None:
            noise = sample_model_noise(pair_model, fitted_on, named, ests, groups, source.n_rows)
            noise_keys = _keys(fitted_on)
            noise_order = np.argsort(noise_keys)
            noise_keys = noise_keys[noise_order]
    if any(e.needs_model for e in ests) and pair_model is None:
        rm = reward_model or RewardModel(kind="logistic", seed=seed)
        log.info("fitting the reward model on a sample of at most %d rows", fit_rows)
        sample = draw_sample(source, eng, fit_rows, seed, progress=progress)
        models = fit_fold_models(sample.data, rm, seed, sample.max_position + 1)  # type: ignore[arg-type]
    layout = _bandit_layout(list(named), ests, has_support)

    def kernel(batch: Batch) -> Moments:
        data = batch.data
        # greedy targets on one position: the reward model's reductions they need (no
        # (n, n_actions) array of predictions); else the dense predictions. The targets'
        # factored forms are made first (small); at most one dense one waits for its turn.
        dists: dict[str, Any] = {}
        for p, target in named.items():
            dists[p] = _dist(target, batch, p, compact=True)
            if not isinstance(dists[p], GreedyDist):
                break
        reduced = (
            models is not None
            and models.n_positions == 1
            and len(dists) == len(named)
            and all(isinstance(d, GreedyDist) for d in dists.values())
        )
        q = None if models is None or reduced else models.predict(data)
        q_logged, q_targets = models.greedy_terms(data, dists) if reduced else (None, {})  # type: ignore[union-attr]
        marginal: dict[str, Any] = {}
        if groups is not None:  # MIPS & co: the logger's probability of the logged group
            try:
                pg = groups.pscore_group(
                    data.context, data.action, data.pscore, data.logging_dist, data.pscore_group
                )
            except InputError as err:
                raise _relocate(err, batch, "logger") from None
            marginal = {"item_groups": groups.item_groups, "pscore_group": pg}
        x = np.empty((data.n_rows, layout.width))
        keys = _keys(data)
        x[:, layout.width - 1] = data.reward  # the logger's value, observed on-policy
        for p, target in named.items():
            dist = dists.pop(p) if p in dists else _dist(target, batch, p, compact=True)
            if pair_model is not None:  # (user, item) reward model: no (n, n_actions) table
                q = _pair_rewards(pair_model, data, dist)
            try:
                terms = round_terms(
                    reward=data.reward,
                    action=data.action,
                    pscore=data.pscore,
                    action_dist=dist,
                    estimated_rewards=q,
                    **marginal,
                )
            except InputError as err:
                raise _relocate(err, batch, p) from None
            if reduced:
                terms = replace(terms, q_logged=q_logged, q_target=q_targets[p])
            x[:, layout.weight[p]] = terms.weight
            if has_support:  # the target's mass on actions the logger never takes
                outside = np.asarray(data.logging_dist) <= 0
                x[:, layout.support[p]] = (
                    dist.expect(outside)
                    if isinstance(dist, GreedyDist)
                    else np.einsum(
                        "na,na->n", dist.dense() if isinstance(dist, SparseDist) else dist, outside
                    )
                )
            for e in ests:
                if (p, e.label) in layout.own_weight:
                    x[:, layout.own_weight[p, e.label]] = e.weights(terms)
                parts = e.parts(terms) if not e.self_normalized else _sn_parts(e, terms)
                form = layout.forms[p, e.label]
                cols = [c for c in (parts.a, parts.b, parts.c) if c is not None]
                idx = [i for i in (form.a, *form.b, *form.c) if i is not None]
                for i, c in zip(idx, cols, strict=True):
                    x[:, i] = c
                if (p, e.label) in noise and form.a is not None:  # the fitting sample's rows
                    x[:, form.a] += _by_key(keys, noise_keys, noise[p, e.label][noise_order])
        return Moments.of(x, keys=keys, n_bootstrap=n_boot, seed=seed)

    moments = eng.map_reduce(source, kernel, progress=progress)
    result = _finish(
        moments,
        layout.forms,
        layout.weight,
        layout.support,
        ests,
        "bandit",
        method,
        alpha,
        _reward_range(source),
        moments.n,
        layout.width - 1,
        own_weight=layout.own_weight,
    )
    return _choose(result)


def _pair_rewards(model: Any, data: LoggedData, dist: Any) -> Any:
    """A fitted (context, item) reward model's predictions for one batch and target: at the
    logged items, at the target's candidates and its catalog mean
    (:class:`~offrec.ope.terms.PairRewards`; a dense target gets the dense table)."""
    from offrec.ope.terms import PairRewards

    x = data.context
    if isinstance(dist, GreedyDist):
        dist = dist.sparse()
    if not isinstance(dist, SparseDist):
        rows = np.broadcast_to(np.arange(data.n_actions), (data.n_rows, data.n_actions))
        return model.predict_pairs(x, rows)
    # the predictions at the candidates depend only on (context, candidates): once per
    # distinct pair of a batch (a user's rows repeat), then gathered
    n = data.n_rows
    d = distinct_rows(np.hstack([_row_bytes(x, n), _row_bytes(dist.items, n)]))
    xu = x[d.first]
    mean = (
        np.zeros(len(xu))  # no floor: the catalog mean is not read (a scan for a nonlinear model)
        if dist.floor == 0
        else model.predict_mean(xu)
        if dist.support is None
        else model.predict_pairs(
            xu, np.broadcast_to(np.flatnonzero(dist.support), (len(xu), dist.n_support))
        ).mean(axis=1)
    )
    return PairRewards(
        logged=model.predict_pairs(x, data.action[:, None])[:, 0],
        at_items=model.predict_pairs(xu, dist.items[d.first])[d.inverse],
        support_mean=mean[d.inverse],
    )


def _row_bytes(a: Any, n: int) -> np.ndarray:
    """The bytes of each row of ``a`` (n, ...), (n, bytes) uint8."""
    arr = np.ascontiguousarray(a)
    return arr.reshape(n, -1).view(np.uint8) if n and arr.size else np.zeros((n, 0), np.uint8)


def _sn_parts(e: Estimator, terms: Any) -> Any:
    """Parts of a self-normalized estimator without the all-zero-weights check (a batch
    may legitimately have no weight; the check runs on the merged sums)."""
    from offrec.ope.estimators import Parts

    w = e.weights(terms)
    if e.needs_model:
        return Parts(terms.q_target, w * (terms.reward - terms.q_logged), w)
    return Parts(None, w * terms.reward, w)


def _reward_domain(source: Source) -> dict[str, Any]:
    """The log's declared reward domain (clicks when it declares none)."""
    if isinstance(source, LoggedData):
        return source.reward_domain
    return source.metadata.get("reward_domain") or {"kind": "binary"}


def _reward_range(source: Source) -> tuple[float, float]:
    """The feasible range of one reward: [0, 1] for clicks, the declared bounds of a
    continuous reward (the log's ``reward_domain``)."""
    from offrec.core.domain import bounds

    return bounds(_reward_domain(source))


def _per_session(reward_range: tuple[float, float], horizon: int) -> tuple[float, float]:
    """Feasible clicks (rewards) per session: at most ``horizon`` rewards."""
    low, high = reward_range
    return (min(0.0, horizon * low), horizon * high)


def _has_column(source: Source, name: str) -> bool:
    if isinstance(source, LoggedData):
        return getattr(source, name, None) is not None
    return name in source.columns


def _has_logging_dist(source: Source) -> bool:
    if isinstance(source, LoggedData):
        return source.logging_dist is not None
    return "logging_dist" in source.columns


# --------------------------------------------------------------------------- session
def _evaluate_session(
    source: Source,
    eng: Engine,
    named: dict[str, Target | FixedProbs],
    estimators: EstimatorNames,
    method: str | None,
    n_boot: int,
    alpha: float,
    seed: int,
    gamma: float,
    fit_rows: int,
    progress: Progress,
    fits: SessionFits | None = None,
) -> OPEResult:
    """Session mode: one bounded sample of whole sessions fits every model the estimators
    read (:class:`~offrec.ope.sequential.SessionFits`, shared by the estimators and cached
    per target); the streamed estimators' kernel (:meth:`SessionEstimator.parts
    <offrec.ope.sequential.SessionEstimator.parts>` with the fitted models) maps over the
    log's batches; the others are computed on the sample
    (:meth:`~offrec.ope.sequential.SessionEstimator.estimate_on_sample`)."""
    classes = [
        SESSION_CLASSES[e if isinstance(e, str) else e.name] for e in estimators or DEFAULT_SESSION
    ]
    streamed = [c for c in classes if c.streamed]
    on_sample = [c for c in classes if not c.streamed]
    for name, t in named.items():
        if hasattr(t, "action_dist_state"):
            raise InputError(
                f"target {name!r} is an oracle: it needs the hidden session state, so it "
                "cannot be scored off-policy in session mode"
            )
    horizon = _horizon(source)
    if fits is None and any(c.q_model or not c.streamed for c in classes):
        # the log itself when it has at most fit_rows rows, else a seeded sample of whole
        # sessions of about that size (bounded memory): drawn once, for every model
        if isinstance(source, LoggedData) and source.n_rows <= fit_rows:
            sample = source
        else:
            drawn = draw_sample(source, eng, fit_rows, seed, sessions=True, progress=progress)
            assert drawn.data is not None
            sample = drawn.data.subset(np.lexsort((drawn.data.step, drawn.data.session_id)))
        fits = SessionFits(sample, seed=seed)
    sample_dist: dict[str, np.ndarray] = {}
    row_q: dict[tuple[str, str], RowQ] = {}
    kinds = sorted({c.q_model for c in streamed})
    if fits is not None:
        for p, t in named.items():
            sample_dist[p] = _sample_dist(t, fits.data, fits.data is source, p)
            for kind in kinds:
                if kind:
                    row_q[p, kind] = fits.row_q(kind, p, _policy(t), sample_dist[p], gamma)
    # layout: per policy, a whole-session weight column and three per-decision weight
    # columns (diagnostics), then each streamed estimator's columns; last, the decisions
    # per session and the logger's on-policy return
    col = 0
    weight: dict[str, int] = {}
    decision: dict[str, tuple[int, int, int, int]] = {}
    forms: dict[tuple[str, str], Form] = {}
    for p in named:
        weight[p] = col
        decision[p] = (col + 1, col + 2, col + 3, -1)
        col += 4
        for c in streamed:
            k = c.ratio_pairs(horizon)
            if k:
                forms[p, c.name] = Form(
                    None, tuple(range(col, col + k)), tuple(range(col + k, col + 2 * k))
                )
                col += 2 * k
            else:
                forms[p, c.name] = Form(col)
                col += 1
    steps_col = col
    decision = {p: (a, b, c, steps_col) for p, (a, b, c, _) in decision.items()}
    on_policy = col + 1  # the logger's value (discounted return per session), observed on-policy
    width = col + 2
    disc = gamma ** np.arange(horizon)

    def kernel(batch: Batch) -> Moments:
        data = batch.data
        sids = np.unique(data.session_id)
        x = np.empty((sids.size, width))
        x[:, on_policy] = episode_index(data.session_id, data.step, horizon).pad(data.reward) @ disc
        for p, t in named.items():
            dist = _dist(t, batch, p)
            try:
                terms = {
                    kind: SessionTerms.of(
                        data,
                        dist,
                        gamma,
                        horizon,
                        *(row_q[p, kind].rows(data, dist) if kind else ()),
                    )
                    for kind in kinds
                }
                parts = {c.name: c.parts(terms[c.q_model]) for c in streamed}
            except InputError as err:
                raise _relocate(err, batch, p) from None
            x[:, weight[p]] = _trajectory_weight(data, dist, horizon)
            a, b, c, _ = decision[p]
            x[:, a], x[:, b], x[:, c] = _decision_weights(data, dist, horizon)
            for name, part in parts.items():
                form = forms[p, name]
                cols, _ = part.columns()
                idx = [i for i in (form.a, *form.b, *form.c) if i is not None]
                for i, column in zip(idx, cols, strict=True):
                    x[:, i] = column
        x[:, steps_col] = np.bincount(np.searchsorted(sids, data.session_id), minlength=sids.size)
        return Moments.of(x, keys=row_keys(sids), n_bootstrap=n_boot, seed=seed)

    moments = eng.map_reduce(source, kernel, sessions=True, progress=progress)
    value_range = _per_session(_reward_range(source), horizon)
    model_warnings = {
        (p, c.name): row_q[p, c.q_model].warnings for p in named for c in streamed if c.q_model
    }
    result = _finish(
        moments,
        forms,
        weight,
        {},
        streamed,
        "session",
        method,
        alpha,
        value_range,
        moments.n,
        on_policy,
        decision,
        model_warnings,
    )
    if on_sample:  # estimators that need the whole sample at once, added as rows
        import pandas as pd

        assert fits is not None
        added: list[Estimate] = []
        n = moments.n
        for p, t in named.items():
            for c in on_sample:
                ctx = SampleContext(
                    c,
                    fits,
                    _policy(t),
                    sample_dist[p],
                    p,
                    gamma,
                    method or "normal",
                    max(n_boot, 1),
                    alpha,
                    seed,
                )
                res = c.estimate_on_sample(ctx)
                result.fitted[p, c.name] = res
                added.append(
                    _estimate(
                        p,
                        c.name,
                        c.uses_weights(),
                        res.interval,
                        result.weight_ess(p),
                        n,
                        result.weight_max(p),
                        result.weight_sum(p),
                        math.nan,
                        value_range,
                        math.nan,
                        warnings=res.warnings,
                    )
                )
        rank = {p: i for i, p in enumerate(named)}
        order = {c.name: i for i, c in enumerate(classes)}
        rows = sorted(result.estimates + added, key=lambda r: (rank[r.policy], order[r.estimator]))
        result.recommended = recommended_for("session", [c.name for c in classes])
        result.table = pd.DataFrame([r.row() for r in rows], columns=list(COLUMNS))
    return _choose(result)


def _policy(target: Target | FixedProbs) -> Any:
    """What a fitted model reads of a target: the policy, or its probabilities."""
    return target.probs if isinstance(target, FixedProbs) else target


def _sample_dist(
    target: Target | FixedProbs, sample: LoggedData, is_source: bool, name: str
) -> np.ndarray:
    """The target's probabilities on the fitting sample's rows ``(n, n_actions)``."""
    if isinstance(target, FixedProbs):
        if not is_source or target.probs.shape[0] != sample.n_rows:
            raise InputError(
                f"target {name!r}: estimators that fit a model (dr, fqe, the learned ones) need "
                "a policy, not fixed probabilities (the fitting sample is not the log's rows)"
            )
        return np.asarray(target.probs)
    return np.asarray(target.action_dist(sample.context))


def _trajectory_weight(data: LoggedData, dist: np.ndarray, horizon: int) -> np.ndarray:
    """Whole-session importance weight :math:`\\prod_t w_t` per session, (m,)."""
    idx = episode_index(data.session_id, data.step, horizon)
    w = dist[np.arange(data.n_rows), data.action] / data.pscore
    logw = idx.pad(np.log(np.maximum(w, 1e-300)), 0.0).sum(axis=1)
    zero = idx.pad((w <= 0).astype(float), 0.0).sum(axis=1) > 0
    return np.where(zero, 0.0, np.exp(logw))


def _decision_weights(
    data: LoggedData, dist: np.ndarray, horizon: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per session, the sum, the sum of squares and the largest of its per-decision
    (prefix) weights :math:`w_{0:t} = \\prod_{s \\le t} w_s`, each (m,): the weights the
    per-decision estimators (PDIS, WPDIS, DR) put on its decisions, for their diagnostics
    (Kish's ESS over decisions, the largest weight)."""
    idx = episode_index(data.session_id, data.step, horizon)
    w = dist[np.arange(data.n_rows), data.action] / data.pscore
    with np.errstate(over="ignore"):
        prefix = np.cumprod(idx.pad(w, 1.0), axis=1) * idx.mask
    return prefix.sum(axis=1), (prefix**2).sum(axis=1), prefix.max(axis=1)


def _horizon(source: Source) -> int:
    if isinstance(source, LoggedData):
        return int(source.step.max()) + 1
    if source.max_step >= 1 << 30:
        raise InputError(f"log {source.path}: its step column has no statistics; rewrite it")
    return source.max_step + 1


# ---------------------------------------------------------------------------- finish
def _label(e: Estimator | type[EstimatorMeta]) -> str:
    return e.label if isinstance(e, Estimator) else e.name


def _finish(
    moments: Moments,
    forms: dict[tuple[str, str], Form],
    weight: dict[str, int],
    support: dict[str, int],
    ests: Sequence[Estimator | type[EstimatorMeta]],
    mode: str,
    method: str | None,
    alpha: float,
    value_range: tuple[float, float],
    n_units: int,
    on_policy: int,
    decision: dict[str, tuple[int, int, int, int]] | None = None,
    extra: Mapping[tuple[str, str], Sequence[str]] | None = None,
    own_weight: Mapping[tuple[str, str], int] | None = None,
) -> OPEResult:
    """The table of estimates. ``on_policy``: the column of the logger's on-policy value.
    ``decision`` (session mode): per policy, the columns of the per-decision weight sums,
    squares, maxima and the decision count per session; the per-decision estimators
    report their ESS (Kish's, over decisions), share of the decisions and largest weight
    from them, so the diagnostics describe the weights the estimate used; so do the
    estimators with weights of their own (``own_weight``: (policy, estimator) -> column)."""
    import pandas as pd

    from offrec.ope.intervals import standard_error

    rows: list[Estimate] = []
    labels = [_label(e) for e in ests]
    recommended = recommended_for(mode, labels) if labels else ""

    def diagnostics(wcol: int) -> tuple[float, float, float]:
        """ESS (Kish's), largest weight and weight sum of the weights in column ``wcol``."""
        w_sum = moments.mean[wcol] * moments.n
        w_sq = moments.m2[wcol, wcol] + moments.n * moments.mean[wcol] ** 2
        return (w_sum**2 / w_sq if w_sq > 0 else 0.0), float(moments.high[wcol]), w_sum

    for p, wcol in weight.items():
        ess, max_w, w_sum = diagnostics(wcol)
        sv = float(moments.mean[support[p]]) if p in support else math.nan
        per_decision = None
        if decision is not None and p in decision:
            a, b, c, d = decision[p]
            d_sum, d_sq = moments.mean[a] * moments.n, moments.mean[b] * moments.n
            n_dec = moments.mean[d] * moments.n
            per_decision = (
                d_sum**2 / d_sq if d_sq > 0 else 0.0,
                float(moments.high[c]),
                d_sum,
                n_dec,
            )
        for e in ests:
            form = forms[p, _label(e)]
            e_ess, e_max, e_sum, e_n = ess, max_w, w_sum, moments.n
            if per_decision is not None and not getattr(e, "trajectory", False):
                e_ess, e_max, e_sum, e_n = per_decision
            if own_weight and (p, _label(e)) in own_weight:
                e_ess, e_max, e_sum = diagnostics(own_weight[p, _label(e)])
            if getattr(e, "self_normalized", False) and not e_sum > 0:
                raise InputError(
                    f"{_label(e)} is undefined for policy {p!r}: every importance weight is 0 "
                    "(the target puts no mass on any logged action)"
                )
            if method is None:
                iv = Interval(form.value(moments.mean), math.nan, math.nan, "none", alpha)
            else:
                iv = interval(moments, form, method=method, alpha=alpha)
            rows.append(
                _estimate(
                    p,
                    _label(e),
                    e.uses_weights(),
                    iv,
                    e_ess,
                    int(round(e_n)),
                    e_max,
                    e_sum,
                    sv,
                    value_range,
                    standard_error(moments, form),
                    warnings=(extra or {}).get((p, _label(e)), ()),
                )
            )
    table = pd.DataFrame([r.row() for r in rows], columns=list(COLUMNS))
    return OPEResult(
        table,
        recommended,
        mode,
        moments.n if mode == "bandit" else -1,
        n_units,
        value_range,
        moments,
        forms,
        method,
        alpha,
        weights=dict(weight),
        on_policy_column=on_policy,
    )


def _estimate(
    policy: str,
    label: str,
    uses_weights: bool,
    iv: Interval,
    ess: float,
    n: int,
    max_w: float,
    w_sum: float,
    sv: float,
    value_range: tuple[float, float],
    stderr: float,
    warnings: Sequence[str] = (),
) -> Estimate:
    """The typed row; weight diagnostics and their warnings only for estimators that use
    importance weights (:meth:`~offrec.ope.trust.EstimatorMeta.uses_weights`)."""
    out = list(warnings)
    if uses_weights:
        out += weight_warnings(ess, n, max_w, w_sum, sv)
    out += range_warning(iv.value, value_range)
    nan = math.nan
    return Estimate(
        policy,
        label,
        iv.value,
        iv.low,
        iv.high,
        iv.method,
        stderr,
        ess if uses_weights else nan,
        ess / max(n, 1) if uses_weights else nan,
        max_w if uses_weights else nan,
        sv if uses_weights else nan,
        tuple(out),
    )


def _choose(result: OPEResult) -> OPEResult:
    """Choose the estimator from the data (:func:`~offrec.ope.selection.choose_estimator`),
    make it the recommended one when one passed its checks, and flag, once, the estimates
    that disagree with it (:func:`~offrec.ope.trust.disagreement_warnings`)."""
    import pandas as pd

    result.choice = choose_estimator(result)
    if result.choice.estimator is not None:
        result.recommended = result.choice.estimator
    rows = result.estimates
    flagged = disagreement_warnings(rows, result.recommended)
    rows = [replace(r, warnings=w) for r, w in zip(rows, flagged, strict=True)]
    result.table = pd.DataFrame([r.row() for r in rows], columns=list(COLUMNS))
    return result
