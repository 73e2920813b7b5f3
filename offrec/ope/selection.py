"""Selection: of policies by their estimates (would a user who trusts them pick the right
policy?), and of the estimator itself, from the log (:func:`choose_estimator`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
from scipy import stats

from offrec.core.errors import InputError
from offrec.ope.intervals import Interval
from offrec.ope.trust import GATE_MIN_ESS, SLOPE_WIDTH, Estimate, range_warning


class ScoredLog(Protocol):
    """What :func:`choose_estimator` reads of an evaluation
    (:class:`offrec.ope.evaluate.OPEResult` is one)."""

    mode: str
    method: str | None
    value_range: tuple[float, float]

    @property
    def estimates(self) -> list[Estimate]: ...

    def on_policy_targets(self) -> list[str]: ...

    def on_policy(self, method: str | None = None) -> Interval | None: ...

    def check_against_on_policy(self, policy: str, estimator: str) -> Interval: ...


def spearman(estimates: np.ndarray, truths: np.ndarray) -> float:
    """Spearman rank correlation of estimated and true values (nan for fewer than 2
    policies or constant inputs)."""
    est, tru = np.asarray(estimates, float), np.asarray(truths, float)
    if est.shape != tru.shape or est.ndim != 1:
        raise InputError(
            f"estimates and truths must be 1-D of one length; got {est.shape}, {tru.shape}"
        )
    if est.size < 2 or np.ptp(est) == 0 or np.ptp(tru) == 0:
        return float("nan")
    return float(stats.spearmanr(est, tru).statistic)


def selection_regret(estimates: np.ndarray, truths: np.ndarray) -> float:
    """``max(truths) - truths[argmax(estimates)]``: value lost by picking the policy with
    the best estimate instead of the truly best one (0 = perfect pick)."""
    est, tru = np.asarray(estimates, float), np.asarray(truths, float)
    if est.shape != tru.shape or est.size == 0:
        raise InputError(
            f"estimates and truths must be non-empty and of one shape; got {est.shape}, {tru.shape}"
        )
    return float(tru.max() - tru[int(np.argmax(est))])


def ranks(values: np.ndarray) -> np.ndarray:
    """Rank 1 = largest value (ties share the smallest rank)."""
    v = np.asarray(values, float)
    return stats.rankdata(-v, method="min").astype(int)


# ------------------------------------------------------------ estimator choice from the log
@dataclass(frozen=True)
class Check:
    """Whether one estimator passed the checks a log allows (:func:`check_estimators`).

    Attributes:
        estimator: its label.
        passed: True when every check passed.
        reasons: why it failed, or notes on what could not be checked.
        logger_error: its estimate of the logging policy minus the value observed
            on-policy (nan when not checked); logger_low, logger_high: that difference's
            interval.
    """

    estimator: str
    passed: bool
    reasons: tuple[str, ...] = ()
    logger_error: float = math.nan
    logger_low: float = math.nan
    logger_high: float = math.nan


@dataclass(frozen=True)
class Choice:
    """The estimator chosen from the log (:func:`choose_estimator`).

    Attributes:
        estimator: the chosen label, or None when no estimator passed its checks (or no
            interval was computed).
        method: ``"slope"`` (chosen by :func:`slope`), ``"only candidate"``, or
            ``"none"``.
        order: the candidates (estimators that passed), by decreasing interval width.
        checks: one :class:`Check` per estimator.
        reasons: the choice explained, one sentence each.
        logger: the target recognised as the logging policy (every weight 1), or None.
        on_policy: the logger's value observed in the log (nan without it).
    """

    estimator: str | None
    method: str
    order: tuple[str, ...]
    checks: tuple[Check, ...]
    reasons: tuple[str, ...]
    logger: str | None = None
    on_policy: float = math.nan

    @property
    def passed(self) -> tuple[str, ...]:
        """The estimators that passed every check, in table order."""
        return tuple(c.estimator for c in self.checks if c.passed)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``metrics.json``)."""
        d = asdict(self)
        d["passed"] = list(self.passed)
        return d


def check_estimators(
    estimates: Sequence[Estimate],
    *,
    uses_weights: Callable[[str], bool],
    value_range: tuple[float, float],
    logger: str | None = None,
    logger_diff: Callable[[str], Interval] | None = None,
    min_ess: float = GATE_MIN_ESS,
) -> list[Check]:
    """The checks every estimator must pass before it may be chosen:

    1. an informative interval for every policy (finite, of positive width: an IS
       estimate of a greedy target that is exactly 0 with [0, 0] is not one);
    2. every value inside the feasible ``value_range``;
    3. for estimators that use importance weights, an ESS of at least ``min_ess``
       (:data:`~offrec.ope.trust.GATE_MIN_ESS`: never single digits) for some policy
       other than the logger; its estimates of the policies below it are not used
       (:func:`usable`: SLOPE skips them and the gate never rests on them), and the
       check says so;
    4. the logging policy's own value, which the log reveals on-policy: the interval of
       ``logger_diff(estimator)`` (its estimate of ``logger`` minus the on-policy value)
       must contain 0. Not run without a ``logger`` (the check then says so).
    """
    by_est: dict[str, list[Estimate]] = {}
    for e in estimates:
        by_est.setdefault(e.estimator, []).append(e)
    out = []
    for name, rows in by_est.items():
        reasons: list[str] = []
        for r in rows:
            if not (math.isfinite(r.low) and math.isfinite(r.high) and r.high > r.low):
                reasons.append(
                    f"no informative interval for {r.policy} ({r.value:.4g}, {r.low:.4g} to "
                    f"{r.high:.4g})"
                )
            if r.value == r.value and range_warning(r.value, value_range):
                reasons.append(f"value for {r.policy} outside the feasible range: {r.value:.4g}")
        scored = [r for r in rows if r.policy != logger]
        low = [r for r in scored if not usable(r, uses_weights(name), min_ess)]
        if low and len(low) == len(scored):
            reasons.append(
                "effective sample size below "
                f"{min_ess:g} for every policy ({', '.join(f'{r.ess:.1f}' for r in low)})"
            )
        notes = [
            f"effective sample size {r.ess:.1f} for {r.policy} (< {min_ess:g}): not used"
            for r in (low if len(low) < len(scored) else [])
        ]
        d = None
        if logger is not None and logger_diff is not None and logger in {r.policy for r in rows}:
            d = logger_diff(name)
            if not d.low <= 0 <= d.high:
                reasons.append(
                    f"misses the logging policy's own value: off by {d.value:+.4g} "
                    f"(interval {d.low:+.4g} to {d.high:+.4g} excludes 0)"
                )
        if d is None:
            notes.append("not checked against the logger's on-policy value")
        out.append(
            Check(
                name,
                not reasons,
                tuple(reasons + notes),
                *((d.value, d.low, d.high) if d is not None else (math.nan,) * 3),
            )
        )
    return out


def usable(estimate: Estimate, uses_weights: bool, min_ess: float = GATE_MIN_ESS) -> bool:
    """Whether an estimate may inform a choice or a decision: not one that rests on
    importance weights with an ESS below ``min_ess``."""
    return not (uses_weights and estimate.ess == estimate.ess and estimate.ess < min_ess)


def slope(
    candidates: Sequence[str],
    estimates: Sequence[Estimate],
    *,
    width: float = SLOPE_WIDTH,
    use: Callable[[Estimate], bool] | None = None,
) -> tuple[str | None, tuple[str, ...], str]:
    r"""SLOPE (Su, Srinath & Krishnamurthy, 2020, *Adaptive estimator selection for
    off-policy evaluation*, ICML), over several target policies at once.

    Order the candidates by decreasing confidence width (variance falls, bias may grow):
    :math:`\mathrm{cnf}_1 \ge \dots \ge \mathrm{cnf}_M`, with :math:`\mathrm{cnf}_j` the
    half-width of estimator ``j``'s interval averaged over the policies. Choose

    .. math::

        \hat\imath = \max\Big\{ i : \bigcap_{j \le i} \big[\hat V_j - w\,\mathrm{cnf}_j,\;
        \hat V_j + w\,\mathrm{cnf}_j\big] \ne \emptyset \text{ for every policy} \Big\}

    (``w`` = :data:`~offrec.ope.trust.SLOPE_WIDTH` = 2 as in the paper, with the
    policy's own half-widths): the narrowest estimator still consistent with every wider,
    less biased one. Estimates that ``use`` rejects (e.g. an ESS in single digits) are
    left out: they neither constrain nor are constrained. Returns the chosen label (None
    without candidates), the order, and why the walk stopped.
    """
    ok = use or (lambda e: True)
    rows = {(e.estimator, e.policy): e for e in estimates if ok(e)}
    policies = list(dict.fromkeys(e.policy for e in estimates))
    cands = [c for c in candidates if any((c, p) in rows for p in policies)]
    if not cands:
        return None, (), "no candidate has a usable estimate"

    def half(c: str) -> float:
        return float(
            np.mean([(rows[c, p].high - rows[c, p].low) / 2 for p in policies if (c, p) in rows])
        )

    order = tuple(sorted(cands, key=lambda c: -half(c)))  # stable: ties keep table order
    lo = np.full(len(policies), -np.inf)
    hi = np.full(len(policies), np.inf)
    chosen, why = order[0], "every candidate is consistent with the wider ones"
    for c in order:
        has = np.array([(c, p) in rows for p in policies])
        r = [rows.get((c, p)) for p in policies]
        h = np.array([(x.high - x.low) / 2 if x is not None else np.inf for x in r])
        v = np.array([x.value if x is not None else 0.0 for x in r])
        lo = np.where(has, np.maximum(lo, v - width * h), lo)
        hi = np.where(has, np.minimum(hi, v + width * h), hi)
        if (lo > hi).any():
            p = policies[int(np.argmax(lo - hi))]
            why = (
                f"{c} is inconsistent with the wider estimators for {p} (no common value "
                f"within {width:g} half-widths)"
            )
            break
        chosen = c
    return chosen, order, why


def choose_estimator(result: ScoredLog) -> Choice:
    """The estimator for this log, chosen from the log alone: :func:`check_estimators`
    (the logging policy is recognised as the target whose weights are all 1), then
    :func:`slope` over those that passed."""
    from offrec.ope.estimators import ESTIMATORS
    from offrec.ope.sequential import SESSION_CLASSES

    registry: Mapping[str, Any] = ESTIMATORS if result.mode == "bandit" else SESSION_CLASSES

    def weighted(label: str) -> bool:
        cls = registry.get(label.split("(")[0])
        return True if cls is None else bool(cls.uses_weights())

    estimates = result.estimates
    loggers = result.on_policy_targets()
    logger = loggers[0] if loggers else None
    on = result.on_policy()
    if result.method is None:
        checks = tuple(Check(e, False, ("no interval computed",)) for e in _labels(estimates))
        return Choice(
            None,
            "none",
            (),
            checks,
            ("no intervals were computed: no choice",),
            logger,
            math.nan if on is None else on.value,
        )
    checks = tuple(
        check_estimators(
            estimates,
            uses_weights=weighted,
            value_range=result.value_range,
            logger=logger,
            logger_diff=(lambda e: result.check_against_on_policy(logger, e)) if logger else None,
        )
    )
    passed = [c.estimator for c in checks if c.passed]
    reasons = [f"{c.estimator} fails: {'; '.join(c.reasons)}" for c in checks if not c.passed]
    if logger is None:
        reasons.append(
            "no target is the logging policy (every weight 1): the estimators were not "
            "checked against the value the log reveals on-policy"
        )
    elif on is not None:
        reasons.append(
            f"{logger} is the logging policy; its value observed on-policy is {on.value:.4g} "
            f"({on.low:.4g} to {on.high:.4g}), and each estimator's estimate of it must agree"
        )
    if not passed:
        reasons.append("no estimator passed its checks: nothing can be trusted on this log")
        return Choice(
            None, "none", (), checks, tuple(reasons), logger, math.nan if on is None else on.value
        )
    chosen, order, why = slope(
        passed,
        [e for e in estimates if e.policy != logger],
        use=lambda e: usable(e, weighted(e.estimator)),
    )
    if chosen is None:  # only the logger was scored
        chosen, order, why = passed[0], tuple(passed), "only the logging policy was scored"
    method = "slope" if len(order) > 1 else "only candidate"
    reasons.append(
        f"chosen: {chosen}, the narrowest of {', '.join(order)} (by decreasing width) "
        f"consistent with the wider ones (SLOPE); {why}"
        if len(order) > 1
        else f"chosen: {chosen}, the only estimator that passed"
    )
    return Choice(
        chosen, method, order, checks, tuple(reasons), logger, math.nan if on is None else on.value
    )


def _labels(estimates: Sequence[Estimate]) -> list[str]:
    return list(dict.fromkeys(e.estimator for e in estimates))
