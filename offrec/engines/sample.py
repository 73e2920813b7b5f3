"""A bounded, seeded sample of a log's rows (or whole sessions), drawn in one pass.

Models that cannot be fitted from mergeable sums (reward models, Q-models, logistic
learners) are fitted on a sample of at most ``max_rows`` rows. Row ``i`` is in the
sample when its hash :math:`u_i = h(\text{seed}, k_i)` is among the ``max_rows``
smallest (``k_i`` its session id, step and position; with ``sessions=True`` the session
id alone, so whole sessions are drawn). The sample is therefore the same for any batch
size, file layout or engine, and memory stays at about ``1.25 * max_rows`` rows.
"""

from __future__ import annotations

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

    ``max_position`` is the largest position over the whole log (not only the sample).
    """

    limit: int
    u: np.ndarray
    data: LoggedData | None
    max_position: int = 0

    def merge(self, other: Sample) -> Sample:
        parts = [d for d in (self.data, other.data) if d is not None]
        u = np.concatenate([self.u, other.u])
        data = concat(parts) if parts else None
        if data is not None and u.size > self.limit:
            keep = np.sort(np.argpartition(u, self.limit - 1)[: self.limit])
            u, data = u[keep], data.subset(keep)
        return Sample(self.limit, u, data, max(self.max_position, other.max_position))


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
        sample = Sample(limit, u[rows], data.subset(rows) if rows.size else None, pos)
        return sample.merge(Sample(limit, np.zeros(0), None))  # trims to the limit

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
