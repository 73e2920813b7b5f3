r"""Mergeable partial sums over rows: the only thing an OPE kernel returns.

Every estimator in offrec is a smooth function of the means of a few per-row columns
(:math:`\hat V = \bar A + \sum_t \bar B_t / \bar C_t`, see :mod:`offrec.ope.intervals`).
A :class:`Moments` holds, for ``k`` columns ``X`` (rows ``i``), everything the
estimate, its analytic intervals and its bootstrap need:

- ``n``, the column means :math:`\bar X` and the co-moment matrix
  :math:`M = \sum_i (X_i - \bar X)(X_i - \bar X)^\top` (k, k), merged with the
  pairwise formula of Chan, Golub & LeVeque (1979), stable at any size;
- column minima and maxima (a range for the empirical Bernstein bound);
- optionally, the column sums of each of :data:`N_BUCKETS` hash buckets (the
  bootstrap's units, below), from which the bootstrap sums
  :math:`S_{jb} = \sum_i H_{bi} X_{ij}` (k, B) and sizes :math:`N_b = \sum_i H_{bi}`
  of ``B`` resamples are computed once, after the last merge.

Two ``Moments`` over disjoint rows merge by :meth:`Moments.merge` into the ``Moments``
of their union, so one batch, a stream of batches and the partitions of a cluster
give the same numbers (up to floating-point summation order).

The bootstrap is a double-or-nothing bootstrap (Owen & Eckles, 2012) over hash buckets.
Row ``i`` with stable key :math:`k_i` (e.g. its session id, step and position) falls in
bucket :math:`g(i)`, the top 14 bits of :math:`h(\text{seed}, k_i)` (:math:`G = 2^{14}` buckets); bucket ``g`` is in
resample ``b`` when bit ``b`` of :math:`h(\text{seed}, g, \lfloor b/64 \rfloor)` is set
(:func:`resample_bits`), and every row of the bucket with it: :math:`H_{bi} = H_{b,g(i)}
\in \{0, 1\}` with probability 1/2, :math:`W = 2H`, whose factor 2 cancels in every
ratio. So the resamples do not depend on batch size, file layout, engine or number of
workers, and a kernel adds only ``k + 1`` bincounts per batch; the ``B x G`` products
run once per evaluation, not once per row.

Why buckets cost (almost) nothing: for a log of ``n`` rows, the linearised bootstrap variance of
a mean is :math:`n^{-2} \sum_g (\sum_{i \in g} (X_i - \bar X))^2`, whose expectation over
the random (hashed) grouping is :math:`(1 - 1/G)\, n^{-2} \sum_i (X_i - \bar X)^2`, the
row-level value; its relative spread from the grouping is about :math:`\sqrt{2/G}`
(1.1%), against :math:`\sqrt{2/B}` (4.5% at B = 1000) from the resampling itself. When
``n`` is well below ``G`` nearly every bucket holds one row and this is the row-level
double-or-nothing bootstrap. Resampling random groups of units is the random-group
method of variance estimation (Wolter, *Introduction to Variance Estimation*, ch. 2).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from offrec.core.hashing import GOLDEN, hash_keys, mix, row_keys, seed_key
from offrec.core.threads import one_blas_thread

__all__ = [
    "BITS_ROWS",
    "BOOT_ROWS",
    "N_BUCKETS",
    "Moments",
    "bucket_of",
    "merge_all",
    "resample_bits",
    "row_keys",
]

_BUCKET_BITS = 14
N_BUCKETS = 1 << _BUCKET_BITS  # bootstrap units: 16,384 float64 sums (128 KB) a column
_BUCKET_SALT = 0xB0C4E7
BITS_ROWS = 8192  # buckets whose resample bits are hashed at once (8 MB of uint8 at B = 1000)
BOOT_ROWS = 512  # buckets per product: H (512, B) float32 is 2 MB at B = 1000, cache-resident


def bucket_of(keys: np.ndarray, seed: int) -> np.ndarray:
    """The bootstrap bucket of each row key, ``(n,)`` intp in ``[0, N_BUCKETS)``."""
    return (hash_keys(keys, seed, _BUCKET_SALT) >> np.uint64(64 - _BUCKET_BITS)).astype(np.intp)


def resample_bits(keys: np.ndarray, n_bootstrap: int, seed: int) -> np.ndarray:
    """Membership of each key (a bucket) in each resample, ``(n, n_bootstrap)`` uint8 in {0, 1}."""
    n_words = -(-n_bootstrap // 64)
    base = seed_key(seed, 0xB007)
    with np.errstate(over="ignore"):
        k = mix(keys ^ base)[:, None] + np.arange(n_words, dtype=np.uint64)[None, :] * GOLDEN
        words = mix(k)  # (n, n_words)
    bits = np.unpackbits(words.view(np.uint8).reshape(len(keys), -1), axis=1)
    return bits[:, :n_bootstrap]


@dataclass
class Moments:
    """Mergeable sums over rows of ``k`` columns (see the module docstring).

    Attributes:
        n: rows. mean: (k,). m2: (k, k) co-moments about the mean.
        low, high: (k,) column minima and maxima.
        buckets: (k + 1, N_BUCKETS) column sums per bootstrap bucket, the last row the
            bucket's row count; None without a bootstrap.
        n_bootstrap, seed: the resamples ``buckets`` are for.
    """

    n: int
    mean: np.ndarray
    m2: np.ndarray
    low: np.ndarray
    high: np.ndarray
    buckets: np.ndarray | None = None
    n_bootstrap: int = 0
    seed: int = 0
    _resampled: tuple[np.ndarray, np.ndarray] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @classmethod
    def of(
        cls, x: np.ndarray, *, keys: np.ndarray | None = None, n_bootstrap: int = 0, seed: int = 0
    ) -> Moments:
        """Moments of the rows of ``x`` (n, k); bootstrap buckets when ``n_bootstrap > 0``
        (then ``keys`` (n,) uint64 are the rows' stable keys, see :func:`row_keys`)."""
        x = np.asarray(x, dtype=np.float64)
        n, k = x.shape
        if n == 0:
            return cls.empty(k, n_bootstrap, seed)
        mean = x.mean(axis=0)
        dev = x - mean
        with one_blas_thread():
            m2 = dev.T @ dev
        buckets = None
        if n_bootstrap:
            if keys is None or keys.shape != (n,):
                raise ValueError(f"keys must have shape ({n},) for the bootstrap")
            g = bucket_of(keys, seed)
            buckets = np.empty((k + 1, N_BUCKETS))
            for j in range(k):  # a loop over columns, each a vectorized bincount
                buckets[j] = np.bincount(g, weights=x[:, j], minlength=N_BUCKETS)
            buckets[k] = np.bincount(g, minlength=N_BUCKETS)
        return cls(n, mean, m2, x.min(axis=0), x.max(axis=0), buckets, n_bootstrap, seed)

    @classmethod
    def empty(cls, k: int, n_bootstrap: int = 0, seed: int = 0) -> Moments:
        buckets = np.zeros((k + 1, N_BUCKETS)) if n_bootstrap else None
        inf = np.full(k, np.inf)
        return cls(0, np.zeros(k), np.zeros((k, k)), inf, -inf, buckets, n_bootstrap, seed)

    @property
    def k(self) -> int:
        return int(self.mean.shape[0])

    @property
    def boot(self) -> np.ndarray | None:
        """Bootstrap sums :math:`S_{jb}`, (k, B), or None without a bootstrap."""
        return None if self.buckets is None else self._resample()[0]

    @property
    def boot_n(self) -> np.ndarray | None:
        """Resample sizes :math:`N_b` (rows in resample ``b``), (B,), or None."""
        return None if self.buckets is None else self._resample()[1]

    def _resample(self) -> tuple[np.ndarray, np.ndarray]:
        if self._resampled is None:
            assert self.buckets is not None
            used = np.flatnonzero(self.buckets[-1])  # empty buckets add nothing
            sums = _boot_sums(
                self.buckets[:, used].T, used.astype(np.uint64), self.n_bootstrap, self.seed
            )
            self._resampled = (np.ascontiguousarray(sums[:, :-1].T), sums[:, -1].copy())
        return self._resampled

    def merge(self, other: Moments) -> Moments:
        """The moments of the union of the two row sets (Chan et al.'s pairwise update)."""
        if other.k != self.k:
            raise ValueError(f"cannot merge moments of {self.k} and {other.k} columns")
        if (self.buckets is None) != (other.buckets is None) or (
            self.buckets is not None
            and (self.n_bootstrap, self.seed) != (other.n_bootstrap, other.seed)
        ):
            raise ValueError("cannot merge moments of different bootstraps")
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.n / n)
        m2 = self.m2 + other.m2 + np.outer(delta, delta) * (self.n * other.n / n)
        buckets = None if self.buckets is None else self.buckets + other.buckets
        return Moments(
            n,
            mean,
            m2,
            np.minimum(self.low, other.low),
            np.maximum(self.high, other.high),
            buckets,
            self.n_bootstrap,
            self.seed,
        )

    @property
    def cov(self) -> np.ndarray:
        """Sample covariance of the columns (ddof = 1), (k, k)."""
        return self.m2 / max(self.n - 1, 1)


def merge_all(parts: list[Any]) -> Any:
    """Merge a list of mergeable partials (anything with ``merge``) left to right."""
    if not parts:
        raise ValueError("nothing to merge: no batches")
    return functools.reduce(lambda a, b: a.merge(b), parts)


def _boot_sums(x: np.ndarray, keys: np.ndarray, n_bootstrap: int, seed: int) -> np.ndarray:
    """Resample sums ``(B, m)`` of the ``m`` columns of ``x`` (units, m), unit ``u`` in
    resample ``b`` when ``resample_bits(keys)[u, b]`` is set: float32 products over blocks
    of :data:`BOOT_ROWS` units (0/1 weights are exact in float32; a block's sum carries
    about 1e-7 relative rounding), accumulated in float64 across blocks."""
    n, m = x.shape
    xf = x.astype(np.float32)
    sums = np.zeros((n_bootstrap, m))
    h = np.empty((BOOT_ROWS, n_bootstrap), np.float32)
    acc = np.empty((n_bootstrap, m), np.float32)
    with one_blas_thread():
        for lo in range(0, n, BITS_ROWS):
            bits = resample_bits(keys[lo : lo + BITS_ROWS], n_bootstrap, seed)
            for start in range(0, bits.shape[0], BOOT_ROWS):
                hb = h[: min(BOOT_ROWS, bits.shape[0] - start)]
                np.copyto(hb, bits[start : start + hb.shape[0]])
                np.matmul(hb.T, xf[lo + start : lo + start + hb.shape[0]], out=acc)
                sums += acc
    return sums
