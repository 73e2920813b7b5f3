"""A bounded, seeded sample of a log's rows (or whole sessions), drawn in one pass.

Models that cannot be fitted from mergeable sums (reward models, Q-models, logistic
learners) are fitted on a sample of at most ``max_rows`` rows. Row ``i`` is in the
sample when its hash :math:`u_i = h(\text{seed}, k_i)` is among the ``max_rows``
smallest (``k_i`` its session id, step and position; with ``sessions=True`` the session
id alone, so whole sessions are drawn). The sample is therefore the same for any batch
size, file layout or engine, and memory stays at about ``1.25 * max_rows`` rows.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from offrec.core.errors import InputError
from offrec.core.hashing import hash_uniform, row_keys
from offrec.logs.data import LoggedData
from offrec.logs.scan import Batch, concat

_SAMPLE_SALT = 0x5A3B


@dataclass
class Sample:
    """Sampled rows (those with the smallest hashes, at most ``limit``); mergeable.

    The rows stay in the batches' parts they were drawn from, with the indices of each
    part's rows still in the sample (``keep``); a merge concatenates and trims only the
    hashes ``u`` (8 bytes a row) and :attr:`data` concatenates the kept rows once, in
    order: the rows a merge of whole copies would keep, without copying the sample on
    every batch. ``max_position`` is the largest position over the whole log (not only
    the sample).
    """

    limit: int
    u: np.ndarray
    parts: tuple[LoggedData, ...] = ()
    keep: tuple[np.ndarray, ...] = ()
    max_position: int = 0

    @classmethod
    def of(cls, limit: int, u: np.ndarray, data: LoggedData | None, max_position: int) -> Sample:
        """All of ``data``'s rows (hashes ``u``), not yet trimmed to ``limit``."""
        if data is None:
            return cls(limit, u, (), (), max_position)
        return cls(limit, u, (data,), (np.arange(data.n_rows),), max_position)

    @functools.cached_property
    def data(self) -> LoggedData | None:
        """The sampled rows, in the order they were drawn (None when there are none)."""
        rows = [
            p if k.size == p.n_rows else p.subset(k)
            for p, k in zip(self.parts, self.keep, strict=True)
        ]
        return None if not rows else rows[0] if len(rows) == 1 else concat(rows)

    def merge(self, other: Sample) -> Sample:
        u = np.concatenate([self.u, other.u])
        parts, keep = self.parts + other.parts, self.keep + other.keep
        if u.size > self.limit:  # the limit smallest hashes, in order
            sel = np.sort(np.argpartition(u, self.limit - 1)[: self.limit])
            u = u[sel]
            starts = np.cumsum([0] + [k.size for k in keep])
            cuts = np.searchsorted(sel, starts)
            trimmed = [
                k[sel[lo:hi] - s]
                for k, s, lo, hi in zip(keep, starts[:-1], cuts[:-1], cuts[1:], strict=True)
            ]
            pairs = [(p, k) for p, k in zip(parts, trimmed, strict=True) if k.size]
            parts, keep = tuple(p for p, _ in pairs), tuple(k for _, k in pairs)
        return Sample(self.limit, u, parts, keep, max(self.max_position, other.max_position))


def sampler(limit: int, rate: float, seed: int, sessions: bool) -> Callable[[Batch], Sample]:
    """The kernel of :func:`draw_sample`: the rows of a batch whose hash is below ``rate``."""

    def kernel(batch: Batch) -> Sample:
        data = batch.data
        key = (
            row_keys(data.session_id)
            if sessions
            else row_keys(data.session_id, data.step, data.position)
        )
        u = hash_uniform(key, seed, _SAMPLE_SALT)
        rows = np.flatnonzero(u < rate)
        pos = int(data.position.max()) if data.n_rows else 0
        sample = Sample.of(limit, u[rows], data.subset(rows) if rows.size else None, pos)
        return sample.merge(Sample(limit, np.zeros(0)))  # trims to the limit

    return kernel


def draw_sample(
    source: Any,
    engine: Any,
    max_rows: int,
    seed: int,
    *,
    sessions: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Sample:
    """Draw the sample (module docstring) with ``engine`` over ``source``.

    With ``sessions=True`` whole sessions are kept (about ``max_rows`` rows of them).
    """
    n = source.n_rows
    rate = min(1.0, 1.25 * max_rows / max(n, 1))
    # sessions: no row cap (a cap would cut sessions); the rate bounds it in expectation
    limit = n if sessions else max_rows
    sample = engine.map_reduce(
        source, sampler(limit, rate, seed, sessions), sessions=sessions, progress=progress
    )
    if sample.data is None:
        raise InputError("the fitting sample is empty; raise the number of rows to fit on")
    return sample
