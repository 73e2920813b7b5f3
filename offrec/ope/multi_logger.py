r"""Estimators for a log written by several logging policies (successive deployments).

A log whose rows come from loggers :math:`\pi_1, ..., \pi_K` (stratum :math:`k_i` of row
:math:`i`, :math:`n_k` rows each, :math:`\rho_k = n_k / n`) is already evaluated without
bias by IPS and DR with each row's own propensity :math:`p_i = \pi_{k_i}(a_i|x_i)`: that
is OBP's ``MultiLoggersNaive*`` (Agarwal et al.'s *naive*, Kallus et al.'s *averaged*
IS), identical to :class:`~offrec.ope.estimators.IPS` / :class:`~offrec.ope.estimators.DR`,
so it is not repeated here. Two better-behaved forms are:

**Balanced** (Agarwal et al. 2017; Kallus et al. 2021): the weight against the *average*
logger :math:`\pi_{avg}(a|x) = \sum_k \rho_k \pi_k(a|x)`,

.. math::

    \hat V_{\mathrm{BIPS}} = \frac1n \sum_i \min\Big(\frac{\pi_e(a_i|x_i)}{\pi_{avg}(a_i|x_i)},
        \lambda\Big) r_i, \qquad
    \hat V_{\mathrm{BDR}} = \frac1n \sum_i \Big[\hat q^{\pi_e}(x_i) + \min(w^{avg}_i, \lambda)
        \big(r_i - \hat q(x_i, a_i)\big)\Big]

(argument ``pscore_avg``, shape ``(n,)``: :math:`\pi_{avg}(a_i|x_i)`, which needs every
logger's probability of the logged action; without it the row's own ``pscore`` is used,
the one-logger case). Its weights are never larger than the worst logger's, so its
variance is never worse than the naive form's.

**Weighted** (Agarwal et al. 2017): the per-stratum estimates averaged with precision
weights, row :math:`i`'s term multiplied by

.. math::

    c_{k_i} = \frac{n}{\hat\sigma^2_{k_i} \sum_j n_j / \hat\sigma^2_j}, \qquad
    \hat V_{\mathrm{WIPS}} = \frac1n \sum_i c_{k_i} \min(w_i, \lambda) r_i
        = \frac{\sum_k (n_k / \hat\sigma^2_k)\, \hat V_k}{\sum_k n_k / \hat\sigma^2_k},

:math:`\hat\sigma^2_k` the (population) variance of the IPS terms
:math:`\min(w_i, \lambda) r_i` in stratum :math:`k` (for DR: of the DR terms, and, as
in OBP 0.5.7, only the DR correction is multiplied by :math:`c_k`). Argument
``stratum_idx``, shape ``(n,)``: any labels (ints, or the log's ``model_version``
strings). A stratum whose terms have zero variance makes the weights undefined (an error).

Both equal OBP 0.5.7's ``MultiLoggersBalanced*`` / ``MultiLoggersWeighted*`` on the same
arrays (``tests/ope/test_multi_logger.py`` checks it to 1e-12). Without ``stratum_idx`` /
``pscore_avg`` (e.g. inside :func:`offrec.ope.evaluate`, whose logs carry no strata) they
are the one-logger IPS / DR. Assumptions: as IPS and DR, for every logger.

References:
    Aman Agarwal, Soumya Basu, Tobias Schnabel, Thorsten Joachims. "Effective Evaluation
    using Logged Bandit Feedback from Multiple Loggers." KDD 2017.
    Nathan Kallus, Yuta Saito, Masatoshi Uehara. "Optimal Off-Policy Evaluation from
    Multiple Logging Policies." ICML 2021.

By hand: weights :math:`w = (2, 1, 4, 0.625)`, IPS terms :math:`(2, 0, 4, 0.625)`; the
strata's variances are 1 and :math:`1.6875^2`, so :math:`c = (1.4802, 0.5198)` and
:math:`\hat V_{\mathrm{WIPS}} = (2 c_0 + 4.625 c_1)/4`; with :math:`\pi_{avg} = 0.5`
everywhere, balanced IPS is :math:`(2 + 0 + 2 + 1)/4`:

>>> import numpy as np
>>> arrays = dict(reward=np.array([1.0, 0.0, 1.0, 1.0]), action=np.array([0, 1, 1, 0]),
...               pscore=np.array([0.5, 0.5, 0.25, 0.8]),
...               action_dist=np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0], [0.5, 0.5]]))
>>> WeightedIPS().estimate_policy_value(**arrays, stratum_idx=np.array([0, 0, 1, 1]))
1.3411167512690356
>>> BalancedIPS().estimate_policy_value(**arrays, pscore_avg=np.array([0.5, 0.5, 0.5, 0.5]))
1.25
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from offrec.core.errors import InputError
from offrec.ope.estimators import DR, Estimator, Parts, clip_weights, residual
from offrec.ope.terms import RoundTerms, round_terms

__all__ = ["MULTI_LOGGER_ESTIMATORS", "BalancedDR", "BalancedIPS", "WeightedDR", "WeightedIPS"]


def _strata(stratum_idx: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(inverse (n,) in [0, K), counts (K,))`` of the labels in ``stratum_idx``."""
    labels = np.asarray(stratum_idx)
    if labels.ndim != 1 or labels.shape[0] != n:
        raise InputError(f"stratum_idx must have shape ({n},); got {labels.shape}")
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    return inverse.reshape(-1), counts


def _stratum_weights(terms: np.ndarray, inverse: np.ndarray, counts: np.ndarray) -> np.ndarray:
    r""":math:`c_k = n / (\hat\sigma^2_k \sum_j n_j/\hat\sigma^2_j)` per stratum (module docstring)."""
    mean = np.bincount(inverse, terms) / counts
    var = np.bincount(inverse, (terms - mean[inverse]) ** 2) / counts
    if np.any(var <= 0):
        k = int(np.flatnonzero(var <= 0)[0])
        raise InputError(
            f"stratum_idx: stratum {k} (of {counts.size}) has terms of zero variance; "
            "the weighted multiple-logger estimator is undefined (use the balanced one)"
        )
    return inverse.size / (var * np.sum(counts / var))


class _MultiLogger(Estimator):
    """Reads ``stratum_idx`` / ``pscore_avg`` next to the usual arrays."""

    uses: ClassVar[str] = ""
    assumptions: ClassVar[tuple[str, ...]] = (
        "each row's propensity is that of the logger that served it (or, balanced forms, "
        "the average logger's)",
        "together the loggers cover every action the target takes",
    )
    reference: ClassVar[str] = (
        "Agarwal, Basu, Schnabel & Joachims (2017), Effective evaluation using logged bandit "
        "feedback from multiple loggers, KDD; Kallus, Saito & Uehara (2021), Optimal "
        "off-policy evaluation from multiple logging policies, ICML"
    )

    def _parts(self, arrays: dict[str, Any]) -> Parts:
        arrays = dict(arrays)
        stratum_idx = arrays.pop("stratum_idx", None)
        pscore_avg = arrays.pop("pscore_avg", None)
        if self.needs_model and arrays.get("estimated_rewards") is None:
            return super()._parts(arrays)  # the usual "needs estimated_rewards" error
        if self.uses == "pscore_avg" and pscore_avg is not None:
            arrays["pscore"] = pscore_avg
        terms = round_terms(**arrays)
        if self.uses == "stratum_idx" and stratum_idx is not None:
            return self.weighted_parts(terms, *_strata(stratum_idx, terms.n))
        return self.parts(terms)

    def weighted_parts(
        self, terms: RoundTerms, inverse: np.ndarray, counts: np.ndarray
    ) -> Parts:  # pragma: no cover - only the weighted estimators use strata
        raise NotImplementedError


@dataclass(frozen=True)
class BalancedIPS(_MultiLogger):
    r"""IPS against the average logger (module docstring): :math:`\frac1n\sum_i
    \min(\pi_e(a_i|x_i)/\pi_{avg}(a_i|x_i), \lambda)\, r_i`; OBP's
    ``MultiLoggersBalancedInverseProbabilityWeighting``."""

    name: ClassVar[str] = "multi-balanced-ips"
    uses: ClassVar[str] = "pscore_avg"
    lambda_: float = math.inf

    def parts(self, terms: RoundTerms) -> Parts:
        return Parts(clip_weights(terms.weight, self.lambda_) * terms.reward)


@dataclass(frozen=True)
class BalancedDR(_MultiLogger):
    r"""DR against the average logger (module docstring); OBP's
    ``MultiLoggersBalancedDoublyRobust``."""

    name: ClassVar[str] = "multi-balanced-dr"
    uses: ClassVar[str] = "pscore_avg"
    needs_model: ClassVar[bool] = True
    lambda_: float = math.inf

    parts = DR.parts  # DR's terms, on the average logger's weights


@dataclass(frozen=True)
class WeightedIPS(_MultiLogger):
    r"""Precision-weighted average of per-logger IPS (module docstring); OBP's
    ``MultiLoggersWeightedInverseProbabilityWeighting``."""

    name: ClassVar[str] = "multi-weighted-ips"
    uses: ClassVar[str] = "stratum_idx"
    lambda_: float = math.inf

    def parts(self, terms: RoundTerms) -> Parts:
        return Parts(clip_weights(terms.weight, self.lambda_) * terms.reward)

    def weighted_parts(self, terms: RoundTerms, inverse: np.ndarray, counts: np.ndarray) -> Parts:
        x = clip_weights(terms.weight, self.lambda_) * terms.reward
        return Parts(x * _stratum_weights(x, inverse, counts)[inverse])


@dataclass(frozen=True)
class WeightedDR(_MultiLogger):
    r"""Precision-weighted DR (module docstring; only the correction is reweighted, as in
    OBP's ``MultiLoggersWeightedDoublyRobust``)."""

    name: ClassVar[str] = "multi-weighted-dr"
    uses: ClassVar[str] = "stratum_idx"
    needs_model: ClassVar[bool] = True
    lambda_: float = math.inf

    def parts(self, terms: RoundTerms) -> Parts:
        res = residual(terms, self.name)
        return Parts(terms.q_target + clip_weights(terms.weight, self.lambda_) * res)

    def weighted_parts(self, terms: RoundTerms, inverse: np.ndarray, counts: np.ndarray) -> Parts:
        res = residual(terms, self.name)
        assert terms.q_target is not None
        correction = clip_weights(terms.weight, self.lambda_) * res
        c = _stratum_weights(terms.q_target + correction, inverse, counts)
        return Parts(terms.q_target + correction * c[inverse])


MULTI_LOGGER_ESTIMATORS: dict[str, type[Estimator]] = {
    cls.name: cls for cls in (BalancedIPS, BalancedDR, WeightedIPS, WeightedDR)
}
"""Registered in :data:`offrec.ope.estimators.ESTIMATORS` by :mod:`offrec.ope`."""
