r"""What offrec trusts, defined once: estimator metadata, warning thresholds, "uses
importance weights", disagreement, the default estimator per kind of log, and the typed
result row :class:`Estimate`.

Everything that flags, ranks or gates an estimate (:mod:`offrec.ope.evaluate`,
:mod:`offrec.ope.sequential`, :mod:`offrec.ope.selection`, :mod:`offrec.ope.gate`) reads
these; :mod:`offrec.report` only renders what they decided.

**Estimator metadata.** Every estimator class (bandit: :class:`offrec.ope.estimators.Estimator`;
session: :class:`offrec.ope.sequential.SessionEstimator`) derives from
:class:`EstimatorMeta` and declares

- ``reads``: which inputs it leans on, from :data:`READS` (:data:`WEIGHTS`,
  :data:`REWARD_MODEL`, :data:`Q_MODEL`, :data:`WORLD_MODEL`, :data:`STATE_RATIOS`);
  an estimator *uses importance weights* exactly when :data:`WEIGHTS` is among them
  (:func:`EstimatorMeta.uses_weights`), and only those get ESS, max-weight and support
  warnings;
- ``assumptions``: what must hold for it to be right;
- ``reference``: where its formula comes from;
- ``diagnostics``: what :func:`~offrec.ope.evaluate.evaluate` reports beside it.

**Result types.** :class:`Estimate` is *the* result row (DESIGN.md's ``Estimate``): one
(policy, estimator) with its interval, diagnostics and warnings. The others do different
jobs: :class:`~offrec.ope.intervals.Interval` is a number with its interval (what the
interval engine returns, and a paired difference); :class:`~offrec.ope.evaluate.OPEResult`
is a whole evaluation (the table of ``Estimate`` rows, the recommended estimator, the
mergeable sums that make further contrasts); :class:`~offrec.ope.sequential.SequentialResult`
is one in-memory session estimate with its per-session contributions (to pair two targets).

A class that declares nothing gets conservative defaults: ``reads`` is the weights (plus
the reward model when ``needs_model``), ``assumptions`` unconfoundedness and support,
``diagnostics`` the weight diagnostics; ``reference`` has no default and the conformance
test requires one for every registered class.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

# ----------------------------------------------------------------------------- reads
WEIGHTS = "importance weights"
"""The estimator reweights logged outcomes by :math:`\\pi_e / \\pi_b` (per row or per session)."""
REWARD_MODEL = "reward model"
"""A (cross-fitted) regression of the reward on context and action."""
Q_MODEL = "fitted Q-model"
"""A Q-function of the target fitted on the log (FQE, linear or neural)."""
WORLD_MODEL = "world model"
"""A learned model of the log's observable dynamics, rolled out for the target."""
STATE_RATIOS = "state-marginal ratios"
"""Estimated ratios of the target's and the logger's state distributions."""
READS: tuple[str, ...] = (WEIGHTS, REWARD_MODEL, Q_MODEL, WORLD_MODEL, STATE_RATIOS)

UNCONFOUNDED = "unconfoundedness: the logged pscore is the probability the logger used"
SUPPORT = "support: the logger gives positive probability to every action the target takes"
MARKOV = "the observation is (close to) Markov"
MODEL_RIGHT = "the fitted model is right where the target goes"

WEIGHT_DIAGNOSTICS: tuple[str, ...] = ("ess", "max_weight", "support_violation")
"""Diagnostics reported beside an estimator that uses importance weights."""

# ------------------------------------------------------------------------ thresholds
LOW_ESS = 100.0
"""Warn when the effective sample size is below 100 whatever the share (an interval
from fewer effective rows than that is not trustworthy)."""
LOW_ESS_SHARE = 0.01
"""Warn when the effective sample size is below 1% of the rows (or sessions): the
estimate then rests on a handful of rows and its interval is itself unreliable."""
MAX_WEIGHT_SHARE = 0.05
"""Warn when one row (session) carries more than 5% of the total importance weight."""
SUPPORT_MASS = 0.01
"""Warn when the target puts more than 1% of its mass on actions the logger never takes
(importance weighting cannot see that mass)."""
MIN_STEP_ESS = 30.0
"""Session logs: warn when the cumulative-weight ESS falls below this at some step (IS/DR
terms from that step on rest on a handful of sessions)."""
SUPPORT_ESS_FRACTION = 0.05
"""Session logs: warn "far from the logger's support" when the single-step weight ESS is
below this share of the rows."""
GATE_MIN_ESS = 10.0
"""An estimate that uses weights with an ESS below this (single digits) is never the
basis of a recommendation, and is not a candidate for the data-driven selection."""
SLOPE_WIDTH = 2.0
"""SLOPE (Su et al., 2020) intersects the intervals :math:`\\hat V_j \\pm 2\\,
\\mathrm{cnf}_j`; ``cnf`` is the half-width of the estimator's own interval."""
RANGE_TOLERANCE = 1e-9
"""Slack of the feasible-range check (values within it of the range count as inside)."""

# ---------------------------------------------------------------------- recommended
RECOMMENDED: dict[str, str] = {"bandit": "dr", "session": "mb"}
"""The estimator offrec recommends by default, per kind of log, when the data-driven
choice (:func:`offrec.ope.selection.choose_estimator`) was not run or nothing passed its
checks. Why:

- bandit logs: ``dr`` with a cross-fitted logistic reward model; unbiased when either
  the propensities or the model are right, and in the README's accuracy study its error
  is the lowest or within noise of the lowest for targets near and far from the logger
  (``snips`` when no reward model is wanted).
- session logs: ``mb`` (model-based), measured by ``benchmarks/session_ope_study.py`` on
  ``pipelines/session_rl.toml`` (softmax logger, beta 1; myopic bandit, DQN and CQL trained
  on 70% of the sessions, scored on the held-out 30%; seeds 0-4): mean relative error
  3.99% over the 15 (learned policy, seed) pairs (max 9.97%), 95% intervals covering the
  truth for 14 of 15 pairs, Spearman 1.0 in 5 of 5 seeds. Every estimator that leans on
  the importance weights collapses there (greedy targets agree with the logger on 2-5% of
  steps). It is wrong when its model class is (a non-logistic click law, a non-linear
  observation update: :mod:`offrec.ope.model_based`); issue 26 measured such worlds, which
  is why the choice is made from the data when the log allows.
"""
RECOMMENDED_SEQUENTIAL = RECOMMENDED["session"]
"""Deprecated alias: :data:`RECOMMENDED` ``["session"]``."""
DEFAULT_BANDIT: tuple[str, ...] = ("ips", "snips", "dr")
"""The bandit estimators :func:`~offrec.ope.evaluate.evaluate` runs when none are named."""
DEFAULT_SESSION: tuple[str, ...] = ("mb", "pdis", "wpdis", "dr", "fqe")
"""The session estimators :func:`~offrec.ope.evaluate.evaluate` runs when none are named
(the recommended ``mb``, the weight-based forms whose diagnostics tell how far the targets
are from the logger, and the linear-Q forms)."""
FALLBACK: dict[str, tuple[str, ...]] = {"bandit": ("snips",), "session": ()}
"""Next choices when :data:`RECOMMENDED` was not computed: the first present, else the
first estimator of the table."""


def recommended_for(mode: str, present: Sequence[str]) -> str:
    """The default estimator among ``present`` (estimator labels) for a ``mode`` log:
    :data:`RECOMMENDED`, then :data:`FALLBACK`, then the first present."""
    if not present:
        raise ValueError("no estimator to recommend: none was computed")
    for name in (RECOMMENDED.get(mode, ""), *FALLBACK.get(mode, ())):
        if name in present:
            return name
    return present[0]


# -------------------------------------------------------------------------- metadata
def reads_weights(reads: Iterable[str]) -> bool:
    """The one definition of "uses importance weights": :data:`WEIGHTS` is among what the
    estimator reads."""
    return WEIGHTS in set(reads)


class EstimatorMeta:
    """Metadata every estimator class declares (module docstring)."""

    name: ClassVar[str] = ""
    kind: ClassVar[str] = "bandit"
    needs_model: ClassVar[bool] = False
    reads: ClassVar[frozenset[str] | None] = None
    assumptions: ClassVar[tuple[str, ...] | None] = None
    reference: ClassVar[str] = ""
    diagnostics: ClassVar[tuple[str, ...] | None] = None

    @classmethod
    def inputs(cls) -> frozenset[str]:
        """What the estimator reads (``reads``, or its default)."""
        if cls.reads is not None:
            return cls.reads
        return frozenset({WEIGHTS, *((REWARD_MODEL,) if cls.needs_model else ())})

    @classmethod
    def uses_weights(cls) -> bool:
        """Whether the estimator uses importance weights (:func:`reads_weights`)."""
        return reads_weights(cls.inputs())

    @classmethod
    def info(cls) -> EstimatorInfo:
        """The metadata as one record (defaults filled in)."""
        weights = cls.uses_weights()
        default_assume = (UNCONFOUNDED, SUPPORT) if weights else (MODEL_RIGHT,)
        return EstimatorInfo(
            name=cls.name,
            kind=cls.kind,
            reads=tuple(r for r in READS if r in cls.inputs()),
            assumptions=cls.assumptions if cls.assumptions is not None else default_assume,
            reference=cls.reference,
            diagnostics=(
                cls.diagnostics
                if cls.diagnostics is not None
                else (WEIGHT_DIAGNOSTICS if weights else ())
            ),
        )


@dataclass(frozen=True)
class EstimatorInfo:
    """An estimator's metadata: see :class:`EstimatorMeta`."""

    name: str
    kind: str
    reads: tuple[str, ...]
    assumptions: tuple[str, ...]
    reference: str
    diagnostics: tuple[str, ...]

    @property
    def uses_weights(self) -> bool:
        """Whether the estimator uses importance weights (:func:`reads_weights`)."""
        return reads_weights(self.reads)


# ---------------------------------------------------------------------- result rows
ESTIMATE_COLUMNS: tuple[str, ...] = (
    "policy",
    "estimator",
    "value",
    "low",
    "high",
    "interval_method",
    "stderr",
    "ess",
    "ess_share",
    "max_weight",
    "support_violation",
    "warnings",
)
"""Columns of an estimates table (:meth:`Estimate.row`), in order."""


@dataclass(frozen=True)
class Estimate:
    """One (policy, estimator) result: the typed row of :attr:`OPEResult.estimates
    <offrec.ope.evaluate.OPEResult.estimates>` (DESIGN.md's ``Estimate``).

    Attributes:
        policy, estimator: the target's name and the estimator's label.
        value, low, high: the estimate and its ``1 - alpha`` interval (nan without one).
        interval_method: how the interval was made (``"none"`` without one).
        stderr: the standard error (delta method; nan when not available).
        ess: Kish's effective sample size of the importance weights
            :math:`(\\sum w)^2/\\sum w^2` (per session: of the whole-session weights);
            nan for estimators that use no weights. ess_share: ``ess`` / rows (sessions).
        max_weight: the largest weight (nan without weights).
        support_violation: the target's mean mass on actions the logger never takes
            (nan when the log has no ``logging_dist`` or the estimator uses no weights).
        warnings: what may make this number mislead, one sentence each.
    """

    policy: str
    estimator: str
    value: float
    low: float = math.nan
    high: float = math.nan
    interval_method: str = "none"
    stderr: float = math.nan
    ess: float = math.nan
    ess_share: float = math.nan
    max_weight: float = math.nan
    support_violation: float = math.nan
    warnings: tuple[str, ...] = ()

    def row(self) -> dict[str, Any]:
        """A table row (``warnings`` "; "-joined, "" when none)."""
        d = {c: getattr(self, c) for c in ESTIMATE_COLUMNS}
        d["warnings"] = "; ".join(self.warnings)
        return d

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Estimate:
        """The inverse of :meth:`row` (missing columns get their defaults)."""
        ws = row.get("warnings", "")
        if isinstance(ws, str):
            warnings = tuple(w for w in ws.split("; ") if w)
        else:
            warnings = tuple(str(w) for w in ws or ())
        kw: dict[str, Any] = {c: row[c] for c in ESTIMATE_COLUMNS[2:-1] if c in row}
        return cls(str(row["policy"]), str(row["estimator"]), **kw, warnings=warnings)


def weight_warnings(ess: float, n: int, max_w: float, w_sum: float, sv: float) -> list[str]:
    """Warnings of an estimate that uses importance weights: low ESS
    (:data:`LOW_ESS`, :data:`LOW_ESS_SHARE`), one unit carrying much of the weight
    (:data:`MAX_WEIGHT_SHARE`), mass outside the logger's support (:data:`SUPPORT_MASS`)."""
    out = []
    if ess < LOW_ESS or ess < LOW_ESS_SHARE * n:
        out.append(f"low effective sample size {ess:.0f} ({100 * ess / max(n, 1):.2g}% of {n:,})")
    if w_sum > 0 and max_w / w_sum > MAX_WEIGHT_SHARE:
        out.append(f"one unit carries {100 * max_w / w_sum:.0f}% of the importance weight")
    if sv == sv and sv > SUPPORT_MASS:
        out.append(f"{100 * sv:.1f}% of the target's mass is outside the logger's support")
    return out


def range_warning(value: float, value_range: tuple[float, float]) -> list[str]:
    """A warning when ``value`` is outside the feasible ``value_range``."""
    low, high = value_range
    if not low - RANGE_TOLERANCE <= value <= high + RANGE_TOLERANCE:
        return [f"value {value:.4g} is outside the feasible range [{low:g}, {high:g}]"]
    return []


# ---------------------------------------------------------------------- disagreement
def disagree(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """The one definition of disagreement: two intervals ``(low, high)`` that do not
    overlap (they cannot both contain the value). Intervals with a non-finite end never
    disagree."""
    if not all(math.isfinite(x) for x in (*a, *b)):
        return False
    return a[1] < b[0] or b[1] < a[0]


def disagreement_warnings(estimates: Sequence[Estimate], reference: str) -> list[tuple[str, ...]]:
    """Per estimate, its warnings plus one naming a :func:`disagree` ment with the
    ``reference`` estimator's estimate of the same policy (the reference's own row lists
    the estimators that disagree with it)."""
    by_policy: dict[str, Estimate] = {e.policy: e for e in estimates if e.estimator == reference}
    out: list[tuple[str, ...]] = []
    others: dict[str, list[Estimate]] = {}
    for e in estimates:
        ref = by_policy.get(e.policy)
        if (
            ref is None
            or e.estimator == reference
            or not disagree((e.low, e.high), (ref.low, ref.high))
        ):
            out.append(e.warnings)
            continue
        others.setdefault(e.policy, []).append(e)
        out.append(
            (
                *e.warnings,
                f"disagrees with {reference} beyond both intervals "
                f"({e.value:.4g} vs {ref.value:.4g})",
            )
        )
    for i, e in enumerate(estimates):
        if e.estimator == reference and others.get(e.policy):
            names = ", ".join(f"{o.estimator} {o.value:.4g}" for o in others[e.policy])
            out[i] = (*out[i], f"other estimators disagree beyond both intervals: {names}")
    return out


def disagreement_sentences(
    estimates: Iterable[Estimate], *, policies: Sequence[str] | None = None
) -> list[str]:
    """Sentences naming, per policy, estimators whose intervals :func:`disagree`.

    Grouped: the estimator in conflict with the most others is named first with all of
    them ("dm (...) disagrees with ips, dr beyond their intervals"), then the next among
    the remaining pairs, so one outlier gives one sentence, not one per pair.
    """
    from offrec.core.fmt import format_number as f

    grouped: dict[str, dict[str, Estimate]] = {}
    for e in estimates:
        if policies is not None and e.policy not in policies:
            continue
        if math.isfinite(e.low):
            grouped.setdefault(e.policy, {}).setdefault(e.estimator, e)
    out: list[str] = []
    for policy, recs in grouped.items():
        names = list(recs)
        pairs = {
            (a, b)
            for a in names
            for b in names
            if a < b and disagree((recs[a].low, recs[a].high), (recs[b].low, recs[b].high))
        }
        while pairs:
            counts: dict[str, int] = {}
            for a, b in pairs:
                counts[a] = counts.get(a, 0) + 1
                counts[b] = counts.get(b, 0) + 1
            top = max(names, key=lambda e: (counts.get(e, 0), -names.index(e)))
            others = [e for e in names if (min(e, top), max(e, top)) in pairs]

            def iv(e: Estimate) -> str:
                return f"{f(e.value)}, {f(e.low)} to {f(e.high)}"

            out.append(
                f"{policy}: {top} ({iv(recs[top])}) disagrees with "
                + ", ".join(f"{e} ({iv(recs[e])})" for e in others)
                + " beyond their intervals."
            )
            pairs -= {(min(e, top), max(e, top)) for e in others}
    return out
