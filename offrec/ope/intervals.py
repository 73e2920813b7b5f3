r"""One interval engine for every estimator, bandit or session: bootstrap, t and empirical Bernstein.

Every estimator is a :class:`Form` over per-row (bandit) or per-session (sequential)
columns: a plain-mean column :math:`A` and ``K`` ratio pairs :math:`(B_t, C_t)`,

.. math::

    \hat V = \bar A + \sum_{t=1}^{K} \frac{\bar B_t}{\bar C_t}

(``K = 0`` for IPS / DM / DR / PDIS, ``K = 1`` for SNIPS / SNDR / WTIS, ``K = H`` for
WPDIS; a ratio whose denominator mean is 0 contributes 0). The engine reads only the
mergeable :class:`~offrec.ope.moments.Moments` of those columns, so the same code serves
an array in memory, a stream of batches and a cluster:

- ``"normal"``: :math:`\hat V \pm t_{1-\alpha/2,\,n-1}\, s_\psi / \sqrt n` with
  :math:`s_\psi^2 = g^\top \hat\Sigma g`, :math:`\hat\Sigma` the columns' sample
  covariance and :math:`g = \nabla \hat V` at the column means (the delta method: for
  the self-normalized estimators :math:`\psi_i = A_i + \sum_t (B_{it} - R_t C_{it})/\bar C_t`,
  :math:`R_t = \bar B_t / \bar C_t`; for the others :math:`\psi = A`).
- ``"bernstein"``: the empirical Bernstein bound (Maurer & Pontil, 2009, Theorem 4),
  :math:`\hat V \pm \big(\sqrt{2 s_\psi^2 \ln(4/\alpha)/n} + 7 R_\psi \ln(4/\alpha)/(3(n-1))\big)`,
  a finite-sample guarantee for i.i.d. contributions in a range of width
  :math:`R_\psi`. Pass ``bound`` (e.g. ``lambda_ * max reward`` for clipped IPS) for the
  guarantee to hold; by default :math:`R_\psi = \sum_j |g_j| (\max_i X_{ij} - \min_i X_{ij})`
  is plugged in: the observed range of :math:`\psi` for the plain estimators, a
  conservative cover of it for the self-normalized ones, and not a bound in general.
- ``"bootstrap"``: the percentile interval of :math:`\hat V` recomputed on
  double-or-nothing resamples (:mod:`offrec.ope.moments`), self-normalized estimators
  re-normalized in every resample:
  :math:`\hat V_b = S_{A b}/N_b + \sum_t S_{B_t b}/S_{C_t b}`. Resamples whose ratio is
  undefined (all resampled weights 0) are left out of the quantiles.

:class:`Contrast` applies the same engine to a difference of estimates on one log
(e.g. a candidate minus the logger): the paired difference, whose variance counts the
covariance of the two estimates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from offrec.core.errors import InputError
from offrec.core.validation import check_scalar
from offrec.ope.moments import Moments

METHODS: tuple[str, ...] = ("bootstrap", "normal", "bernstein")
"""Interval methods, by name."""


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided ``1 - alpha`` interval and how it was made."""

    value: float
    low: float
    high: float
    method: str
    alpha: float
    n_bootstrap: int | None = None


@dataclass(frozen=True)
class Form:
    r"""Where an estimator's columns sit in a :class:`~offrec.ope.moments.Moments`:
    ``a`` the plain-mean column (or None), ``b``/``c`` the ratio pairs' columns."""

    a: int | None
    b: tuple[int, ...] = ()
    c: tuple[int, ...] = ()

    def value(self, mean: np.ndarray) -> float:
        v = 0.0 if self.a is None else float(mean[self.a])
        for bt, ct in zip(self.b, self.c, strict=True):
            if mean[ct] != 0:
                v += float(mean[bt]) / float(mean[ct])
        return v

    def grad(self, mean: np.ndarray) -> np.ndarray:
        g = np.zeros(mean.shape[0])
        if self.a is not None:
            g[self.a] += 1.0
        for bt, ct in zip(self.b, self.c, strict=True):
            if mean[ct] != 0:
                g[bt] += 1.0 / mean[ct]
                g[ct] -= mean[bt] / mean[ct] ** 2
        return g

    def boot_values(self, boot: np.ndarray, boot_n: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            v = boot[self.a] / boot_n if self.a is not None else np.zeros(boot.shape[1])
            for bt, ct in zip(self.b, self.c, strict=True):
                v = v + np.where(boot[ct] != 0, boot[bt] / boot[ct], 0.0)
        return v


@dataclass(frozen=True)
class Contrast:
    """A signed sum of estimates on the same rows, e.g. ``{candidate: +1, logger: -1}``."""

    terms: tuple[tuple[Form, float], ...] = field(default_factory=tuple)

    def value(self, mean: np.ndarray) -> float:
        return sum(s * f.value(mean) for f, s in self.terms)

    def grad(self, mean: np.ndarray) -> np.ndarray:
        return sum((s * f.grad(mean) for f, s in self.terms), np.zeros(mean.shape[0]))

    def boot_values(self, boot: np.ndarray, boot_n: np.ndarray) -> np.ndarray:
        return sum(
            (s * f.boot_values(boot, boot_n) for f, s in self.terms), np.zeros(boot.shape[1])
        )


def min_bootstrap(alpha: float) -> int:
    """The fewest resamples that can form a ``1 - alpha`` percentile bootstrap interval:
    each tail beyond an endpoint must hold at least one resample, ``B * alpha / 2 >= 1``,
    so ``B >= ceil(2 / alpha)`` (40 for a 95% interval). Fewer resamples give endpoints
    interpolated inside the resamples' range, which can exclude the estimate itself.

    >>> min_bootstrap(0.05), min_bootstrap(0.1)
    (40, 20)
    """
    return math.ceil(2 / alpha - 1e-9)


def check_interval_options(
    method: str, n_bootstrap: int, alpha: float, bound: float | None = None
) -> None:
    """Check the interval options; errors name the option and the rule."""
    if method not in METHODS:
        raise InputError(f"interval method must be one of {list(METHODS)}; got {method!r}")
    check_scalar(n_bootstrap, "n_bootstrap", int, min=1)
    check_scalar(alpha, "alpha", float, min=0.0, max=1.0, min_inclusive=False, max_inclusive=False)
    if method == "bootstrap" and n_bootstrap < min_bootstrap(alpha):
        raise InputError(
            f"n_bootstrap must be >= {min_bootstrap(alpha)} for a {100 * (1 - alpha):g}% bootstrap "
            f"interval (each tail beyond an endpoint needs a resample: n_bootstrap * alpha / 2 "
            f">= 1); got {n_bootstrap}"
        )
    if bound is not None:
        check_scalar(bound, "bound", float, min=0.0)


def interval(
    moments: Moments,
    form: Form | Contrast,
    *,
    method: str,
    alpha: float = 0.05,
    bound: float | None = None,
) -> Interval:
    """The estimate ``form`` describes, with a ``1 - alpha`` interval by ``method``.

    ``moments`` must carry bootstrap sums for ``method="bootstrap"``.
    """
    if moments.n < 2:
        raise InputError(f"an interval needs at least 2 rows; got {moments.n}")
    value = form.value(moments.mean)
    if method == "bootstrap":
        if moments.boot is None or moments.boot_n is None:
            raise InputError("the bootstrap needs resample sums: evaluate with n_bootstrap > 0")
        boot = form.boot_values(moments.boot, moments.boot_n)
        boot = boot[np.isfinite(boot)]
        if boot.size == 0:
            raise InputError("every bootstrap resample is undefined (all weights 0)")
        low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
        return Interval(value, float(low), float(high), method, alpha, moments.boot.shape[1])
    g = form.grad(moments.mean)
    sd = math.sqrt(_variance(moments, g))
    n = moments.n
    if method == "normal":
        from scipy.special import stdtrit  # imported when used: slow to import

        half = float(stdtrit(n - 1, 1 - alpha / 2)) * sd / math.sqrt(n)
    elif method == "bernstein":
        spread = np.where(np.isfinite(moments.high - moments.low), moments.high - moments.low, 0)
        width = float(np.abs(g) @ spread) if bound is None else bound
        log_term = math.log(4 / alpha)
        half = math.sqrt(2 * sd**2 * log_term / n) + 7 * width * log_term / (3 * (n - 1))
    else:
        raise InputError(f"interval method must be one of {list(METHODS)}; got {method!r}")
    return Interval(value, value - half, value + half, method, alpha, None)


def standard_error(moments: Moments, form: Form | Contrast) -> float:
    """Delta-method standard error of the estimate ``form`` describes."""
    g = form.grad(moments.mean)
    return math.sqrt(_variance(moments, g) / max(moments.n, 1))


def _variance(moments: Moments, g: np.ndarray) -> float:
    r""":math:`g^T \Sigma g` (clipped at 0) over the columns the form reads (``g != 0``)
    only: another estimator's nan column must not turn this one's interval nan
    (``0 * nan`` is nan)."""
    idx = np.flatnonzero(g)
    v = float(g[idx] @ moments.cov[np.ix_(idx, idx)] @ g[idx])
    return v if not v < 0 else 0.0
