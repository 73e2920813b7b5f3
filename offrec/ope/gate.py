r"""The decision gate: which deployable policy to ship, or why the log cannot tell.

:func:`decide` picks, among the **deployable** policies only (learned or hand-made;
oracles need the hidden user state and the logger is what runs today), the one with the
highest estimate by the chosen estimator (:func:`offrec.ope.selection.choose_estimator`,
else the table's recommended one), and **recommends it only when**

1. the logging policy was scored, and the pick's **paired** lower bound of the lift
   :math:`V(\pi) - V(\pi_b)` is above 0;
2. the estimators that passed the checks agree on the sign of that lift (each one's
   point difference is positive; estimates resting on a single-digit ESS do not vote);
3. the estimate does not rest on an effective sample size in single digits
   (:data:`~offrec.ope.trust.GATE_MIN_ESS`), nor on weights whose tail the log has not
   sampled (:func:`offrec.ope.selection.tail_reason`), for estimators that use
   importance weights;
4. some estimator passed the checks (when they were run).

Otherwise the headline says "Cannot tell: run an online test" and why (or "Keep the
logging policy" when the best candidate is worse than the logger at the interval's
level and some estimator passed the checks: issue 26's study kept the logger on an
estimate no check vouched for, while a policy was truly better). The headline never names a policy as recommended next to a sentence saying it
is worse than the logger.

Comparisons are **paired**: both policies are scored on the same logged rows, so their
estimates share most of their noise and the difference

.. math::

    \hat\Delta = \hat V(\pi_a) - \hat V(\pi_b) = \frac1n \sum_i (\psi_{a,i} - \psi_{b,i}),
    \qquad \widehat{se}(\hat\Delta) = \frac{\operatorname{sd}_i(\psi_{a,i} - \psi_{b,i})}{\sqrt n}

is known more precisely than the two intervals suggest (:math:`\psi_{\cdot,i}` are the
per-row (per-session) contributions, linearized for the self-normalized estimators).
The interval comes from the OPE itself (:meth:`offrec.ope.OPEResult.compare`; for the
estimators fitted on the whole log, :func:`offrec.ope.sequential.paired_difference`) or from
per-row contributions; only when neither is available is the difference approximated as
if the estimates were independent, :math:`\widehat{se}^2 \approx se_a^2 + se_b^2` (``se``
from the ``stderr`` column, else :math:`(high - low) / (2 z)`): conservative when, as
usual, the estimates are positively correlated. Every comparison says which it used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from offrec.core.errors import InputError
from offrec.core.fmt import format_number
from offrec.ope.selection import Choice
from offrec.ope.trust import GATE_MIN_ESS, Estimate, disagreement_sentences, recommended_for

ROLES: tuple[str, ...] = ("learned", "hand-made", "logger", "oracle")
"""What a policy is. Only ``learned`` and ``hand-made`` policies can be recommended."""
DEPLOYABLE: frozenset[str] = frozenset({"learned", "hand-made"})

PAIRED = "paired on the same rows"
INDEPENDENT = "independent approximation"

RECOMMEND = "recommend"
KEEP_LOGGER = "keep the logger"
CANNOT_TELL = "cannot tell"
NOTHING = "nothing to recommend"
VERDICTS: tuple[str, ...] = (RECOMMEND, KEEP_LOGGER, CANNOT_TELL, NOTHING)


def recommended_estimator(table: pd.DataFrame, mode: str) -> str:
    """The estimator for the headline.

    In order: the estimator the OPE table recommends (a boolean ``recommended`` column,
    a string ``recommended`` column naming one, or ``table.attrs["recommended"]``), else
    :func:`offrec.ope.trust.recommended_for` over the table's estimators.
    """
    present = list(dict.fromkeys(table["estimator"].astype(str)))
    if not present:
        raise InputError("table must have at least one row to recommend an estimator; got 0")
    named: Any = table.attrs.get("recommended")
    if "recommended" in table.columns:
        col = table["recommended"]
        if col.dtype == bool:
            hits = table.loc[col, "estimator"].astype(str)
            named = hits.iloc[0] if len(hits) else named
        else:
            vals = [v for v in col.dropna().astype(str) if v]
            named = vals[0] if vals else named
    if isinstance(named, Mapping):  # {log type: estimator}
        named = named.get(mode)
    if isinstance(named, str) and named in present:
        return named
    return recommended_for(mode, present)


@dataclass(frozen=True)
class Comparison:
    """``a`` minus ``b`` by one estimator: difference, interval, and how it was computed."""

    a: str
    b: str
    diff: float
    low: float
    high: float
    method: str  # PAIRED or INDEPENDENT

    @property
    def verdict(self) -> str:
        """``"a better"``, ``"b better"`` or ``"cannot tell apart"`` at the interval's level."""
        if self.low > 0:
            return f"{self.a} better"
        if self.high < 0:
            return f"{self.b} better"
        return "cannot tell apart"


@dataclass
class Decision:
    """The headline of a report.

    Attributes:
        estimator: the headline estimator; alpha: the intervals' level is ``1 - alpha``.
        verdict: one of :data:`VERDICTS`.
        pick: the recommended policy, None unless ``verdict == "recommend"``.
        best: the deployable policy with the highest estimate (the candidate), or None.
        value, low, high: ``best``'s estimate and interval.
        logger, logger_value: the logging policy and its estimate.
        lift: ``best`` minus the logger; runner_up: ``best`` minus the second candidate.
        comparisons: the top candidates compared pairwise.
        reasons: why the gate declined (empty when it recommends).
        sentences: the headline, first sentence first.
    """

    estimator: str
    alpha: float
    pick: str | None
    verdict: str = NOTHING
    best: str | None = None
    value: float = float("nan")
    low: float = float("nan")
    high: float = float("nan")
    logger: str | None = None
    logger_value: float = float("nan")
    lift: Comparison | None = None
    runner_up: Comparison | None = None
    comparisons: list[Comparison] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    sentences: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (comparisons as dicts with their verdict)."""
        d = asdict(self)
        for key in ("lift", "runner_up"):
            c = getattr(self, key)
            if c is not None:
                d[key]["verdict"] = c.verdict
        d["comparisons"] = [{**asdict(c), "verdict": c.verdict} for c in self.comparisons]
        return d

    def comparisons_table(self) -> pd.DataFrame:
        """One row per comparison: a, b, difference, interval, verdict, method."""
        return pd.DataFrame(
            [
                {
                    "policy": c.a,
                    "versus": c.b,
                    "difference": c.diff,
                    "low": c.low,
                    "high": c.high,
                    "verdict": c.verdict,
                    "method": c.method,
                }
                for c in self.comparisons
            ],
            columns=["policy", "versus", "difference", "low", "high", "verdict", "method"],
        )


Paired = Callable[[str, str, str], tuple[float, float, float]]
"""``paired(a, b, estimator) -> (difference, low, high)``: the paired difference of two
policies' estimates on the same rows, e.g. from :meth:`offrec.ope.OPEResult.compare`."""


def compare(
    a: str,
    b: str,
    rows: Mapping[str, pd.Series],
    *,
    alpha: float,
    estimator: str = "",
    paired: Paired | None = None,
    contributions: Mapping[str, np.ndarray] | None = None,
) -> Comparison:
    """``a`` minus ``b`` by ``estimator``, paired when possible.

    In order: ``paired(a, b, estimator)`` (the OPE's own paired interval); else per-row
    ``contributions`` of both (normal interval of the mean per-row difference); else the
    independent approximation (see the module docstring), from the ``stderr`` column
    when the table has one, else from the interval widths.
    """
    z = NormalDist().inv_cdf(1 - alpha / 2)
    va, vb = float(rows[a]["value"]), float(rows[b]["value"])
    if paired is not None:
        diff, low, high = paired(a, b, estimator)
        if np.isfinite(low) and np.isfinite(high):
            return Comparison(a, b, float(diff), float(low), float(high), PAIRED)
    if contributions is not None and a in contributions and b in contributions:
        d = np.asarray(contributions[a], np.float64) - np.asarray(contributions[b], np.float64)
        se = float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else float("nan")
        diff = va - vb
        return Comparison(a, b, diff, diff - z * se, diff + z * se, PAIRED)

    def se_of(p: str) -> float:
        se = float(rows[p].get("stderr", np.nan))
        if np.isfinite(se):
            return se
        return (float(rows[p]["high"]) - float(rows[p]["low"])) / (2 * z)

    half = z * float(np.hypot(se_of(a), se_of(b)))
    return Comparison(a, b, va - vb, va - vb - half, va - vb + half, INDEPENDENT)


def disagreements(table: pd.DataFrame, *, policies: Sequence[str] | None = None) -> list[str]:
    """:func:`offrec.ope.trust.disagreement_sentences` of an estimates table."""
    rows = [Estimate.from_row(r) for r in table.to_dict("records")]
    return disagreement_sentences(rows, policies=policies)


def decide(
    table: pd.DataFrame,
    roles: Mapping[str, str],
    *,
    mode: str = "bandit",
    alpha: float = 0.05,
    estimator: str | None = None,
    paired: Paired | None = None,
    contributions: Mapping[str, np.ndarray] | None = None,
    n_compare: int = 3,
    value_label: str = "value",
    choice: Choice | None = None,
) -> Decision:
    """The gate (module docstring): ship the best deployable policy, or say why not.

    Args:
        table: the OPE table, one row per (policy, estimator) with at least ``policy,
            estimator, value, low, high`` (and ``ess``, ``warnings`` when known).
        roles: ``{policy: role}``, role in :data:`ROLES`; a policy without a role is
            treated as an oracle (never picked).
        mode: ``"bandit"`` or ``"session"`` (for :func:`recommended_estimator`).
        alpha: the intervals' level is ``1 - alpha``.
        estimator: the headline estimator; default ``choice.estimator``, else
            :func:`recommended_estimator`.
        paired: the OPE's paired difference ``paired(a, b, estimator) -> (diff, low,
            high)`` (:meth:`offrec.ope.OPEResult.compare`); preferred when given.
        contributions: ``{policy: (n,) per-row contributions}`` of that estimator on the
            same rows, when no ``paired``.
        n_compare: the top deployable candidates compared pairwise (at least 2).
        value_label: the unit of the values, for the sentences ("CTR").
        choice: the data-driven estimator choice; its passing estimators must agree on
            the sign of the lift. Without it every estimator of the table must.
    """
    for col in ("policy", "estimator", "value", "low", "high"):
        if col not in table.columns:
            raise InputError(f"table must have a {col!r} column; got {list(table.columns)}")
    bad = {p: r for p, r in roles.items() if r not in ROLES}
    if bad:
        raise InputError(f"roles must be in {list(ROLES)}; got {bad}")
    chosen = choice.estimator if choice is not None else None
    est = estimator or chosen or recommended_estimator(table, mode)
    values = table[np.isfinite(table["value"].to_numpy(np.float64))]
    sub = values[values["estimator"].astype(str) == est].drop_duplicates("policy")
    rows = {str(r["policy"]): r for _, r in sub.iterrows()}
    candidates = sorted(
        (p for p in rows if roles.get(p) in DEPLOYABLE), key=lambda p: -float(rows[p]["value"])
    )
    loggers = [p for p in rows if roles.get(p) == "logger"]
    logger = loggers[0] if loggers else None
    dec = Decision(estimator=est, alpha=alpha, pick=None, logger=logger)
    level = f"{100 * (1 - alpha):.0f}%"
    f = format_number
    if not candidates:
        dec.sentences.append(
            f"No deployable (learned or hand-made) policy was scored by {est}: nothing to "
            "recommend. Oracles and the logging policy are references only."
        )
        return dec
    best = candidates[0]
    r = rows[best]
    dec.best, dec.value, dec.low, dec.high = (
        best,
        float(r["value"]),
        float(r["low"]),
        float(r["high"]),
    )
    said = (
        f"{best}, estimated {value_label} {f(dec.value)} ({level} interval {f(dec.low)} to "
        f"{f(dec.high)}) by {est}"
    )
    lift_sentence = "The logging policy was not scored: no lift can be given."
    if choice is not None and choice.estimator is None:
        dec.reasons.append("no estimator passed the checks against the log")
    ess = float(r.get("ess", np.nan)) if "ess" in sub.columns else np.nan
    if np.isfinite(ess) and ess < GATE_MIN_ESS:
        dec.reasons.append(
            f"the {est} estimate of {best} rests on an effective sample size of {ess:.1f}"
        )
    elif choice is not None and (est, best) in choice.unusable:
        dec.reasons.append(
            f"the {est} estimate of {best} rests on importance weights whose tail the log "
            "has not sampled (they do not average to 1)"
        )
    if logger is None:
        dec.reasons.append("the logging policy was not scored, so no lift can be shown")
    else:
        lv = float(rows[logger]["value"])
        dec.logger_value = lv
        lift = dec.lift = compare(
            best,
            logger,
            rows,
            alpha=alpha,
            estimator=est,
            paired=paired,
            contributions=contributions,
        )
        rel = f" ({lift.diff / lv:+.1%})" if lv else ""
        if lift.low > 0:
            how = (
                f"the interval excludes the logger's value ({f(lv)})"
                if not dec.low <= lv <= dec.high
                else f"the {'paired ' if lift.method == PAIRED else ''}interval of the lift "
                "excludes 0"
            )
            conf = f"{best} beats the logging policy: {how}."
        elif lift.high < 0:
            conf = f"{best} is worse than the logging policy."
            dec.reasons.append(f"{best}'s lift over the logger is below 0 at {level}")
        else:
            conf = f"cannot tell {best} apart from the logging policy ({f(lv)}) at {level}."
            dec.reasons.append(f"the {level} interval of {best}'s lift over the logger includes 0")
        lift_sentence = (
            f"Lift over the logging policy: {lift.diff:+.4g}{rel}, {level} interval "
            f"{lift.low:+.4g} to {lift.high:+.4g} ({lift.method}); {conf}"
        )
        dec.reasons += _sign_disagreement(values, best, logger, lift.diff, choice)
    if not dec.reasons:
        dec.verdict, dec.pick = RECOMMEND, best
        dec.sentences.append(f"Recommended ({roles[best]} policy): {said}.")
    elif (
        dec.lift is not None
        and dec.lift.high < 0
        and not (choice is not None and choice.estimator is None)
    ):  # "keep the logger" needs an estimator the log vouches for, as "recommend" does
        dec.verdict = KEEP_LOGGER
        dec.sentences.append(
            f"Keep the logging policy: the best candidate ({roles[best]} policy), {said}, is "
            "worse than it."
        )
    else:
        dec.verdict = CANNOT_TELL
        dec.sentences.append(
            f"Cannot tell: run an online test. The best candidate ({roles[best]} policy) is "
            f"{said}, but " + "; ".join(dec.reasons) + "."
        )
    dec.sentences.append(lift_sentence)
    top = candidates[: max(2, n_compare)]
    dec.comparisons = [
        compare(a, b, rows, alpha=alpha, estimator=est, paired=paired, contributions=contributions)
        for i, a in enumerate(top)
        for b in top[i + 1 :]
    ]
    if len(top) > 1:
        c = dec.runner_up = dec.comparisons[0]
        if c.low > 0:
            s = (
                f"{best} is ahead of the runner-up {c.b} by {c.diff:+.4g} ({level} interval "
                f"{c.low:+.4g} to {c.high:+.4g})."
            )
        else:
            s = (
                f"Cannot tell {best} apart from {c.b}: the difference {c.diff:+.4g} has a "
                f"{level} interval {c.low:+.4g} to {c.high:+.4g} that includes 0."
            )
        dec.sentences.append(s)
    dec.sentences += _cautions(table, best, est)
    return dec


def _sign_disagreement(
    table: pd.DataFrame, best: str, logger: str, diff: float, choice: Choice | None
) -> list[str]:
    """Estimators that passed the checks (every estimator without a ``choice``) whose
    point estimate of the lift has another sign than the headline's; estimates with an
    ESS below :data:`~offrec.ope.trust.GATE_MIN_ESS`, or that the choice marks unusable
    (:attr:`~offrec.ope.selection.Choice.unusable`), are left out."""
    passed = set(choice.passed) if choice is not None else None
    mute = set(choice.unusable) if choice is not None else set()
    out = []
    if "ess" in table.columns:  # estimates resting on a single-digit ESS do not vote
        table = table[~(table["ess"].to_numpy(np.float64) < GATE_MIN_ESS)]
    for e, g in table.groupby("estimator", sort=False):
        if (passed is not None and e not in passed) or (e, best) in mute:
            continue
        v = {str(p): float(x) for p, x in zip(g["policy"], g["value"], strict=True)}
        if best in v and logger in v and np.sign(v[best] - v[logger]) != np.sign(diff):
            out.append(f"{e} puts the lift at {v[best] - v[logger]:+.4g} (other sign)")
    return (
        ["the estimators that pass the checks disagree on the sign of the lift: " + ", ".join(out)]
        if out
        else []
    )


def _cautions(table: pd.DataFrame, best: str, est: str) -> list[str]:
    """Sentences for the headline when the candidate's own estimate is shaky."""
    out = []
    if "warnings" in table.columns:
        mine = table[(table["policy"] == best) & (table["estimator"] == est)]
        warns = [w for w in mine["warnings"].fillna("").astype(str) if w]
        if warns:
            out.append(f"Caution: the {est} estimate of {best} is flagged: {warns[0]}.")
    if disagreements(table, policies=[best]):
        out.append(
            f"Caution: for {best}, estimators disagree beyond their intervals "
            "(see the trust section): treat the value as uncertain and confirm online."
        )
    return out
