r"""Exact top-``M`` retrieval over a large catalog by a linear score, cached per query.

The score of item :math:`i` for a query :math:`x \in R^p` is
:math:`s(x, i) = b_i + \sum_j x_j W_{ji}` (``W`` (p, n_items) float32, ``b`` (n_items,)).
:class:`Retriever` returns the ``M`` highest-scoring items of each query (ties: the
smaller item id), exactly: the catalog is scanned in blocks of queries x items (one float32
product of a fixed shape per block, so a query's result does not depend on which other
queries share its block), the first small item block is sorted and later blocks only
contribute the scores above the running ``M``-th best (one comparison per pair; few pass
once the top is filled), merged by a sort of ``M`` + new entries per row.

Cost: ``O(n_queries x n_items x p)`` for the products plus one comparison per pair;
memory: ``O(block)`` plus the cache. Distinct queries are cached (at most ``cache_rows``
of them): in a log, a user's profile is the same at every visit, so the catalog is
scanned once per user, not once per row.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from offrec.core.errors import InputError
from offrec.core.hashing import row_keys
from offrec.core.threads import one_blas_thread
from offrec.core.validation import check_scalar

CACHE_BYTES = 128 << 20
"""Default bound of a retriever's cache of per-query results."""


class Retriever:
    """Exact top-``m`` items of a linear score (module docstring), cached per query row.

    Args:
        weights: (p, n_items) float32 item matrix ``W``.
        bias: (n_items,) float32 ``b`` (``-inf`` excludes an item).
        m: number of candidates per query, ``1 <= m <= n_items``.
        cache_rows: at most this many distinct queries are remembered (default: what
            fits in :data:`CACHE_BYTES`).
    """

    USERS_PER_BLOCK = 64
    ITEMS_PER_BLOCK = 16_384

    def __init__(
        self, weights: np.ndarray, bias: np.ndarray, m: int, cache_rows: int | None = None
    ) -> None:
        self.weights = np.ascontiguousarray(weights, np.float32)
        self.bias = np.asarray(bias, np.float32)
        p, n_items = self.weights.shape
        check_scalar(m, "candidates", int, min=1)
        if m > n_items:
            raise InputError(f"candidates must be <= n_items={n_items}; got {m}")
        if self.bias.shape != (n_items,):
            raise InputError(f"bias must have shape ({n_items},); got {self.bias.shape}")
        self.m = m
        per_row = m * 8 + 4 * p + 8
        self.cache_rows = (
            cache_rows if cache_rows is not None else max(1024, CACHE_BYTES // per_row)
        )
        # the cache: sorted keys, queries, items, scores; replaced as one tuple under the
        # lock, so a reader (another engine thread) always sees one consistent snapshot
        self._cache = (
            np.zeros(0, np.uint64),
            np.zeros((0, p), np.float32),
            np.zeros((0, m), np.int32),
            np.zeros((0, m), np.float32),
        )
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:  # picklable (Ray): the lock is not
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def retrieve(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Candidates (n, m) int32 in ascending item id and their scores (n, m) float32 for
        ``queries`` (n, p), through the cache."""
        q = np.ascontiguousarray(queries, np.float32)
        n = q.shape[0]
        keys = row_keys(*q.view(np.uint32).T) if n else np.zeros(0, np.uint64)
        uniq, first, inv = np.unique(keys, return_index=True, return_inverse=True)
        ok = (q == q[first][inv]).all(axis=1)  # a 64-bit hash collision: no cache
        c_keys, c_query, c_items, c_scores = self._cache  # one consistent snapshot
        pos = np.minimum(np.searchsorted(c_keys, uniq), max(c_keys.size - 1, 0))
        hit = np.zeros(uniq.size, bool)
        if c_keys.size:
            hit = (c_keys[pos] == uniq) & (c_query[pos] == q[first]).all(axis=1)
        miss = np.flatnonzero(~hit)
        items = np.empty((uniq.size, self.m), np.int32)
        scores = np.empty((uniq.size, self.m), np.float32)
        items[hit], scores[hit] = c_items[pos[hit]], c_scores[pos[hit]]
        if miss.size:
            items[miss], scores[miss] = self.top_m(q[first[miss]])
            self._remember(uniq[miss], q[first[miss]], items[miss], scores[miss])
        out_items, out_scores = items[inv], scores[inv]
        bad = np.flatnonzero(~ok)
        if bad.size:
            out_items[bad], out_scores[bad] = self.top_m(q[bad])
        return out_items, out_scores

    def _remember(
        self, keys: np.ndarray, query: np.ndarray, items: np.ndarray, scores: np.ndarray
    ) -> None:
        with self._lock:
            c_keys, c_query, c_items, c_scores = self._cache
            new = ~np.isin(keys, c_keys)  # another thread may have added them meanwhile
            room = self.cache_rows - c_keys.size
            if room <= 0 or not new.any():
                return
            take = np.flatnonzero(new)[:room]
            all_keys = np.concatenate([c_keys, keys[take]])
            order = np.argsort(all_keys, kind="stable")
            self._cache = (
                all_keys[order],
                np.concatenate([c_query, query[take]])[order],
                np.concatenate([c_items, items[take]])[order],
                np.concatenate([c_scores, scores[take]])[order],
            )

    def top_m(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-``m`` items (ascending ids) and scores of each query (U, p), no cache."""
        q = np.asarray(queries, np.float32)
        u_total, m = q.shape[0], self.m
        ub, ib, n_items = self.USERS_PER_BLOCK, self.ITEMS_PER_BLOCK, self.weights.shape[1]
        out_items = np.empty((u_total, m), np.int32)
        out_scores = np.empty((u_total, m), np.float32)
        first = min(n_items, max(4 * m, 2048))  # a small first block, sorted
        with one_blas_thread():
            for u0 in range(0, u_total, ub):
                x = np.zeros((ub, q.shape[1]), np.float32)  # a fixed shape per block
                rows = min(ub, u_total - u0)
                x[:rows] = q[u0 : u0 + rows]
                best_i = best_s = tau = None
                for a0 in [0, *range(first, n_items, ib)]:
                    a1 = min(a0 + ib, n_items) if a0 else first
                    s = (x @ self.weights[:, a0:a1])[:rows]
                    s += self.bias[a0:a1]
                    if best_i is None or best_s is None or tau is None:
                        ids = np.broadcast_to(np.arange(a0, a1), s.shape)
                        best_i, best_s = _top_by_score(ids, s, m)
                    else:
                        above = s > tau[:, None]
                        if not np.count_nonzero(above):
                            continue
                        r, c = np.divmod(np.flatnonzero(above), a1 - a0)
                        k = int(np.bincount(r, minlength=rows).max())
                        new_i = np.zeros((rows, k), np.int64)
                        new_s = np.full((rows, k), -np.inf, np.float32)
                        slot = np.arange(r.size) - np.searchsorted(r, r)
                        new_i[r, slot], new_s[r, slot] = c + a0, s[r, c]
                        best_i, best_s = _top_by_score(
                            np.concatenate([best_i, new_i], axis=1),
                            np.concatenate([best_s, new_s], axis=1),
                            m,
                        )
                    tau = best_s[:, -1]
                if best_i is None or best_s is None:  # pragma: no cover - n_items >= 1
                    raise InputError("the catalog is empty")
                by_id = np.argsort(best_i, axis=1)
                out_items[u0 : u0 + rows] = np.take_along_axis(best_i, by_id, axis=1)
                out_scores[u0 : u0 + rows] = np.take_along_axis(best_s, by_id, axis=1)
        return out_items, out_scores


def _top_by_score(ids: np.ndarray, scores: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the ``m`` entries of highest score (ties: smaller id first), in that order:
    ids (r, m) int64 and scores (r, m) float32."""
    order = np.lexsort((ids, -scores), axis=1)[:, :m]
    return (
        np.take_along_axis(np.asarray(ids, np.int64), order, axis=1),
        np.take_along_axis(scores, order, axis=1),
    )


__all__ = ["CACHE_BYTES", "Retriever"]
