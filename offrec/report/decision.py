r"""What to ship: the deployable policy offrec recommends, how sure it is, and how far
each estimate can be trusted.

The headline (:func:`decide`) picks, among the **deployable** policies only (learned or
hand-made; oracles need the hidden user state and the logger is what runs today), the one
with the highest estimate by the recommended estimator, and compares it with the logging
policy and with the runner-up.

Comparisons are **paired**: both policies are scored on the same logged rows, so their
estimates share most of their noise and the difference

.. math::

    \hat\Delta = \hat V(\pi_a) - \hat V(\pi_b) = \frac1n \sum_i (\psi_{a,i} - \psi_{b,i}),
    \qquad \widehat{se}(\hat\Delta) = \frac{\operatorname{sd}_i(\psi_{a,i} - \psi_{b,i})}{\sqrt n}

is known more precisely than the two intervals suggest (:math:`\psi_{\cdot,i}` are the
per-row (per-session) contributions of the estimator, linearized for the self-normalized
ones). The pipeline takes this interval from the OPE itself
(:meth:`offrec.ope.OPEResult.compare`, which keeps the co-moments of every pair of
estimates); :func:`compare` also accepts the per-row contributions. Only when neither is
available is the difference approximated as if the estimates were independent,
:math:`\widehat{se}^2 \approx se_a^2 + se_b^2` (``se`` from the ``stderr`` column, else
:math:`(high - low) / (2 z)`): conservative (too wide) when, as usual, the estimates are
positively correlated. Every comparison says which it used (``method``).
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

ROLES: tuple[str, ...] = ("learned", "hand-made", "logger", "oracle")
"""What a policy is. Only ``learned`` and ``hand-made`` policies can be recommended."""
DEPLOYABLE: frozenset[str] = frozenset({"learned", "hand-made"})

PREFERENCE: dict[str, tuple[str, ...]] = {
    "bandit": ("dr", "sndr", "dr-os", "switch-dr", "snips", "ips", "dm"),
    "session": ("dr", "fqe", "wpdis", "pdis"),
}
"""Estimator used for the headline when the OPE table does not name a recommended one:
the first present, by log type. Doubly robust first in both. In session mode this
follows offrec's own study (README, session_rl over 3 seeds): sequential DR and FQE rank
logger, bandit, DQN and CQL with Spearman 0.4-0.8 and FQE picks the true best each
time, while PDIS and WPDIS, whose per-decision weights multiply over ten steps, rank them
backwards (-0.4 to -0.8)."""

PAIRED = "paired on the same rows"
INDEPENDENT = "independent approximation"

ESS_SHARE_LOW = 0.01
"""An ESS below this share of the rows gets a warning when the OPE table carries none."""
SUPPORT_COVERAGE_LOW = 0.99
"""A target putting more than 1 - this of its mass outside the logger's support gets one."""


def recommended_estimator(table: pd.DataFrame, mode: str) -> str:
    """The estimator for the headline.

    In order: the estimator the OPE table recommends (a boolean ``recommended`` column,
    a string ``recommended`` column naming one, or ``table.attrs["recommended"]``), else
    the first of :data:`PREFERENCE` ``[mode]`` present in ``table["estimator"]``, else the
    first estimator of the table.
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
    for name in PREFERENCE.get(mode, ()):
        if name in present:
            return name
    return present[0]


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
    """The headline of a report. ``pick`` is None when no deployable policy was scored."""

    estimator: str
    alpha: float
    pick: str | None
    value: float = float("nan")
    low: float = float("nan")
    high: float = float("nan")
    logger: str | None = None
    logger_value: float = float("nan")
    lift: Comparison | None = None
    runner_up: Comparison | None = None
    comparisons: list[Comparison] = field(default_factory=list)
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
                {"policy": c.a, "versus": c.b, "difference": c.diff, "low": c.low,
                 "high": c.high, "verdict": c.verdict, "method": c.method}
                for c in self.comparisons
            ],
            columns=["policy", "versus", "difference", "low", "high", "verdict", "method"],
        )  # fmt: skip


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
) -> Decision:
    """The headline: which deployable policy to ship, its lift over the logger, how sure.

    Args:
        table: the OPE table, one row per (policy, estimator) with at least ``policy,
            estimator, value, low, high``; a ``truth`` column (simulation only) adds a
            check sentence.
        roles: ``{policy: role}``, role in :data:`ROLES`; a policy without a role is
            treated as an oracle (never picked).
        mode: ``"bandit"`` or ``"session"`` (for :func:`recommended_estimator`).
        alpha: the intervals' level is ``1 - alpha``.
        estimator: the headline estimator; default :func:`recommended_estimator`.
        paired: the OPE's paired difference ``paired(a, b, estimator) -> (diff, low,
            high)`` (:meth:`offrec.ope.OPEResult.compare`); preferred when given.
        contributions: ``{policy: (n,) per-row contributions}`` of that estimator on the
            same rows (their spread gives the paired standard error), when no ``paired``.
        n_compare: the top deployable candidates compared pairwise (at least 2).
        value_label: the unit of the values, for the sentences ("CTR").
    """
    for col in ("policy", "estimator", "value", "low", "high"):
        if col not in table.columns:
            raise InputError(f"table must have a {col!r} column; got {list(table.columns)}")
    bad = {p: r for p, r in roles.items() if r not in ROLES}
    if bad:
        raise InputError(f"roles must be in {list(ROLES)}; got {bad}")
    est = estimator or recommended_estimator(table, mode)
    sub = table[table["estimator"].astype(str) == est].drop_duplicates("policy")
    sub = sub[np.isfinite(sub["value"].to_numpy(np.float64))]
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
    pick = candidates[0]
    r = rows[pick]
    dec.pick, dec.value, dec.low, dec.high = (
        pick,
        float(r["value"]),
        float(r["low"]),
        float(r["high"]),
    )
    dec.sentences.append(
        f"Recommended ({roles[pick]} policy): {pick}, estimated {value_label} {f(dec.value)} "
        f"({level} interval {f(dec.low)} to {f(dec.high)}) by {est}."
    )
    if logger is not None:
        lv = float(rows[logger]["value"])
        dec.logger_value = lv
        dec.lift = compare(
            pick,
            logger,
            rows,
            alpha=alpha,
            estimator=est,
            paired=paired,
            contributions=contributions,
        )
        lift = dec.lift
        rel = f" ({lift.diff / lv:+.1%})" if lv else ""
        excludes = not (dec.low <= lv <= dec.high)
        if lift.low > 0:
            how = (
                f"the interval excludes the logger's value ({f(lv)})"
                if excludes
                else f"the {'paired ' if lift.method == PAIRED else ''}interval of the lift "
                "excludes 0"
            )
            conf = f"{pick} beats the logging policy: {how}."
        elif lift.high < 0:
            conf = f"{pick} is worse than the logging policy: keep the logger."
        else:
            conf = f"cannot tell {pick} apart from the logging policy ({f(lv)}) at {level}."
        dec.sentences.append(
            f"Lift over the logging policy: {lift.diff:+.4g}{rel}, {level} interval "
            f"{lift.low:+.4g} to {lift.high:+.4g} ({lift.method}); {conf}"
        )
    else:
        dec.sentences.append("The logging policy was not scored: no lift can be given.")
    top = candidates[: max(2, n_compare)]
    dec.comparisons = [
        compare(a, b, rows, alpha=alpha, estimator=est, paired=paired, contributions=contributions)
        for i, a in enumerate(top)
        for b in top[i + 1 :]
    ]
    if len(top) > 1:
        dec.runner_up = dec.comparisons[0]
        c = dec.runner_up
        if c.low > 0:
            s = f"{pick} is ahead of the runner-up {c.b} by {c.diff:+.4g} ({level} interval {c.low:+.4g} to {c.high:+.4g})."
        else:
            s = (
                f"Cannot tell {pick} apart from {c.b}: the difference {c.diff:+.4g} has a "
                f"{level} interval {c.low:+.4g} to {c.high:+.4g} that includes 0."
            )
        dec.sentences.append(s)
    if "truth" in sub.columns and np.isfinite(float(r.get("truth", np.nan))):
        truths = {p: float(rows[p]["truth"]) for p in candidates}
        best = max(truths, key=lambda p: truths[p])
        check = (
            f"Simulation check: the pick's true {value_label} is {f(truths[pick])}"
            + (f" (logger {f(float(rows[logger]['truth']))})" if logger else "")
            + (
                "; it is the truly best deployable policy."
                if best == pick
                else f"; the truly best deployable policy is {best} ({f(truths[best])})."
            )
        )
        dec.sentences.append(check)
    return dec


def trust_table(
    table: pd.DataFrame, roles: Mapping[str, str], *, n_rows: int | None = None
) -> pd.DataFrame:
    """Per policy and estimator: the estimate, its interval, ESS (count and share of the
    rows), max importance weight, support coverage and warnings.

    Columns missing from the OPE table are left out (sequential OPE reports no weights).
    ``ess_share`` is computed as ``ess / n_rows`` when the table lacks it. ``support`` is
    ``1 - support_violation``: the share of the target's probability mass on actions the
    logger can take. When the table has no ``warnings`` column, warnings are derived here:
    ESS below :data:`ESS_SHARE_LOW` of the rows, support below :data:`SUPPORT_COVERAGE_LOW`
    (not for the :data:`MODEL_ONLY` estimators, which use no weight).
    """
    t = table.copy()
    t.insert(1, "role", t["policy"].map(lambda p: roles.get(str(p), "oracle")))
    if "ess" in t.columns and "ess_share" not in t.columns and n_rows:
        t["ess_share"] = t["ess"] / n_rows
    if "support_violation" in t.columns:
        t["support"] = 1.0 - t["support_violation"]
    if "warnings" not in t.columns:
        t["warnings"] = [_derived_warnings(r) for _, r in t.iterrows()]
    t["warnings"] = t["warnings"].fillna("").astype(str)
    cols = ["policy", "role", "estimator", "value", "low", "high", "ess", "ess_share",
            "max_weight", "support", "warnings"]  # fmt: skip
    return t[[c for c in cols if c in t.columns]].reset_index(drop=True)


MODEL_ONLY: frozenset[str] = frozenset({"dm", "fqe"})
"""Estimators that use no importance weight: ESS and support do not bear on them."""


def _derived_warnings(r: pd.Series) -> str:
    out = []
    if str(r.get("estimator")) in MODEL_ONLY:
        return ""
    share = r.get("ess_share", np.nan)
    if np.isfinite(share) and share < ESS_SHARE_LOW:
        out.append(f"ESS is {share:.2%} of the rows")
    sv = r.get("support_violation", np.nan)
    if np.isfinite(sv) and 1 - sv < SUPPORT_COVERAGE_LOW:
        out.append(f"{sv:.1%} of the target's mass is on actions the logger never takes")
    return "; ".join(out)


def disagreements(table: pd.DataFrame, *, policies: Sequence[str] | None = None) -> list[str]:
    """Sentences naming, per policy, estimators whose intervals do not overlap (they
    cannot both be right).

    Grouped: the estimator in conflict with the most others is named first with all of
    them ("dm (...) disagrees with ips, dr beyond their intervals"), then the next among
    the remaining pairs, so one outlier gives one sentence, not one per pair.
    """
    out: list[str] = []
    for policy, sub in table.groupby("policy", sort=False):
        if policies is not None and policy not in policies:
            continue
        s = sub[np.isfinite(sub["low"].to_numpy(np.float64))].drop_duplicates("estimator")
        recs = {str(r["estimator"]): r for _, r in s.iterrows()}
        pairs = {
            (a, b)
            for a in recs
            for b in recs
            if a < b and (recs[a]["low"] > recs[b]["high"] or recs[b]["low"] > recs[a]["high"])
        }
        while pairs:
            counts: dict[str, int] = {}
            for a, b in pairs:
                counts[a] = counts.get(a, 0) + 1
                counts[b] = counts.get(b, 0) + 1
            top = max(recs, key=lambda e: (counts.get(e, 0), -list(recs).index(e)))
            others = [e for e in recs if (min(e, top), max(e, top)) in pairs]
            out.append(
                f"{policy}: {top} ({_iv(recs[top])}) disagrees with "
                + ", ".join(f"{e} ({_iv(recs[e])})" for e in others)
                + " beyond their intervals."
            )
            pairs -= {(min(e, top), max(e, top)) for e in others}
    return out


def _iv(r: pd.Series) -> str:
    return f"{format_number(r['value'])}, {format_number(r['low'])} to {format_number(r['high'])}"
