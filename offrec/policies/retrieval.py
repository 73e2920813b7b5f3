r"""Top-``M`` retrieval over a large catalog by a linear score, cached per query.

The score of item :math:`i` for a query :math:`x \in R^p` is
:math:`s(x, i) = b_i + \sum_j x_j W_{ji}` (``W`` (p, n_items) float32, ``b`` (n_items,)).
:class:`Retriever` returns the ``M`` highest-scoring items of each query (ties: the
smaller item id), by one of three backends (:data:`BACKENDS`):

- ``"numpy"`` (the reference, exact): the catalog is scanned in blocks of queries x items
  (one float32 product of a fixed shape per block, so a query's result does not depend on
  which other queries share its block); the first small item block is sorted and later
  blocks only contribute the scores above the running ``M``-th best (one comparison per
  pair), merged by a sort of ``M`` + new entries per row.
- ``"faiss"`` (exact, the default where faiss is installed): the items are put in the
  cells of an inverted-file index (below) and each cell :math:`c` carries a ball bound
  :math:`\max_{i \in c} s(x, i) \le x^\top \mu_c + \|x\| r_c` (:math:`\mu_c` the mean of
  its items, :math:`r_c` their largest distance to it; the bias rides as one more
  coordinate). A first search of the few cells of highest bound gives a lower bound
  :math:`\tau_1` of the ``M``-th best score; then every cell whose bound reaches
  :math:`\tau_1` is searched, which cannot miss an item of the top ``M`` (branch and bound
  with a certificate). The top ``2M`` found are re-scored per row in float32 and the top
  ``M`` sorted by (score, item id). A row whose ``2M``-th score comes within a relative
  :data:`TIE_RTOL` of its ``M``-th (a tie that may reach past the ``2M``), or whose bound
  reaches half the cells (no pruning: e.g. a zero query, all scores tied), is answered by
  ``"numpy"``. So the result is the exact top ``M`` with the same tie rule, whatever
  queries share a call (up to ties closer than float32 rounding, where the two exact
  paths may differ). Measured at 10^6 items x 18 dimensions (a trained
  :class:`~offrec.policies.bandits.hybrid.HybridLinear`): about 4% of the cells searched
  per query (median), 0.5-0.9 ms per query against 1.3-2 ms for faiss's flat exact
  index and 1.8-2.5 ms for ``"numpy"``, plus 1.5-3 s to build the index once. On
  unstructured items (isotropic noise) the bound prunes little and most rows fall back
  to ``"numpy"``.
- ``"ivf"`` (approximate nearest neighbours): an inverted-file index over the items
  (``faiss.IndexIVFFlat``, ``nlist`` k-means cells, ``nprobe`` cells searched per query)
  after the usual reduction of the maximum inner product to a nearest neighbour in L2
  (Bachrach et al., RecSys 2014): item :math:`w_i \mapsto [w_i, \sqrt{R^2 - \|w_i\|^2}]`,
  query :math:`x \mapsto [x, 0]`, :math:`R = \max_i \|w_i\|`, so
  :math:`\|x' - w'_i\|^2 = \|x\|^2 + R^2 - 2 x^\top w_i`. The top ``M`` it returns are
  *defined* by the index (its k-means seed is fixed, one thread, queries searched in
  padded blocks of a fixed shape, so the same query always gets the same items); a
  policy built on it is the policy it is, and its propensities are exact for that
  policy. :meth:`Retriever.recall` measures its recall@M against the exact top ``M``;
  a row for which the probed cells hold fewer than ``M`` items is answered exactly.
  ``"faiss"`` and ``"ivf"`` share the index (built once per catalog).

The index can be kept with a model (:meth:`Retriever.export_index`, written by
:func:`~offrec.policies.persist.save_policy`) and given back to a new retriever
(:meth:`Retriever.import_index`), which takes it only when its key matches: the sha256 of
the catalog (``W``, ``b``), ``nlist``, the k-means ``seed`` and :data:`INDEX_FORMAT`
(else it builds its own, as without one). A loaded index gives the same retrievals as a
built one (tested): the items, their cells and the cells' bounds are the same.

Cost: ``"numpy"`` ``O(n_queries x n_items x p)``; ``"faiss"`` / ``"ivf"``: a build of
``O(n_items x nlist x p)`` once per catalog, then ``O(nlist p)`` plus the items of the
searched cells per query. Memory: ``O(block)`` plus the index (a copy of the catalog,
``4 (p + 1) n_items`` bytes) plus the cache. Distinct queries are cached (at most ``cache_rows`` of them): in a
log a user's profile is the same at every visit, so the catalog is scanned once per
user, not once per row; concurrent callers (the engine's threads) compute a missing query
once (the computation is serialized and the cache re-read under its lock).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from offrec.core.errors import InputError
from offrec.core.hashing import distinct_rows
from offrec.core.threads import one_blas_thread
from offrec.core.validation import check_scalar

CACHE_BYTES = 128 << 20
"""Default bound of a retriever's cache of per-query results."""

BACKENDS = ("numpy", "faiss", "ivf")
"""Retrieval backends (module docstring): exact reference, exact faiss, approximate IVF."""

TIE_RTOL = 1e-5
"""``"faiss"``: a row whose ``2M``-th score is within this relative distance of its
``M``-th is answered by the reference scan (module docstring)."""

INDEX_FORMAT = "offrec.retrieval.ivf-flat-l2/1"
"""What an exported index is: ``faiss.IndexIVFFlat`` over the L2-reduced item rows, with
its cells' centres and radii (changing the build changes this name)."""

_FAISS_LOCK = threading.Lock()  # faiss's BLAS threshold and thread count are global


def has_faiss() -> bool:
    """True when faiss (``pip install offrec[catalog]``) can be imported."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


INDEX_MIN_ITEMS = 50_000
"""Below this many items the numpy scan is one or a few blocks: no index is worth building."""


def exact_backend(n_items: int) -> str:
    """The fastest exact backend for ``n_items``: ``"faiss"`` when installed and the
    catalog has at least :data:`INDEX_MIN_ITEMS` items, else ``"numpy"``."""
    return "faiss" if n_items >= INDEX_MIN_ITEMS and has_faiss() else "numpy"


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise InputError(
            "retrieval backends 'faiss' and 'ivf' need faiss: pip install 'offrec[catalog]' "
            "(or use the exact numpy backend)"
        ) from None
    return faiss


@contextlib.contextmanager
def _faiss_settings() -> Iterator[Any]:
    """faiss on one thread, through BLAS for every query count (its own per-query kernel
    is ~10x slower at these widths); both settings are global: restored after."""
    faiss = _faiss()
    with _FAISS_LOCK, one_blas_thread():
        threads = faiss.omp_get_max_threads()
        threshold = faiss.cvar.distance_compute_blas_threshold
        faiss.omp_set_num_threads(1)
        faiss.cvar.distance_compute_blas_threshold = 0
        try:
            yield faiss
        finally:
            faiss.cvar.distance_compute_blas_threshold = threshold
            faiss.omp_set_num_threads(threads)


class Retriever:
    """Top-``m`` items of a linear score (module docstring), cached per query row.

    Args:
        weights: (p, n_items) float32 item matrix ``W``.
        bias: (n_items,) float32 ``b`` (``-inf`` excludes an item; ``"numpy"`` only).
        m: number of candidates per query, ``1 <= m <= n_items``.
        cache_rows: at most this many distinct queries are remembered (default: what
            fits in :data:`CACHE_BYTES`).
        backend: one of :data:`BACKENDS`.
        nlist, nprobe: ``"ivf"``: k-means cells (default ``sqrt(n_items)``, at most
            ``n_items / 39``) and cells searched per query (default ``max(1, nlist // 64)``).
        seed: ``"ivf"``: the k-means seed.
    """

    USERS_PER_BLOCK = 64
    ITEMS_PER_BLOCK = 16_384
    FAISS_QUERY_BLOCK = 256
    """``"ivf"`` searches queries in padded blocks of this fixed shape."""

    def __init__(
        self,
        weights: np.ndarray,
        bias: np.ndarray,
        m: int,
        cache_rows: int | None = None,
        *,
        backend: str = "numpy",
        nlist: int | None = None,
        nprobe: int | None = None,
        seed: int = 0,
    ) -> None:
        self.weights = np.ascontiguousarray(weights, np.float32)
        self.bias = np.asarray(bias, np.float32)
        p, n_items = self.weights.shape
        check_scalar(m, "candidates", int, min=1)
        if m > n_items:
            raise InputError(f"candidates must be <= n_items={n_items}; got {m}")
        if self.bias.shape != (n_items,):
            raise InputError(f"bias must have shape ({n_items},); got {self.bias.shape}")
        if backend not in BACKENDS:
            raise InputError(f"retrieval must be one of {list(BACKENDS)}; got {backend!r}")
        if backend != "numpy":
            _faiss()  # installed, or a one-line error now
            if not np.isfinite(self.bias).all():
                raise InputError(
                    f"retrieval {backend!r} needs a finite bias (no excluded items); "
                    "use retrieval='numpy' with a support mask"
                )
        self.m, self.backend, self.seed = m, backend, int(seed)
        if nlist is None:
            nlist = int(np.clip(round(np.sqrt(n_items)), 1, max(1, n_items // 39)))
        check_scalar(nlist, "nlist", int, min=1, max=n_items)
        if nprobe is None:
            nprobe = max(1, nlist // 64)
        check_scalar(nprobe, "nprobe", int, min=1, max=nlist)
        self.nlist, self.nprobe = nlist, nprobe
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
        self._compute = threading.Lock()
        self._index: Any = None  # the faiss IVF index, built at the first search
        self._cells: tuple[np.ndarray, np.ndarray] | None = None  # its cells' centres, radii
        self._catalog_sha256: str | None = None

    def __getstate__(self) -> dict[str, Any]:  # picklable (Ray): locks and index are not
        state = dict(self.__dict__)
        del state["_lock"], state["_compute"]
        if self._index is not None:  # kept exactly as built
            state["_index"] = _faiss().serialize_index(self._index)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock, self._compute = threading.Lock(), threading.Lock()
        if self._index is not None:
            self._index = _faiss().deserialize_index(self._index)

    # -- the index, kept with a model ----------------------------------------------------
    def catalog_sha256(self) -> str:
        """sha256 of the catalog this retriever scores: shapes, then ``W`` and ``b`` as
        float32 bytes (computed once)."""
        if self._catalog_sha256 is None:
            h = hashlib.sha256(f"{self.weights.shape}".encode())
            h.update(self.weights.data.cast("B"))
            h.update(np.ascontiguousarray(self.bias).data.cast("B"))
            self._catalog_sha256 = h.hexdigest()
        return self._catalog_sha256

    def index_key(self) -> dict[str, str | int]:
        """What an index must have been built for to serve this retriever."""
        return {
            "format": INDEX_FORMAT,
            "catalog_sha256": self.catalog_sha256(),
            "nlist": self.nlist,
            "seed": self.seed,
        }

    def export_index(self) -> tuple[dict[str, np.ndarray], dict[str, str | int]]:
        """The IVF index (built now if it was not) as arrays (``index``: faiss's
        serialization, uint8; ``centres`` (nlist, p') float64; ``radius`` (nlist,)) and its
        :meth:`index_key`. ``"numpy"`` has no index: ``InputError``."""
        if self.backend == "numpy":
            raise InputError("retrieval 'numpy' has no index to export")
        with _faiss_settings() as faiss:
            index, centres, radius = self._ivf(faiss)
            blob = np.asarray(faiss.serialize_index(index), np.uint8)
        return {"index": blob, "centres": centres, "radius": radius}, self.index_key()

    def import_index(self, arrays: dict[str, np.ndarray], key: dict[str, Any]) -> bool:
        """Use an index from :meth:`export_index` when ``key`` equals this retriever's
        :meth:`index_key` (same catalog, ``nlist``, seed and format); return whether it was
        taken (else the index is built at the first search, as without one). An index
        whose key matches but whose content does not fit the catalog is refused."""
        if self.backend == "numpy" or key != self.index_key():
            return False
        faiss = _faiss()
        n_items = self.weights.shape[1]
        try:
            index = faiss.deserialize_index(np.ascontiguousarray(arrays["index"], np.uint8))
            centres = np.asarray(arrays["centres"], np.float64)
            radius = np.asarray(arrays["radius"], np.float64)
        except (KeyError, RuntimeError) as e:
            raise InputError(f"retrieval index cannot be read: {e}") from None
        dim = self._faiss_query(np.zeros((1, self.weights.shape[0]), np.float32), True).shape[1]
        got = (index.ntotal, getattr(index, "nlist", None), index.d, centres.shape, radius.shape)
        want = (n_items, self.nlist, dim, (self.nlist, dim - 1), (self.nlist,))
        if got != want:
            raise InputError(
                "retrieval index does not fit its catalog: (ntotal, nlist, d, centres, radius) "
                f"must be {want}; got {got}"
            )
        self._index, self._cells = index, (centres, radius)
        return True

    def clear(self) -> None:
        """Forget the cached results (the index, if built, stays)."""
        with self._lock:
            self._cache = tuple(a[:0] for a in self._cache)  # type: ignore[assignment]

    def retrieve(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Candidates (n, m) int32 in ascending item id and their scores (n, m) float32 for
        ``queries`` (n, p), through the cache (computed once per distinct query)."""
        q = np.ascontiguousarray(queries, np.float32)
        d = distinct_rows(q)
        uq = q[d.first]
        items, scores, hit = self._lookup(d.keys, uq)
        if not hit.all():
            with self._compute:  # one thread computes a query; the others wait, then read
                miss = np.flatnonzero(~hit)
                items_m, scores_m, hit_m = self._lookup(d.keys[miss], uq[miss])
                items[miss], scores[miss] = items_m, scores_m
                todo = miss[~hit_m]
                if todo.size:
                    items[todo], scores[todo] = self.top_m(uq[todo])
                    self._remember(d.keys[todo], uq[todo], items[todo], scores[todo])
        return items[d.inverse], scores[d.inverse]

    def _lookup(
        self, keys: np.ndarray, query: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cached items, scores and a hit mask for distinct queries."""
        c_keys, c_query, c_items, c_scores = self._cache  # one consistent snapshot
        items = np.empty((keys.size, self.m), np.int32)
        scores = np.empty((keys.size, self.m), np.float32)
        hit = np.zeros(keys.size, bool)
        if c_keys.size and keys.size:
            pos = np.minimum(np.searchsorted(c_keys, keys), c_keys.size - 1)
            hit = (c_keys[pos] == keys) & (c_query[pos] == query).all(axis=1)
            items[hit], scores[hit] = c_items[pos[hit]], c_scores[pos[hit]]
        return items, scores, hit

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
        """Top-``m`` items (ascending ids) and scores of each query (U, p) by this
        retriever's backend, no cache."""
        q = np.ascontiguousarray(queries, np.float32)
        if self.backend == "numpy" or q.shape[0] == 0:
            return self.top_m_numpy(q)
        return self._top_m_faiss(q)

    def recall(self, queries: np.ndarray) -> float:
        """Recall@m of this backend against the exact top ``m``: the mean over the distinct
        ``queries`` (U, p) of ``|found ∩ exact| / m`` (1.0 for an exact backend)."""
        q = np.ascontiguousarray(queries, np.float32)
        q = q[distinct_rows(q).first]
        if q.shape[0] == 0:
            raise InputError("recall needs at least one query; got none")
        found = self.top_m(q)[0]
        exact = found if self.backend != "ivf" else self._top_m_faiss(q, exact=True)[0]
        both = (found[:, :, None] == exact[:, None, :]).any(axis=2).sum(axis=1)
        return float(both.mean() / self.m)

    # -- backends ------------------------------------------------------------------------
    def _vectors(self, ivf: bool) -> np.ndarray:
        """Item rows for faiss (n_items, p [+ 1 for a bias] [+ 1 for the L2 reduction])."""
        rows = [self.weights.T]
        if self.bias.any():
            rows.append(self.bias[:, None])
        v = np.ascontiguousarray(np.hstack(rows), np.float32)
        if ivf:
            norm2 = np.einsum("ij,ij->i", v, v, dtype=np.float64)
            extra = np.sqrt(np.maximum(norm2.max() - norm2, 0.0)).astype(np.float32)
            v = np.ascontiguousarray(np.hstack([v, extra[:, None]]))
        return v

    def _faiss_query(self, q: np.ndarray, ivf: bool) -> np.ndarray:
        cols = [q]
        if self.bias.any():
            cols.append(np.ones((q.shape[0], 1), np.float32))
        if ivf:
            cols.append(np.zeros((q.shape[0], 1), np.float32))
        return np.ascontiguousarray(np.hstack(cols), np.float32)

    def _ivf(self, faiss: Any) -> tuple[Any, np.ndarray, np.ndarray]:
        r"""The IVF index (built at the first call) and, per cell, the mean of its items and
        their largest distance to it (in the score space, float64): the ball bound
        :math:`\max_{i \in c} x^\top w_i \le x^\top \mu_c + \|x\| r_c` of the exact search."""
        if self._index is None:
            v = self._vectors(ivf=True)
            quantizer = faiss.IndexFlatL2(v.shape[1])
            index = faiss.IndexIVFFlat(quantizer, v.shape[1], self.nlist, faiss.METRIC_L2)
            index.cp.seed = self.seed
            index.cp.niter = 10
            index.cp.max_points_per_centroid = 64  # a sample of <= 64 nlist items trains it
            index.train(v)
            index.add(v)
            space = v[:, :-1]  # without the L2-reduction coordinate
            centres = np.zeros((self.nlist, space.shape[1]))
            radius = np.full(self.nlist, -np.inf)  # an empty cell: never probed
            for c in range(self.nlist):  # one step per cell (about sqrt(n_items)), not per item
                size = index.invlists.list_size(c)
                if size:
                    ids = faiss.rev_swig_ptr(index.invlists.get_ids(c), size).copy()
                    e = space[ids].astype(np.float64)
                    centres[c] = e.mean(axis=0)
                    radius[c] = np.sqrt(((e - centres[c]) ** 2).sum(axis=1).max())
            self._index, self._cells = index, (centres, radius)
        centres, radius = self._cells  # type: ignore[misc]  # set with the index
        return self._index, centres, radius

    def _top_m_faiss(self, q: np.ndarray, exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
        r"""``"ivf"``: the cells nearest each query; ``"faiss"`` (or ``exact``): exact by the
        ball bound. A first pass over the few cells of highest bound gives a lower bound
        :math:`\tau_1` of the ``m``-th best score; every cell whose bound reaches
        :math:`\tau_1` (less a relative :data:`TIE_RTOL`) is then searched, so no item
        outside them can enter the top ``m``. Rows whose bound reaches half the cells
        (a degenerate query, e.g. all scores tied) and near-ties at the ``m``-th score are
        answered by the reference scan."""
        ann = self.backend == "ivf" and not exact
        m, n_items = self.m, self.weights.shape[1]
        k = m if ann else min(n_items, 2 * m)
        fq = self._faiss_query(q, ivf=True)
        ids = np.empty((q.shape[0], k), np.int64)
        reference = np.zeros(q.shape[0], bool)
        with _faiss_settings() as faiss:
            index, centres, radius = self._ivf(faiss)
            qb = self.FAISS_QUERY_BLOCK
            for lo in range(0, q.shape[0], qb):
                rows = min(qb, q.shape[0] - lo)
                if ann:  # padded blocks of a fixed shape: a query's cells never depend on others
                    index.nprobe = self.nprobe
                    block = np.zeros((qb, fq.shape[1]), np.float32)
                    block[:rows] = fq[lo : lo + rows]
                    ids[lo : lo + rows] = index.search(block, k)[1][:rows]
                    continue
                x = fq[lo : lo + rows]
                xs = x[:, :-1].astype(np.float64)
                # a zero query times an empty cell's -inf radius is nan: that cell is never probed
                with np.errstate(invalid="ignore"):
                    bound = xs @ centres.T + np.linalg.norm(xs, axis=1)[:, None] * radius
                order = np.argsort(-bound, axis=1)
                first = min(self.nlist, max(1, self.nlist // 128))
                index.nprobe = first
                found = index.search_preassigned(x, k, order[:, :first], None)[1]
                tau = np.sort(self._scores(found, q[lo : lo + rows]), axis=1)[:, -m]
                tol = TIE_RTOL * (np.abs(tau) + 1.0)
                count = (bound >= (tau - tol)[:, None]).sum(axis=1)
                far = ~np.isfinite(tau) | (count > self.nlist // 2)
                reference[lo : lo + rows] = far
                width = max(1, int(count[~far].max()) if (~far).any() else 1)
                probes = np.where(np.arange(width) < count[:, None], order[:, :width], -1)
                probes[far] = -1
                index.nprobe = width
                ids[lo : lo + rows] = index.search_preassigned(x, k, probes, None)[1]
        reference |= (ids < 0).any(axis=1)  # the searched cells held fewer than k items
        safe = np.where(ids < 0, 0, ids)
        best_i, best_s = _top_by_score(safe, self._scores(safe, q), k)
        if not ann and k < n_items:  # a tie at the m-th score that may reach past the k found
            gap = best_s[:, m - 1] - best_s[:, k - 1]
            reference |= gap <= TIE_RTOL * (np.abs(best_s[:, m - 1]) + 1.0)
        best_i, best_s = best_i[:, :m], best_s[:, :m]
        by_id = np.argsort(best_i, axis=1)
        out_i = np.take_along_axis(best_i, by_id, axis=1).astype(np.int32)
        out_s = np.take_along_axis(best_s, by_id, axis=1)
        bad = np.flatnonzero(reference)
        if bad.size:
            out_i[bad], out_s[bad] = self.top_m_numpy(q[bad])
        return out_i, out_s

    def _scores(self, ids: np.ndarray, q: np.ndarray) -> np.ndarray:
        """Scores (n, k) float32 of items ``ids`` (n, k) for queries ``q`` (n, p), per row
        (``-inf`` where ``ids < 0``)."""
        safe = np.where(ids < 0, 0, ids)
        s = (np.einsum("nkp,np->nk", self.weights.T[safe], q) + self.bias[safe]).astype(np.float32)
        s[ids < 0] = -np.inf
        return s

    def top_m_numpy(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-``m`` items (ascending ids) and scores of each query (U, p) by the
        reference blocked scan (module docstring), no cache."""
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


__all__ = [
    "BACKENDS",
    "CACHE_BYTES",
    "INDEX_FORMAT",
    "INDEX_MIN_ITEMS",
    "Retriever",
    "exact_backend",
    "has_faiss",
]
