r"""Ship a ranker or not: the one gate (:func:`offrec.ope.gate.decide`) on a slate log.

Each candidate ranker (a :class:`~offrec.sim.slate.SlatePolicy`, e.g. the top-``K`` of a
model trained on the log with ``offrec train bandit``, with exploration) is scored by the
slate estimators (:func:`~offrec.ope.slate_log.evaluate_slates`); the logger is scored on
policy, by the mean clicks per logged slate :math:`\bar R = \frac1n \sum_i \sum_k r_{ik}`
with its normal interval (every slate estimator equals :math:`\bar R` when the target is
the logger). The headline estimator is the one whose assumption the log's click model
meets (:data:`HEADLINE`): IIPS under independent and position-based clicks (lowest
variance), RIPS under cascade clicks (IIPS is biased there).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from offrec.core.errors import InputError
from offrec.logs.reader import log_files, read_metadata
from offrec.ope.gate import Decision, decide
from offrec.ope.slate_log import SlateEstimate, evaluate_slates
from offrec.sim.slate import SlatePolicy

HEADLINE: dict[str, str] = {"independent": "iips", "pbm": "iips", "cascade": "rips"}
"""The headline slate estimator under each click model (unbiased there, lowest variance)."""

HEARD: dict[str, tuple[str, ...]] = {
    "independent": ("iips", "sniips"),
    "pbm": ("iips", "sniips"),
    "cascade": ("rips", "snrips", "cascade-dr"),
}
"""The estimators the gate hears under each click model (asked to agree on the lift's
sign): the lowest-variance ones whose assumption the model meets. SIPS, unbiased under
all three, is left out: for a ranker far from the logger its joint weights leave few
effective slates and its estimate rests on a handful of them (README, Slates: 10-14%
error for the far target), so it would veto every decision by noise."""


LOGGER = "logger"


def logger_estimate(
    path: str | Path, estimator: str, K: int, alpha: float = 0.05, batch_slates: int = 65_536
) -> SlateEstimate:
    """The logger's own value on its log: mean clicks per slate, normal ``1 - alpha``
    interval over slates. Streamed over the ``reward`` column in batches of whole slates
    (a slate log keeps each slate's ``K`` rows together, in order: checked on the
    ``session_id`` column), so memory holds one batch."""
    from scipy.stats import norm

    n = 0
    total = total_sq = 0.0
    for f in log_files(path):
        pf = pq.ParquetFile(f)
        for rb in pf.iter_batches(batch_size=K * batch_slates, columns=["session_id", "reward"]):
            sid = rb.column("session_id").to_numpy()
            if len(sid) % K or (sid.reshape(-1, K) != sid.reshape(-1, K)[:, :1]).any():
                raise InputError(
                    f"log {path}: each slate's {K} rows must be together; a batch of {f} mixes "
                    "session_id values within a slate"
                )
            per_slate = rb.column("reward").to_numpy().astype(np.float64).reshape(-1, K).sum(1)
            n += per_slate.size
            total += float(per_slate.sum())
            total_sq += float(per_slate @ per_slate)
    if n < 2:
        raise InputError(f"log {path} needs at least 2 slates to score the logger; got {n}")
    mean = total / n
    sd = math.sqrt(max(total_sq / n - mean * mean, 0.0) * n / (n - 1))
    half = float(norm.ppf(1 - alpha / 2)) * sd / math.sqrt(n)
    return SlateEstimate(estimator, mean, mean - half, mean + half, "normal", float(n), 1.0, n)


def slate_decision(
    path: str | Path,
    candidates: Mapping[str, SlatePolicy],
    *,
    estimator: str | None = None,
    alpha: float = 0.05,
    n_bootstrap: int = 500,
    seed: int = 0,
) -> tuple[Decision, pd.DataFrame]:
    """The gate's decision between ``candidates`` (role ``learned``) and the logger, and
    the table it read (one row per policy and estimator: ``policy, estimator, value, low,
    high, ess, warnings``). ``estimator``: the headline (default :data:`HEADLINE` of the
    log's click model). The gate hears the estimators of :data:`HEARD` for the log's click
    model; the returned table holds every estimate. Candidates and the logger are compared as
    independent estimates (the gate's independent approximation)."""
    if not candidates:
        raise InputError("candidates must name at least one ranker; got none")
    if LOGGER in candidates:
        raise InputError(f"candidate name {LOGGER!r} is reserved for the logging policy")
    meta = read_metadata(path).get("slate")
    if not isinstance(meta, dict):
        raise InputError(f"log {path} is not a slate log: its metadata has no 'slate' entry")
    kind = str((meta.get("click_model") or {}).get("kind", "cascade"))
    est = estimator or HEADLINE.get(kind, "sips")
    rows = []
    for name, policy in candidates.items():
        for r in evaluate_slates(path, policy, n_bootstrap=n_bootstrap, alpha=alpha, seed=seed):
            rows.append(_row(name, r))
    names = {str(row["estimator"]) for row in rows}
    lg = logger_estimate(path, est, int(meta["slate_size"]), alpha)
    rows += [_row(LOGGER, lg) | {"estimator": e} for e in sorted(names)]
    table = pd.DataFrame(rows)
    roles = {LOGGER: "logger", **{n: "learned" for n in candidates}}
    heard = table[table["estimator"].isin(set(HEARD.get(kind, ())) | {est})]
    dec = decide(heard, roles, alpha=alpha, estimator=est, value_label="clicks per slate")
    return dec, table


def _row(policy: str, r: SlateEstimate) -> dict[str, object]:
    return {
        "policy": policy,
        "estimator": r.estimator,
        "value": r.value,
        "low": r.low,
        "high": r.high,
        "ess": r.ess,
        "warnings": "; ".join(r.warnings),
    }
