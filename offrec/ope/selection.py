"""Selection: of policies by their estimates (would a user who trusts them pick the right
policy?), and of the estimator itself, from the log (:func:`choose_estimator`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from scipy import stats

from offrec.core.errors import InputError
from offrec.core.validation import check_scalar
from offrec.ope.intervals import Interval
from offrec.ope.trust import GATE_MIN_ESS, SLOPE_WIDTH, Estimate, range_warning

if TYPE_CHECKING:
    from offrec.ope.sequential import SessionFits


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
        held_out: the held-out checks (:func:`offrec.ope.held_out.held_out_checks`) that were run, if any.
        unusable: the ``(estimator, policy)`` estimates that must not inform a choice or a
            decision (:func:`usable`: weights with a single-digit ESS, or whose tail the log
            has not sampled, :func:`tail_reason`); SLOPE skips them and the gate neither
            rests on them nor lets them vote.
    """

    estimator: str | None
    method: str
    order: tuple[str, ...]
    checks: tuple[Check, ...]
    reasons: tuple[str, ...]
    logger: str | None = None
    on_policy: float = math.nan
    held_out: tuple[HeldOutCheck, ...] = ()
    unusable: tuple[tuple[str, str], ...] = ()

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
    tails: Mapping[str, str] | Callable[[str], Mapping[str, str]] | None = None,
) -> list[Check]:
    """The checks every estimator must pass before it may be chosen:

    1. an informative interval for every policy (finite, of positive width: an IS
       estimate of a greedy target that is exactly 0 with [0, 0] is not one);
    2. every value inside the feasible ``value_range``;
    3. for estimators that use importance weights, an ESS of at least ``min_ess``
       (:data:`~offrec.ope.trust.GATE_MIN_ESS`: never single digits), and weights whose
       tail the log has sampled (``tails``: ``{policy: reason}`` from
       :func:`tail_reason`), for some policy other than the logger; its estimates of the
       other policies are not used (:func:`usable`: SLOPE skips them and the gate never
       rests on them), and the check says so; ``tails`` may be given per estimator (a
       function of its label: :func:`choose_estimator` passes only the tails that matter
       for that estimator's intervals);
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
        weighted = uses_weights(name)
        tail = tails(name) if callable(tails) else (tails or {})
        low = [r for r in scored if not usable(r, weighted, min_ess)]
        unsampled = [r for r in scored if weighted and r.policy in tail and r not in low]
        if low and len(low) == len(scored):
            reasons.append(
                "effective sample size below "
                f"{min_ess:g} for every policy ({', '.join(f'{r.ess:.1f}' for r in low)})"
            )
        elif len(low) + len(unsampled) == len(scored) and unsampled:
            reasons.append(
                "no policy has weights it may use: "
                + "; ".join(
                    [f"{r.policy}: effective sample size {r.ess:.1f}" for r in low]
                    + [f"{r.policy}: {tail[r.policy]}" for r in unsampled]
                )
            )
        notes = [
            f"effective sample size {r.ess:.1f} for {r.policy} (< {min_ess:g}): not used"
            for r in (low if len(low) < len(scored) else [])
        ] + [
            f"{r.policy}: {tail[r.policy]}: not used"
            for r in (unsampled if len(low) + len(unsampled) < len(scored) else [])
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


def usable(
    estimate: Estimate,
    uses_weights: bool,
    min_ess: float = GATE_MIN_ESS,
    tails: Mapping[str, str] | None = None,
) -> bool:
    """Whether an estimate may inform a choice or a decision: not one that rests on
    importance weights with an ESS below ``min_ess``, or on weights whose tail the log has
    not sampled (its policy in ``tails``, :func:`tail_reason`)."""
    if not uses_weights:
        return True
    if tails and estimate.policy in tails:
        return False
    return not (estimate.ess == estimate.ess and estimate.ess < min_ess)


def tail_reason(policy: str, mean: Interval) -> str | None:
    r"""Why ``policy``'s importance-weighted intervals are not honest, or None.

    Under the logger, every (whole-session) importance weight has mean
    :math:`E_{\pi_0}[w] = E_{\pi_0}[\prod_t \pi(a_t|x_t)/\pi_0(a_t|x_t)] = 1`. When the
    ``mean`` weight's interval (:meth:`offrec.ope.OPEResult.weight_mean`) excludes 1, the
    mass that brings it to 1 sits in weights the log has not drawn (a heavy tail): the
    weighted estimates are then biased toward 0 or toward their reward model, and their
    intervals, computed from the weights that were drawn, are too narrow. SLOPE assumes
    the wider intervals are honest (Su et al., 2020); such an estimate must not veto a
    narrower estimator, nor be one (issue 26: on RECEnv, `pdis` put an epsilon-greedy
    target at 1.15 clicks per session, truth 5.32, interval 0.58 to 1.72, with an ESS of
    38 of 2,975 sessions, and stopped the SLOPE walk). A diagnostic of the whole-session
    weights the estimators read; per-decision estimators read partial products, whose tail
    is at most as heavy.
    """
    if not math.isfinite(mean.low) or mean.low <= 1.0 <= mean.high:
        return None
    return (
        f"its importance weights average {mean.value:.3g} ({mean.low:.3g} to "
        f"{mean.high:.3g}), not 1: the log has not sampled their tail"
    )


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


def choose_estimator(result: ScoredLog, held_out: Sequence[HeldOutCheck] = ()) -> Choice:
    """The estimator for this log, chosen from the log alone: :func:`check_estimators`
    (the logging policy is recognised as the target whose weights are all 1) and the
    ``held_out`` checks (:func:`offrec.ope.held_out.held_out_checks`; an estimator failing one fails), then
    :func:`slope` over those that passed."""
    from offrec.ope.estimators import ESTIMATORS
    from offrec.ope.sequential import SESSION_CLASSES

    registry: Mapping[str, Any] = ESTIMATORS if result.mode == "bandit" else SESSION_CLASSES

    def weighted(label: str) -> bool:
        cls = registry.get(label.split("(")[0])
        return True if cls is None else bool(cls.uses_weights())

    def grouped(label: str) -> bool:
        """Whether the estimator weights by item groups (MIPS, OffCEM): the item-level
        weights' tail (:func:`weight_tails`) says nothing of its group-level weights."""
        return bool(getattr(registry.get(label.split("(")[0]), "needs_groups", False))

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
    item_tails = weight_tails(result, [e.policy for e in estimates if e.policy != logger])
    scale = max(abs(v) for v in result.value_range)
    by_key = {(e.estimator, e.policy): e for e in estimates}
    mean_of = getattr(result, "weight_mean", None)  # an OPEResult has it
    bias = {p: (missing_mass(mean_of(p)) if mean_of else math.inf) * scale for p in item_tails}
    tails_by_label: dict[str, dict[str, str]] = {}

    def tails_of(label: str) -> dict[str, str]:
        """The unsampled tails that matter for ``label``'s intervals: not for group
        weights; for item weights when the bias the missing weight mass can carry,
        ``missing_mass x scale``, exceeds the estimate's half-width (a small shortfall
        inside a wide interval leaves it honest). Computed once per label."""
        if label in tails_by_label:
            return tails_by_label[label]
        out: dict[str, str] = {}
        for p, why in ({} if grouped(label) else item_tails).items():
            e = by_key.get((label, p))
            half = (e.high - e.low) / 2 if e is not None else math.nan
            if not bias[p] <= half:
                out[p] = (
                    f"{why} (up to {bias[p]:.3g} of the value may lie there, half-width {half:.3g})"
                )
        tails_by_label[label] = out
        return out

    checks = tuple(
        check_estimators(
            estimates,
            uses_weights=weighted,
            value_range=result.value_range,
            logger=logger,
            logger_diff=(lambda e: result.check_against_on_policy(logger, e)) if logger else None,
            tails=tails_of,
        )
    )
    unusable = tuple(
        (e.estimator, e.policy)
        for e in estimates
        if e.policy != logger and not usable(e, weighted(e.estimator), tails=tails_of(e.estimator))
    )
    checks = tuple(_with_held_out(c, held_out) for c in checks)
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
            None,
            "none",
            (),
            checks,
            tuple(reasons),
            logger,
            math.nan if on is None else on.value,
            tuple(held_out),
            unusable,
        )
    chosen, order, why = slope(
        passed,
        [e for e in estimates if e.policy != logger],
        use=lambda e: usable(e, weighted(e.estimator), tails=tails_of(e.estimator)),
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
    if held_out:
        n_fail = sum(not h.passed for h in held_out)
        reasons.append(
            f"held-out checks (values the log reveals on-policy on half of the sessions): "
            f"{len(held_out) - n_fail} passed, {n_fail} failed"
        )
    return Choice(
        chosen,
        method,
        order,
        checks,
        tuple(reasons),
        logger,
        math.nan if on is None else on.value,
        tuple(held_out),
        unusable,
    )


def missing_mass(mean: Interval) -> float:
    r"""The importance-weight mass the log is known to miss (or to hold in excess):
    :math:`\max(0, 1 - \bar w_{high}, \bar w_{low} - 1)` for the mean weight's interval
    (:meth:`offrec.ope.OPEResult.weight_mean`; :math:`E_{\pi_0}[w] = 1`). The unsampled
    tail's share of a value is at most this mass times the largest reward per unit."""
    if not (math.isfinite(mean.low) and math.isfinite(mean.high)):
        return 0.0
    return max(0.0, 1.0 - mean.high, mean.low - 1.0)


def weight_tails(result: Any, policies: Sequence[str]) -> dict[str, str]:
    """``{policy: reason}`` for the ``policies`` whose whole-session weights do not average
    to 1 (:func:`tail_reason`), from ``result.weight_mean`` when the result has it (an
    :class:`~offrec.ope.OPEResult` does); empty otherwise."""
    mean = getattr(result, "weight_mean", None)
    if mean is None:
        return {}
    out = {}
    for p in dict.fromkeys(policies):
        try:
            iv = mean(p)
        except KeyError:  # a policy scored without weights
            continue
        why = tail_reason(p, iv)
        if why is not None:
            out[p] = why
    return out


def _with_held_out(check: Check, held_out: Sequence[HeldOutCheck]) -> Check:
    """``check`` with the reasons of the failed held-out checks of its estimator."""
    fails = [h.reason for h in held_out if h.estimator == check.estimator and not h.passed]
    if not fails:
        return check
    return Check(
        check.estimator,
        False,
        (*fails, *check.reasons),
        check.logger_error,
        check.logger_low,
        check.logger_high,
    )


def rechoose(result: Any, held_out: Sequence[HeldOutCheck]) -> Any:
    """Choose the estimator of an :class:`~offrec.ope.OPEResult` again with the
    ``held_out`` checks (:func:`choose_estimator`), make the chosen one the recommended
    one (``result.recommended``, the table's ``recommended`` column when present) and
    re-flag the estimates that disagree with it. Returns ``result``, updated."""
    from dataclasses import replace

    import pandas as pd

    from offrec.ope.trust import disagreement_warnings

    result.choice = choose_estimator(result, held_out)
    if result.choice.estimator is not None:
        result.recommended = result.choice.estimator
    rows = result.estimates
    flagged = disagreement_warnings(rows, result.recommended)
    rows = [replace(r, warnings=w) for r, w in zip(rows, flagged, strict=True)]
    cols = list(result.table.columns)
    table = pd.DataFrame([r.row() for r in rows])
    result.table = table[[c for c in cols if c in table.columns]]
    if "recommended" in cols:
        result.table["recommended"] = result.table["estimator"] == result.recommended
    return result


def _labels(estimates: Sequence[Estimate]) -> list[str]:
    return list(dict.fromkeys(e.estimator for e in estimates))


# ------------------------------------------------- held-out checks: values the log reveals
MIN_WIDTH_RATIO = 0.2
"""An estimator's interval for the logging policy narrower than this share of the
on-policy interval's width (same sessions) is flagged: no estimate of the logger's value
can be much more certain than the log's own sample mean of it unless its interval leaves
out the uncertainty of a fitted model (linear FQE's intervals, issue 26: near-zero width,
almost never covering)."""
ACCEPT_BUDGET = 10.0
r"""The perturbation of the logger in :func:`perturbed_loggers` is sized so that the
rejection bound is :math:`M^H \approx` this: about one held-out session in ten is
accepted."""


class _DistPolicy(Protocol):
    n_actions: int

    def action_dist(self, obs: np.ndarray) -> np.ndarray: ...


@dataclass
class Perturbed:
    r"""The logging policy moved toward (``delta > 0``) or away from (``delta < 0``) its
    own mode :math:`m(x) = \arg\max_a \pi_0(a|x)`:

    .. math:: \pi_\delta(a|x) = \pi_0(a|x)\,\big(1 + \delta\,c(x, a)\big),\qquad
              c(x, a) = [a = m(x)] - \pi_0(m(x)|x),

    a distribution for :math:`|\delta| \le 1` (:math:`\sum_a \pi_0 c = 0`, :math:`|c| \le
    1`) whose ratio to the logger is bounded, :math:`\pi_\delta / \pi_0 \le 1 + |\delta|`,
    so its value can be measured on-policy from the logger's own sessions by rejection
    sampling (:func:`rejection_value`). Shapes: ``action_dist`` (n, d) -> (n, A).
    """

    base: _DistPolicy
    delta: float

    def __post_init__(self) -> None:
        check_scalar(self.delta, "delta", float, min=-1.0, max=1.0)
        self.n_actions = int(self.base.n_actions)

    def action_dist(self, obs: np.ndarray) -> np.ndarray:
        p = np.asarray(self.base.action_dist(obs), np.float64)
        rows = np.arange(p.shape[0])
        top = p.argmax(axis=1)
        pm = p[rows, top]
        # c = -p_m off the mode and 1 - p_m at it: one factor per row, then the mode's
        out = p * (1.0 + self.delta * -pm)[:, None]
        out[rows, top] = pm * (1.0 + self.delta * (-pm + 1.0))
        out /= out.sum(axis=1, keepdims=True)  # exact up to rounding
        return out

    def sample(self, obs: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        from offrec.core.policy import sample_from_dist

        return sample_from_dist(self.action_dist(obs), rng)

    def max_ratio(self, obs: np.ndarray) -> float:
        r""":math:`\max_{x \in obs, a} \pi_\delta(a|x) / \pi_0(a|x)`
        :math:`= \max_x \max(1 + \delta(1 - p_m), 1 - \delta p_m)`, with
        :math:`p_m = \pi_0(m(x)|x)`."""
        pm = np.asarray(self.base.action_dist(obs), np.float64).max(axis=1)
        return float(np.max(np.maximum(1 + self.delta * (1 - pm), 1 - self.delta * pm)))


@dataclass(frozen=True)
class OnPolicyValue:
    """A mean session return with its t interval, from ``n`` sessions."""

    value: float
    low: float
    high: float
    n: int


def _on_policy_interval(returns: np.ndarray, alpha: float) -> OnPolicyValue:
    m = returns.size
    v = float(returns.mean()) if m else math.nan
    se = float(returns.std(ddof=1) / np.sqrt(m)) if m > 1 else math.nan
    half = float(stats.t.ppf(1 - alpha / 2, max(m - 1, 1))) * se
    return OnPolicyValue(v, v - half, v + half, m)


def session_returns(data: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(sessions, returns)``: the sorted session ids and each one's summed reward."""
    sessions, inv = np.unique(np.asarray(data.session_id), return_inverse=True)
    ret = np.bincount(inv, weights=np.asarray(data.reward, np.float64), minlength=sessions.size)
    return sessions, ret


def rejection_value(
    data: Any,
    target: Perturbed,
    *,
    seed: int = 0,
    alpha: float = 0.05,
    bound: float | None = None,
) -> tuple[OnPolicyValue, np.ndarray]:
    r"""The on-policy value of ``target`` from the logger's sessions, by rejection sampling
    of whole sessions (von Neumann, 1951).

    Session :math:`i` (steps :math:`t < T_i`) is accepted with probability

    .. math:: \alpha_i = \frac{\prod_{t} \pi_\delta(a_{it}|x_{it}) / p_{it}}{M^{H}}
              \le 1,

    :math:`p_{it}` the logged propensity, :math:`H` the horizon (the longest session) and
    :math:`M` the per-step ratio bound (:meth:`Perturbed.max_ratio` over the log's
    contexts, or ``bound``). The accepted sessions are a sample of sessions of
    :math:`\pi_\delta` (the density ratio of whole sessions is the product of the policy
    ratios; the user's dynamics cancel), so the mean of their returns is an on-policy
    estimate with a plain t interval: no importance weight enters it. About :math:`m /
    M^H` of :math:`m` sessions are accepted. The bound over the log's contexts is an
    empirical one (it does not see contexts the log never reached).

    Returns the interval and the (m,) accepted mask over the sorted session ids.
    """
    sessions, inv = np.unique(np.asarray(data.session_id), return_inverse=True)
    dist = target.action_dist(np.asarray(data.context))
    act = np.asarray(data.action)
    ratio = dist[np.arange(act.size), act] / np.asarray(data.pscore, np.float64)
    M = target.max_ratio(np.asarray(data.context)) if bound is None else float(bound)
    H = int(np.asarray(data.step).max()) + 1
    log_acc = np.bincount(inv, weights=np.log(np.maximum(ratio, 1e-300)), minlength=sessions.size)
    log_acc -= H * np.log(M)
    u = np.random.default_rng(np.random.SeedSequence([seed, 26])).random(sessions.size)
    accepted = np.log(np.maximum(u, 1e-300)) < np.minimum(log_acc, 0.0)
    _, ret = session_returns(data)
    return _on_policy_interval(ret[accepted], alpha), accepted


def perturbed_loggers(
    logger: _DistPolicy, data: Any, budget: float = ACCEPT_BUDGET
) -> list[Perturbed]:
    r"""Two perturbations of the logger, one sharper and one flatter, each sized so that
    its rejection bound :math:`M^H` is about ``budget`` (at most :math:`|\delta| = 1`):
    sharper, :math:`M = 1 + \delta(1 - p_{min})`; flatter, :math:`M = 1 + |\delta| p_{max}`,
    with :math:`p_{min}, p_{max}` the smallest and largest mode probabilities
    :math:`\pi_0(m(x)|x)` on the log's contexts."""
    H = int(np.asarray(data.step).max()) + 1
    pm = np.asarray(logger.action_dist(np.asarray(data.context))).max(axis=1)
    room = budget ** (1.0 / H) - 1.0
    sharp = min(1.0, room / max(1.0 - float(pm.min()), 1e-9))
    flat = min(1.0, room / float(pm.max()))
    return [Perturbed(logger, sharp), Perturbed(logger, -flat)]


@dataclass(frozen=True)
class HeldOutCheck:
    """One estimator against one value the log reveals on held-out sessions
    (:func:`offrec.ope.held_out.held_out_checks`).

    Attributes:
        estimator, target: the estimator and the policy checked (the logger, a perturbed
            logger, or ``"model: logger"`` for ``mb``'s model check).
        estimate, low, high: its estimate (on the fitting half) and interval.
        truth, truth_low, truth_high: the on-policy value from the held-out half.
        n_sessions: held-out sessions behind ``truth`` (accepted ones for a perturbed
            logger).
        passed: whether the difference's interval contains 0 (and the interval is not
            implausibly narrow); reason: why not.
    """

    estimator: str
    target: str
    estimate: float
    low: float
    high: float
    truth: float
    truth_low: float
    truth_high: float
    n_sessions: int
    passed: bool
    reason: str = ""


def _compare(
    estimator: str,
    target: str,
    e: Estimate,
    truth: OnPolicyValue,
    alpha: float,
    narrow: bool,
    n_checks: int = 1,
) -> HeldOutCheck:
    """``e`` (a ``1 - alpha`` interval) against ``truth`` (the same level): the difference
    must lie within the combined half-width at level ``alpha / n_checks`` (Bonferroni over
    an estimator's ``n_checks`` held-out checks)."""
    z = float(stats.norm.ppf(1 - alpha / 2))
    se_e = (e.high - e.low) / (2 * z)
    se_t = (truth.high - truth.low) / (2 * z)
    diff = e.value - truth.value
    z_check = float(stats.norm.ppf(1 - alpha / (2 * n_checks)))
    half = z_check * math.hypot(se_e, se_t) if math.isfinite(se_e) else math.nan
    reason = ""
    if not math.isfinite(e.value) or not math.isfinite(half):
        reason = f"no finite estimate or interval of {target}"
    elif abs(diff) > half:
        reason = (
            f"misses the held-out on-policy value of {target}: {e.value:.4g} against "
            f"{truth.value:.4g} ({truth.low:.4g} to {truth.high:.4g}, {truth.n} sessions), off "
            f"by {diff:+.4g} beyond the combined interval ±{half:.3g}"
        )
    elif narrow and (e.high - e.low) < MIN_WIDTH_RATIO * (truth.high - truth.low):
        reason = (
            f"interval for {target} implausibly narrow: width {e.high - e.low:.3g} is under "
            f"{MIN_WIDTH_RATIO:g} of the on-policy interval's {truth.high - truth.low:.3g}"
        )
    return HeldOutCheck(
        estimator,
        target,
        e.value,
        e.low,
        e.high,
        truth.value,
        truth.low,
        truth.high,
        truth.n,
        not reason,
        reason,
    )


def model_check(
    fit: Any,
    held: Any,
    logger: _DistPolicy,
    *,
    seed: int = 0,
    alpha: float = 0.05,
    n_checks: int = 1,
    fits: SessionFits | None = None,
) -> HeldOutCheck:
    r"""``mb``'s model check: the session model fitted on ``fit`` rolls the logger out from
    each held-out session's first context (4 rollouts each); paired on the session,
    :math:`d_i = \tilde G_i - G_i` (simulated minus logged return) must have an interval
    that contains 0. It fails where the model class is wrong (a non-linear observation
    update, a non-logistic reward law) even when the rollouts' spread looks small.

    The interval carries both sources of noise: the held-out sessions' (the paired
    :math:`s^2_d / m`) and the model's own fitting noise, which every held-out session
    shares and which no amount of held-out data averages away: the refits of ``mb``'s
    interval (:class:`~offrec.ope.sequential.SessionFits`: Poisson-bootstrap session weights
    on ``fit``), rolled out from the same held-out starts with common random numbers,
    :math:`D_b = \bar{\tilde G}_b - \bar{\tilde G}`:

    .. math:: \bar d \pm t_{B}\,\sqrt{s^2_d / m + \tfrac1B \textstyle\sum_b D_b^2}.

    Without the second term a model fitted on a small half is refused for its sampling
    error, not for a wrong model class (issue 26: on RECEnv the check refused ``mb`` by
    -0.27 clicks per session while ``mb``'s own interval, which carries the term, covered
    the held-out value). ``n_checks``: the t quantile is taken at ``alpha / n_checks``
    (Bonferroni over the estimator's held-out checks, :func:`offrec.ope.held_out.held_out_checks`).
    ``fits``: the session models already fitted on ``fit`` with ``seed`` (e.g. by the
    evaluation of the fitting half), reused instead of fitted again."""
    from offrec.ope.model_based import rollout_values
    from offrec.ope.sequential import FirstCallMemo, SessionFits
    from offrec.ope.session_data import session_structure

    if fits is None:
        fits = SessionFits(fit, seed=seed)
    elif fits.data is not fit or fits.seed != seed:
        raise InputError(
            f"fits must be the session models of fit with seed {seed}; got "
            f"{'other data' if fits.data is not fit else 'the same data'} with seed {fits.seed}"
        )
    model = fits.session_model()
    st = session_structure(held)
    f0 = st.first_row
    start = (held.context[f0], st.recent[f0], st.step[f0])

    def rng() -> np.random.Generator:  # common random numbers for the model and its refits
        return np.random.default_rng(np.random.SeedSequence([seed, 27]))

    fn = FirstCallMemo(logger.action_dist)  # every rollout starts on the same contexts
    sim = rollout_values(model, fn, *start, rng=rng())
    refits = np.array(
        [rollout_values(m, fn, *start, rng=rng()).mean() for m in fits.refit_models()[1]]
    )
    fit_var = float(np.mean((refits - sim.mean()) ** 2))
    _, ret = session_returns(held)
    d = sim - ret
    m = d.size
    se = math.sqrt(d.var(ddof=1) / m + fit_var) if m > 1 else math.nan
    half = float(stats.t.ppf(1 - alpha / (2 * n_checks), refits.size)) * se  # Bonferroni
    dv = float(d.mean())
    obs = _on_policy_interval(ret, alpha)
    reason = ""
    if not abs(dv) <= half:
        reason = (
            f"its model's simulated returns of the logger miss the held-out sessions' returns: "
            f"{sim.mean():.4g} against {ret.mean():.4g} ({m} sessions), off by {dv:+.4g} "
            f"(interval {dv - half:+.4g} to {dv + half:+.4g}, with the model's fitting noise "
            f"±{float(stats.t.ppf(1 - alpha / (2 * n_checks), refits.size)) * math.sqrt(fit_var):.3g})"
        )
    return HeldOutCheck(
        "mb",
        "model: logger",
        float(sim.mean()),
        float(sim.mean()) - half,
        float(sim.mean()) + half,
        obs.value,
        obs.low,
        obs.high,
        obs.n,
        not reason,
        reason,
    )
