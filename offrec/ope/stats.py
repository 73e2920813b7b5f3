r"""Mergeable partial sums over rows: the only thing an OPE kernel returns.

Every estimator in offrec is a smooth function of the means of a few per-row columns
(:math:`\hat V = \bar A + \sum_t \bar B_t / \bar C_t`, see :mod:`offrec.ope.intervals`).
A :class:`Moments` holds, for ``k`` columns ``X`` (rows ``i``), everything the
estimate, its analytic intervals and its bootstrap need:

- ``n``, the column means :math:`\bar X` and the co-moment matrix
  :math:`M = \sum_i (X_i - \bar X)(X_i - \bar X)^\top` (k, k), merged with the
  pairwise formula of Chan, Golub & LeVeque (1979), stable at any size;
- column minima and maxima (a range for the empirical Bernstein bound);
- optionally, bootstrap sums :math:`S_{jb} = \sum_i H_{bi} X_{ij}` (k, B) and sizes
  :math:`N_b = \sum_i H_{bi}` for ``B`` double-or-nothing resamples.

Two ``Moments`` over disjoint rows merge by :meth:`Moments.merge` into the ``Moments``
of their union, so one batch, a stream of batches and the partitions of a cluster
give the same numbers (up to floating-point summation order).

Bootstrap weights come from a hash, not from a generator's stream: row ``i`` with
stable key :math:`k_i` (e.g. its session id, step and position) is in resample ``b``
when bit ``b`` of :math:`h(\text{seed}, k_i, \lfloor b/64 \rfloor)` is set
(:func:`resample_bits`). So the resamples do not depend on batch size, file layout,
engine or number of workers. :math:`H_{bi} \in \{0, 1\}` with probability 1/2: the
double-or-nothing bootstrap (Owen & Eckles, 2012) with :math:`W = 2H`, whose factor 2
cancels in every ratio.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from offrec.core.hashing import GOLDEN, mix, row_keys, seed_key
from offrec.core.threads import one_blas_thread

__all__ = ["Moments", "merge_all", "resample_bits", "row_keys"]

_BITS_ROWS = 8192  # rows whose resample bits are hashed at once (8 MB of uint8 at B = 1000)
_BOOT_ROWS = 512  # rows per product: H (rows, B) float32 is 2 MB at B = 1000, cache-resident


def resample_bits(keys: np.ndarray, n_bootstrap: int, seed: int) -> np.ndarray:
    """Membership of each row in each resample, ``(n, n_bootstrap)`` uint8 in {0, 1}."""
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
        boot: (k, B) bootstrap sums, or None. boot_n: (B,) resample sizes, or None.
    """

    n: int
    mean: np.ndarray
    m2: np.ndarray
    low: np.ndarray
    high: np.ndarray
    boot: np.ndarray | None = None
    boot_n: np.ndarray | None = None

    @classmethod
    def of(
        cls, x: np.ndarray, *, keys: np.ndarray | None = None, n_bootstrap: int = 0, seed: int = 0
    ) -> Moments:
        """Moments of the rows of ``x`` (n, k); bootstrap sums when ``n_bootstrap > 0``
        (then ``keys`` (n,) uint64 are the rows' stable keys, see :func:`row_keys`)."""
        x = np.asarray(x, dtype=np.float64)
        n, k = x.shape
        if n == 0:
            return cls.empty(k, n_bootstrap)
        mean = x.mean(axis=0)
        dev = x - mean
        with one_blas_thread():
            m2 = dev.T @ dev
        boot = boot_n = None
        if n_bootstrap:
            if keys is None or keys.shape != (n,):
                raise ValueError(f"keys must have shape ({n},) for the bootstrap")
            boot, boot_n = _boot_sums(x, keys, n_bootstrap, seed)
        return cls(n, mean, m2, x.min(axis=0), x.max(axis=0), boot, boot_n)

    @classmethod
    def empty(cls, k: int, n_bootstrap: int = 0) -> Moments:
        boot = np.zeros((k, n_bootstrap)) if n_bootstrap else None
        boot_n = np.zeros(n_bootstrap) if n_bootstrap else None
        inf = np.full(k, np.inf)
        return cls(0, np.zeros(k), np.zeros((k, k)), inf, -inf, boot, boot_n)

    @property
    def k(self) -> int:
        return int(self.mean.shape[0])

    def merge(self, other: Moments) -> Moments:
        """The moments of the union of the two row sets (Chan et al.'s pairwise update)."""
        if other.k != self.k:
            raise ValueError(f"cannot merge moments of {self.k} and {other.k} columns")
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.n / n)
        m2 = self.m2 + other.m2 + np.outer(delta, delta) * (self.n * other.n / n)
        boot = boot_n = None
        if self.boot is not None and other.boot is not None:
            boot = self.boot + other.boot
            boot_n = self.boot_n + other.boot_n  # type: ignore[operator]
        return Moments(
            n,
            mean,
            m2,
            np.minimum(self.low, other.low),
            np.maximum(self.high, other.high),
            boot,
            boot_n,
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


def _boot_sums(
    x: np.ndarray, keys: np.ndarray, n_bootstrap: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap sums ``(k, B)`` and sizes ``(B,)``: float32 products over blocks of
    :data:`_BOOT_ROWS` rows (0/1 weights are exact in float32; a block's sum carries
    about 1e-7 relative rounding), accumulated in float64 across blocks. The sizes come
    out of the same product through a column of ones."""
    n, k = x.shape
    xf = np.empty((n, k + 1), np.float32)
    xf[:, :k] = x
    xf[:, k] = 1.0
    sums = np.zeros((n_bootstrap, k + 1))
    h = np.empty((_BOOT_ROWS, n_bootstrap), np.float32)
    acc = np.empty((n_bootstrap, k + 1), np.float32)
    with one_blas_thread():
        for lo in range(0, n, _BITS_ROWS):
            bits = resample_bits(keys[lo : lo + _BITS_ROWS], n_bootstrap, seed)
            for start in range(0, bits.shape[0], _BOOT_ROWS):
                hb = h[: min(_BOOT_ROWS, bits.shape[0] - start)]
                np.copyto(hb, bits[start : start + hb.shape[0]])
                np.matmul(hb.T, xf[lo + start : lo + start + hb.shape[0]], out=acc)
                sums += acc
    return np.ascontiguousarray(sums[:, :k].T), sums[:, k].copy()
