r"""Slate OPE on a slate log, streamed: batches of whole slates -> per-slate columns ->
mergeable :class:`~offrec.ope.moments.Moments` -> estimates with intervals.

:func:`evaluate_slates` reads a slate log (:data:`offrec.logs.schema.SLATE_COLUMNS`)
batch by batch (bounded memory: one batch of slates and the target's marginals per
distinct context), asks the target slate policy for its propensities of the logged
slates, computes every estimator's per-slate columns (:mod:`offrec.ope.slate`) and merges
their moments; the bootstrap keys each slate by ``(session_id, step)``, so resamples
hold whole slates and do not depend on the batch size.

Target marginals that are Monte-Carlo estimates (Plackett-Luce on long lists) are
computed once per distinct context, in the order contexts first appear in the log, from
one generator seeded by ``seed``: the same numbers whatever the batch size.

cascade-DR's :math:`\hat Q_k(x, a_{<k}, a)` here is a position-item table
:math:`\hat r(k, a)` (the mean logged reward of item ``a`` at rank ``k``, pooled with the
rank's mean, fitted in a first pass on the slates of the other hash fold: 2-fold
cross-fitting), a deliberately simple control variate: cascade-DR stays unbiased under
the cascade model whatever :math:`\hat Q` is, and gains variance only as far as the
table is right.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from offrec.core.errors import InputError
from offrec.core.hashing import hash_uniform, row_keys
from offrec.core.validation import check_scalar
from offrec.logs.reader import log_files, read_metadata
from offrec.logs.slate import check_slate_rows
from offrec.ope.intervals import Form, Interval, check_interval_options, interval
from offrec.ope.moments import Moments
from offrec.ope.slate import (
    SLATE_ESTIMATORS,
    SlateParts,
    check_slate_mass,
    make_slate_estimator,
    slate_terms,
)
from offrec.sim.slate import MARGINAL_SAMPLES, MarginalCache, SlatePolicy

_FOLD_SALT = 0x51A7E
_COLUMNS = (
    "session_id",
    "step",
    "position",
    "action",
    "reward",
    "pscore",
    "pscore_slate",
    "pscore_cascade",
    "context",
)


@dataclass(frozen=True)
class SlateEstimate:
    """One estimator's result on a slate log."""

    estimator: str
    value: float
    low: float
    high: float
    method: str
    ess: float
    max_weight: float
    n_slates: int
    warnings: tuple[str, ...] = ()


def _batches(path: str | Path, batch_rows: int, K: int) -> Any:
    """Dicts of numpy columns holding whole slates (rows sorted by slate within the log),
    ``batch_rows`` rows or so each; a slate cut by a batch boundary is carried over."""
    carry: dict[str, np.ndarray] | None = None
    for f in log_files(path):
        for rb in pq.ParquetFile(f).iter_batches(batch_size=batch_rows, columns=list(_COLUMNS)):
            cols = {
                c: rb.column(c).to_numpy(zero_copy_only=False) for c in _COLUMNS if c != "context"
            }
            ctx = rb.column("context")
            width = ctx.type.list_size if hasattr(ctx.type, "list_size") else 0
            flat = ctx.flatten().to_numpy(zero_copy_only=False) if len(ctx) else np.zeros(0)
            cols["context"] = np.asarray(flat, np.float32).reshape(len(ctx), width)
            if carry is not None:
                cols = {c: np.concatenate([carry[c], cols[c]]) for c in cols}
            s, t = cols["session_id"], cols["step"]
            change = np.flatnonzero((s[1:] != s[:-1]) | (t[1:] != t[:-1])) + 1
            cut = int(change[-1]) if change.size else 0  # start of the last (maybe cut) slate
            tail = len(s) - cut
            if tail == K:  # the last slate is complete
                cut = len(s)
            carry = {c: v[cut:] for c, v in cols.items()}
            if cut:
                yield {c: v[:cut] for c, v in cols.items()}
    if carry is not None and len(carry["session_id"]):
        yield carry


def _batch_arrays(
    cols: dict[str, np.ndarray],
    K: int,
    target: SlatePolicy,
    cache: MarginalCache,
    q_table: np.ndarray | None,
) -> dict[str, Any]:
    """OBP-named arrays (see :mod:`offrec.ope.slate`) of one batch of whole slates."""
    check_slate_rows(cols["session_id"], cols["step"], cols["position"], cols["action"], K)
    order = np.lexsort((cols["position"], cols["step"], cols["session_id"]))
    cols = {c: v[order] for c, v in cols.items()}
    n = len(order) // K
    slates = cols["action"].reshape(n, K).astype(np.int64)
    obs = cols["context"][::K]
    cond = target.conditional(obs, slates)
    casc = np.cumprod(cond, axis=1)
    marg = cache.get(obs)
    item = marg[np.arange(n)[:, None], np.arange(K)[None, :], slates]
    arrays = {
        "slate_id": np.repeat(np.arange(n), K),
        "position": cols["position"].astype(np.int64),
        "reward": cols["reward"].astype(np.float64),
        "action": cols["action"].astype(np.int64),
        "session_id": cols["session_id"].astype(np.int64),
        "step": cols["step"].astype(np.int64),
        "pscore": cols["pscore_slate"],
        "evaluation_policy_pscore": np.repeat(casc[:, -1], K),
        "pscore_item_position": cols["pscore"],
        "evaluation_policy_pscore_item_position": item.ravel(),
        "pscore_cascade": cols["pscore_cascade"],
        "evaluation_policy_pscore_cascade": casc.ravel(),
    }
    if q_table is not None:
        # fold of each slate: its cross-fitted table is the other fold's
        fold = (
            hash_uniform(row_keys(cols["session_id"][::K], cols["step"][::K]), 0, _FOLD_SALT) < 0.5
        )
        q = q_table[1 - fold.astype(np.int64)]  # (n, K, m)
        arrays["q_hat"] = np.repeat(q, 1, axis=0).reshape(n * K, -1)
        arrays["evaluation_policy_action_dist"] = target.next_item_dist(obs, slates).reshape(
            n * K, -1
        )
    return arrays


def fit_position_item_table(
    path: str | Path, K: int, n_items: int, batch_rows: int, prior: float = 10.0
) -> np.ndarray:
    """Per fold (2, by a hash of the slate key), the mean reward of each item at each rank,
    shrunk toward the rank's mean with ``prior`` pseudo-observations, (2, K, n_items)."""
    sums = np.zeros((2, K, n_items))
    counts = np.zeros((2, K, n_items))
    for cols in _batches(path, batch_rows, K):
        fold = (
            hash_uniform(row_keys(cols["session_id"], cols["step"]), 0, _FOLD_SALT) < 0.5
        ).astype(np.int64)
        idx = (fold * K + cols["position"]) * n_items + cols["action"]
        sums += np.bincount(idx, weights=cols["reward"], minlength=2 * K * n_items).reshape(
            sums.shape
        )
        counts += np.bincount(idx, minlength=2 * K * n_items).reshape(counts.shape)
    rank_mean = sums.sum(axis=2, keepdims=True) / np.maximum(counts.sum(axis=2, keepdims=True), 1)
    return (sums + prior * rank_mean) / (counts + prior)


def evaluate_slates(
    path: str | Path,
    target: SlatePolicy,
    estimators: list[str] | None = None,
    *,
    method: str = "bootstrap",
    n_bootstrap: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    batch_rows: int = 65_536,
    marginal_samples: int = MARGINAL_SAMPLES,
    marginals: MarginalCache | None = None,
) -> list[SlateEstimate]:
    """Estimate the value (expected clicks per slate) of ``target`` on the slate log at
    ``path`` with each of ``estimators`` (default: all of
    :data:`~offrec.ope.slate.SLATE_ESTIMATORS`), streamed in batches of about
    ``batch_rows`` rows. ``marginals``: a :class:`~offrec.sim.slate.MarginalCache` of the
    target to reuse across logs (default: a new one from ``marginal_samples`` and
    ``seed``). Returns one :class:`SlateEstimate` per estimator.

    An estimator whose assumption the log's logger breaks is refused (``InputError`` with
    the reason) when asked for and left out of the default: PI on any logger that ranks
    without replacement (every offrec slate logger; :func:`_refused`)."""
    check_interval_options(method, n_bootstrap, alpha)
    check_scalar(batch_rows, "batch_rows", int, min=1)
    metadata = read_metadata(path)
    meta = metadata.get("slate")
    if not isinstance(meta, dict):
        raise InputError(f"log {path} is not a slate log: its metadata has no 'slate' entry")
    K = int(meta["slate_size"])
    refused = _refused(metadata, K)
    if estimators is None:  # every estimator whose assumptions the log's logger can meet
        names = [n for n in SLATE_ESTIMATORS if n not in refused]
    else:
        names = list(estimators)
        for n in names:
            if n in refused:
                raise InputError(f"estimator {n!r} is refused on log {path}: {refused[n]}")
    ests = [make_slate_estimator(n) for n in names]
    if target.slate_size != K:
        raise InputError(f"target slate_size must equal the log's ({K}); got {target.slate_size}")
    n_items = target.n_items
    q_table = None
    if any(e.needs_model for e in ests):
        q_table = fit_position_item_table(path, K, n_items, batch_rows)
    cache = marginals if marginals is not None else MarginalCache(target, marginal_samples, seed)
    if cache.policy is not target:
        raise InputError("marginals must be a MarginalCache of the target policy")
    boot = n_bootstrap if method == "bootstrap" else 0
    moments: list[Moments | None] = [None] * len(ests)
    forms: list[Form | None] = [None] * len(ests)
    ess_num = [np.zeros(K) for _ in ests]
    ess_den = [np.zeros(K) for _ in ests]
    max_w = [0.0 for _ in ests]
    n_slates = 0
    for cols in _batches(path, batch_rows, K):
        arrays = _batch_arrays(cols, K, target, cache, q_table)
        terms = slate_terms(**arrays)
        assert terms.keys is not None  # asked for (keys=True)
        n_slates += terms.n
        for j, est in enumerate(ests):
            parts: SlateParts = est.parts(terms)
            x, forms[j] = parts.columns()
            m = Moments.of(x, keys=terms.keys, n_bootstrap=boot, seed=seed)
            moments[j] = m if moments[j] is None else moments[j].merge(m)  # type: ignore[union-attr]
            w = est.weights(terms)
            ess_num[j] += w.sum(axis=0)
            ess_den[j] += (w * w).sum(axis=0)
            max_w[j] = max(max_w[j], float(w.max()))
    out = []
    for j, est in enumerate(ests):
        mj, form = moments[j], forms[j]
        if mj is None or form is None:
            raise InputError(f"log {path} has no slates")
        if est.self_normalized:  # the weight mass of the whole log, not of each batch
            check_slate_mass(ess_num[j], est.name)
        iv: Interval = interval(mj, form, method=method, alpha=alpha)
        ess = float(
            np.min(np.where(ess_den[j] > 0, ess_num[j] ** 2 / np.maximum(ess_den[j], 1e-300), 0))
        )
        out.append(
            SlateEstimate(
                est.name,
                iv.value,
                iv.low,
                iv.high,
                method,
                ess,
                max_w[j],
                n_slates,
                _warnings(est.name, ess, n_slates),
            )
        )
    return out


FACTORED_LOGGERS: frozenset[str] = frozenset()
"""Slate logger types (their spec's ``type``) that draw each slot independently given the
context. offrec's slate loggers (Plackett-Luce, top-k with exploration) all rank without
replacement, so none is listed."""


def _refused(metadata: dict[str, Any], K: int) -> dict[str, str]:
    """Estimators whose assumptions the log's logger breaks, with the reason.

    PI's per-slot-marginal form is unbiased only for a logger whose slots are
    independent (:data:`~offrec.ope.slate.FACTORED_LOGGER`); for a logger that ranks
    without replacement its exact pseudo-inverse needs the logger's pairwise (slot, item)
    marginals, which a slate log does not carry, and the marginal form is biased even
    under additive clicks (shown by enumeration in ``tests/ope/test_slate.py``)."""
    policy = metadata.get("logging_policy")
    kind = policy.get("type") if isinstance(policy, dict) else None
    if K == 1 or kind in FACTORED_LOGGERS:
        return {}
    return {
        "pi": (
            f"its per-slot-marginal form assumes a logger whose slots are independent, and "
            f"this log's logger ({kind or 'unknown'}) ranks without replacement, where that "
            "form is biased even under additive clicks (the exact pseudo-inverse needs the "
            "logger's pairwise slot-item marginals, which the log does not carry); use "
            "iips (independent/pbm clicks), rips or cascade-dr (cascade) or sips"
        )
    }


def _warnings(name: str, ess: float, n_slates: int) -> tuple[str, ...]:
    """The one low-ESS rule (:data:`offrec.ope.trust.LOW_ESS`,
    :data:`~offrec.ope.trust.LOW_ESS_SHARE`), applied to slates."""
    from offrec.ope.trust import LOW_ESS, LOW_ESS_SHARE

    if ess < LOW_ESS or ess < LOW_ESS_SHARE * n_slates:
        return (
            f"{name}: effective sample size {ess:.3g} of {n_slates:,} slates is too low to "
            "trust the estimate or its interval",
        )
    return ()
