r"""Bandit off-policy estimators: each class owns its formula; a functional core on top.

Conventions follow the Open Bandit Pipeline (OBP) so results can be compared array for
array (argument names ``reward, action, pscore, action_dist, position,
estimated_rewards``; see :mod:`offrec.ope.terms` for the per-row quantities
:math:`w_i, \hat q_i, \hat q^\pi_i`).

An estimator is a class with a ``name`` and its parameters; its :meth:`Estimator.parts`
writes the estimate as sums over rows,

.. math::

    \hat V = \frac{1}{n}\sum_i A_i + \frac{\sum_i B_i}{\sum_i C_i}

(the second term only for the self-normalized estimators), so one implementation
serves an array in memory, a stream of batches and a cluster, and one interval engine
(:mod:`offrec.ope.intervals`) serves them all. A new estimator is one class here and
one line in :data:`ESTIMATORS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import numpy as np

from offrec.core.errors import InputError
from offrec.core.hashing import row_keys, seed_int
from offrec.core.validation import SeedLike, check_scalar
from offrec.ope.intervals import Form, Interval, check_interval_options, interval
from offrec.ope.moments import Moments
from offrec.ope.terms import RoundTerms, round_terms
from offrec.ope.trust import (
    REWARD_MODEL,
    SUPPORT,
    UNCONFOUNDED,
    WEIGHTS,
    EstimatorMeta,
)

_IS_ASSUMES = (UNCONFOUNDED, SUPPORT)
_DR_ASSUMES = (
    UNCONFOUNDED,
    SUPPORT,
    "unbiased when either the propensities or the reward model are right",
)
_DR_REF = "Dudik, Langford & Li (2011), Doubly robust policy evaluation and learning, ICML"


@dataclass(frozen=True)
class Parts:
    r"""An estimate as per-unit columns (rows of a bandit log, sessions of a session log):

    .. math::

        \hat V = \bar A + \sum_{k=1}^{K} \frac{\sum_i B_{ik}}{\sum_i C_{ik}}

    ``a`` (n,) is averaged; ``b`` and ``c`` form the ratio pairs: (n,) for one pair (the
    bandit self-normalized estimators), (n, K) for ``K`` pairs (the session ones: one per
    step for WPDIS, two per step for WDR). A pair whose denominator sums to 0 contributes 0
    when ``b`` is 2-D. Absent parts are None.
    """

    a: np.ndarray | None
    b: np.ndarray | None = None
    c: np.ndarray | None = None

    def columns(self) -> tuple[list[np.ndarray], Form]:
        """The columns, in order, and the :class:`~offrec.ope.intervals.Form` over them."""
        if self.b is None or self.c is None:
            return [x for x in (self.a,) if x is not None], Form(None if self.a is None else 0)
        b, c = np.asarray(self.b), np.asarray(self.c)
        b2 = b[:, None] if b.ndim == 1 else b
        c2 = c[:, None] if c.ndim == 1 else c
        k = b2.shape[1]
        first = 0 if self.a is None else 1
        cols = ([] if self.a is None else [self.a]) + list(b2.T) + list(c2.T)
        form = Form(
            None if self.a is None else 0,
            tuple(range(first, first + k)),
            tuple(range(first + k, first + 2 * k)),
        )
        return cols, form

    def value(self) -> float:
        v = 0.0 if self.a is None else float(self.a.mean())
        if self.b is not None and self.c is not None:
            if np.ndim(self.b) == 1:
                v += float(self.b.sum()) / float(self.c.sum())
            else:
                num, den = self.b.sum(axis=0), self.c.sum(axis=0)
                v += float(np.sum(np.divide(num, den, out=np.zeros_like(den), where=den != 0)))
        return v

    def influence(self) -> np.ndarray:
        r"""Per-unit contributions :math:`\psi_i` whose mean is :meth:`value` and whose sample
        variance over ``n`` is the delta-method variance:
        :math:`\psi_i = A_i + \sum_k (B_{ik} - R_k C_{ik}) / \bar C_k` (:math:`R_k = \bar B_k /
        \bar C_k`), shifted by a constant so that :math:`\bar\psi = \hat V`. Shape (n,).
        Used to pair two estimates on the same units
        (:func:`~offrec.ope.sequential.paired_difference`)."""
        cols, form = self.columns()
        x = np.column_stack(cols)
        mean = x.mean(axis=0)
        psi = (x - mean) @ form.grad(mean)
        return psi + self.value()

    def round_rewards(self) -> np.ndarray:
        """Per-round contributions whose mean is :meth:`value` (OBP's convention)."""
        if self.b is None or self.c is None:
            return np.zeros(0) if self.a is None else self.a
        scaled = self.b / float(self.c.mean())
        return scaled if self.a is None else self.a + scaled


@dataclass(frozen=True)
class Estimator(EstimatorMeta):
    """Base of the bandit estimator classes: a name, parameters, a formula (:meth:`parts`)
    and metadata (:class:`~offrec.ope.trust.EstimatorMeta`: ``reads``, ``assumptions``,
    ``reference``, ``diagnostics``; a new class sets at least ``name`` and ``reference``).

    ``estimate_policy_value(**arrays)``, ``estimate_round_rewards(**arrays)`` and
    ``estimate_interval(**arrays, method=..., ...)`` take the keyword arrays of
    :func:`estimate_policy_value` (``reward, action, pscore, action_dist, position,
    estimated_rewards``).
    """

    needs_model: ClassVar[bool] = False
    """Whether the estimator reads a reward model's ``estimated_rewards``."""
    self_normalized: ClassVar[bool] = False
    needs_groups: ClassVar[bool] = False
    """Whether the estimator reads item groups (``item_groups``, ``pscore_group``: MIPS)."""

    def weights(self, terms: RoundTerms) -> np.ndarray:
        """The importance weights the estimator averages with (item-level by default)."""
        return terms.weight

    def __post_init__(self) -> None:
        for key, value in self.params().items():
            if not (isinstance(value, float | int) and value == math.inf):
                check_scalar(value, f"{self.name} {key}", float, min=0.0)

    def params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def label(self) -> str:
        """``name`` plus the parameters that differ from the defaults, e.g. ``ips(lambda_=10)``."""
        set_ = {k: v for k, v in self.params().items() if v != math.inf}
        return self.name + (
            "" if not set_ else f"({', '.join(f'{k}={v}' for k, v in set_.items())})"
        )

    def parts(self, terms: RoundTerms) -> Parts:  # pragma: no cover - abstract
        """The estimate on ``terms`` as :class:`Parts` (the estimator's formula)."""
        raise NotImplementedError

    def _parts(self, arrays: dict[str, Any]) -> Parts:
        if self.needs_model and arrays.get("estimated_rewards") is None:
            raise _model_error(self.name)
        return self.parts(round_terms(**arrays))

    def estimate_policy_value(self, **arrays: Any) -> float:
        return self._parts(arrays).value()

    def estimate_round_rewards(self, **arrays: Any) -> np.ndarray:
        return self._parts(arrays).round_rewards()

    def estimate_interval(
        self,
        *,
        method: str = "bootstrap",
        n_bootstrap: int = 1000,
        alpha: float = 0.05,
        seed: SeedLike = None,
        bound: float | None = None,
        **arrays: Any,
    ) -> Interval:
        """The estimate with a ``1 - alpha`` interval (:mod:`offrec.ope.intervals`).

        The bootstrap keys rows by their index: same arrays and seed, same interval.
        ``seed=None`` draws a fresh seed.
        """
        check_interval_options(method, n_bootstrap, alpha, bound)
        cols, form = self._parts(arrays).columns()
        x = np.column_stack(cols)
        boot = n_bootstrap if method == "bootstrap" else 0
        moments = Moments.of(
            x, keys=row_keys(np.arange(x.shape[0])), n_bootstrap=boot, seed=seed_int(seed)
        )
        return interval(moments, form, method=method, alpha=alpha, bound=bound)


def _model_error(estimator: str) -> InputError:
    return InputError(
        f"estimator {estimator!r} needs estimated_rewards with the shape of action_dist "
        "(e.g. from RewardModel.fit_predict); got None"
    )


def clip_weights(w: np.ndarray, lam: float) -> np.ndarray:
    r""":math:`\min(w, \lambda)` (``w`` itself when ``lam`` is inf), shape of ``w``."""
    return w if lam == math.inf else np.minimum(w, lam)


def check_weight_mass(w: np.ndarray, estimator: str) -> None:
    """An ``InputError`` naming ``estimator`` when every weight is 0 (a self-normalized
    estimate is then undefined)."""
    if not w.sum() > 0:
        raise InputError(
            f"{estimator} is undefined: every importance weight is 0 "
            "(the target puts no mass on any logged action)"
        )


def residual(terms: RoundTerms, estimator: str) -> np.ndarray:
    r"""The reward model's residual at the logged actions :math:`r_i - \hat q(x_i, a_i)`,
    (n,); an ``InputError`` naming ``estimator`` when there is no reward model."""
    if terms.q_target is None or terms.q_logged is None:
        raise _model_error(estimator)
    return terms.reward - terms.q_logged


@dataclass(frozen=True)
class IPS(Estimator):
    r"""Inverse propensity scoring, optionally clipped (``lambda_ < inf``).

    .. math::

        \hat V_{\mathrm{IPS}} = \frac{1}{n} \sum_{i=1}^n \min(w_i, \lambda)\, r_i,
        \qquad w_i = \frac{\pi_e(a_i|x_i)}{\pi_b(a_i|x_i)}

    Assumptions: unconfoundedness (the logged ``pscore`` is the probability the
    logger really used given what it saw) and support/overlap
    (:math:`\pi_e(a|x) > 0 \Rightarrow \pi_b(a|x) > 0`); then unbiased for
    ``lambda_=inf``. Clipping trades bias (downward, for non-negative rewards)
    for variance. Shapes: see the module docstring.

    >>> import numpy as np
    >>> IPS().estimate_policy_value(
    ...     reward=np.array([1.0, 0.0, 1.0]), action=np.array([0, 1, 1]),
    ...     pscore=np.array([0.5, 0.5, 0.25]),
    ...     action_dist=np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]))
    2.0
    >>> IPS(lambda_=3.0).estimate_policy_value(
    ...     reward=np.array([1.0, 0.0, 1.0]), action=np.array([0, 1, 1]),
    ...     pscore=np.array([0.5, 0.5, 0.25]),
    ...     action_dist=np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]))
    1.6666666666666667
    """

    name: ClassVar[str] = "ips"
    reads: ClassVar[frozenset[str]] = frozenset({WEIGHTS})
    assumptions: ClassVar[tuple[str, ...]] = _IS_ASSUMES
    reference: ClassVar[str] = (
        "Horvitz & Thompson (1952); Strehl et al. (2010), Learning from logged implicit "
        "exploration data, NeurIPS"
    )
    lambda_: float = math.inf

    def parts(self, terms: RoundTerms) -> Parts:
        return Parts(clip_weights(terms.weight, self.lambda_) * terms.reward)


@dataclass(frozen=True)
class SNIPS(Estimator):
    r"""Self-normalized IPS.

    .. math::

        \hat V_{\mathrm{SNIPS}} = \frac{\sum_i w_i r_i}{\sum_i w_i}

    Assumptions as :class:`IPS`; consistent but biased in finite samples, much
    lower variance when weights are large, and equivariant to reward shifts
    (:math:`r + c \mapsto \hat V + c`). Undefined when every weight is 0.

    >>> import numpy as np
    >>> SNIPS().estimate_policy_value(
    ...     reward=np.array([1.0, 0.0, 1.0]), action=np.array([0, 1, 1]),
    ...     pscore=np.array([0.5, 0.5, 0.25]),
    ...     action_dist=np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]))
    0.8571428571428571
    """

    name: ClassVar[str] = "snips"
    reads: ClassVar[frozenset[str]] = frozenset({WEIGHTS})
    assumptions: ClassVar[tuple[str, ...]] = _IS_ASSUMES
    reference: ClassVar[str] = (
        "Swaminathan & Joachims (2015), The self-normalized estimator for counterfactual "
        "learning, NeurIPS"
    )
    self_normalized: ClassVar[bool] = True

    def parts(self, terms: RoundTerms) -> Parts:
        check_weight_mass(terms.weight, self.name)
        return Parts(None, terms.weight * terms.reward, terms.weight)


@dataclass(frozen=True)
class DM(Estimator):
    r"""Direct method: average the reward model under the target policy.

    .. math::

        \hat V_{\mathrm{DM}} = \frac{1}{n} \sum_i \sum_a \pi_e(a|x_i)\, \hat q(x_i, a)

    Assumption: the reward model is correct (:math:`\hat q = q`); biased otherwise,
    with low variance. Needs no propensities beyond validation. ``estimated_rewards``
    has the shape of ``action_dist``.

    >>> import numpy as np
    >>> DM().estimate_policy_value(
    ...     reward=np.array([1.0, 0.0]), action=np.array([0, 1]), pscore=np.array([0.5, 0.5]),
    ...     action_dist=np.array([[0.5, 0.5], [1.0, 0.0]]),
    ...     estimated_rewards=np.array([[0.25, 0.75], [0.5, 0.125]]))
    0.5
    """

    name: ClassVar[str] = "dm"
    reads: ClassVar[frozenset[str]] = frozenset({REWARD_MODEL})
    assumptions: ClassVar[tuple[str, ...]] = ("the reward model is right (q-hat = q)",)
    reference: ClassVar[str] = "Beygelzimer & Langford (2009), The offset tree, KDD"
    needs_model: ClassVar[bool] = True

    def parts(self, terms: RoundTerms) -> Parts:
        residual(terms, self.name)
        return Parts(terms.q_target)


@dataclass(frozen=True)
class DR(Estimator):
    r"""Doubly robust: DM plus an importance-weighted correction of its residuals.

    .. math::

        \hat V_{\mathrm{DR}} = \frac{1}{n} \sum_i \Big[\sum_a \pi_e(a|x_i) \hat q(x_i,a)
            + \min(w_i, \lambda)\,\big(r_i - \hat q(x_i, a_i)\big)\Big]

    Assumptions: unconfoundedness and support; then unbiased (for ``lambda_=inf``)
    when *either* the propensities or the reward model are correct. The reward
    model should be cross-fitted (:class:`~offrec.reward.model.RewardModel`).

    >>> import numpy as np
    >>> DR().estimate_policy_value(
    ...     reward=np.array([1.0, 0.0]), action=np.array([0, 1]), pscore=np.array([0.5, 0.5]),
    ...     action_dist=np.array([[0.5, 0.5], [1.0, 0.0]]),
    ...     estimated_rewards=np.array([[0.25, 0.75], [0.5, 0.125]]))
    0.875
    """

    name: ClassVar[str] = "dr"
    reads: ClassVar[frozenset[str]] = frozenset({WEIGHTS, REWARD_MODEL})
    assumptions: ClassVar[tuple[str, ...]] = _DR_ASSUMES
    reference: ClassVar[str] = _DR_REF
    needs_model: ClassVar[bool] = True
    lambda_: float = math.inf

    def parts(self, terms: RoundTerms) -> Parts:
        res = residual(terms, self.name)
        return Parts(terms.q_target + clip_weights(terms.weight, self.lambda_) * res)


@dataclass(frozen=True)
class SNDR(Estimator):
    r"""Self-normalized doubly robust.

    .. math::

        \hat V_{\mathrm{SNDR}} = \frac{1}{n} \sum_i \sum_a \pi_e(a|x_i) \hat q(x_i,a)
            + \frac{\sum_i w_i \big(r_i - \hat q(x_i, a_i)\big)}{\sum_i w_i}

    Assumptions as :class:`DR`; consistent, with the variance reduction of SNIPS.

    >>> import numpy as np
    >>> SNDR().estimate_policy_value(
    ...     reward=np.array([1.0, 0.0]), action=np.array([0, 1]), pscore=np.array([0.5, 0.5]),
    ...     action_dist=np.array([[0.5, 0.5], [1.0, 0.0]]),
    ...     estimated_rewards=np.array([[0.25, 0.75], [0.5, 0.125]]))
    1.25
    """

    name: ClassVar[str] = "sndr"
    reads: ClassVar[frozenset[str]] = frozenset({WEIGHTS, REWARD_MODEL})
    assumptions: ClassVar[tuple[str, ...]] = _DR_ASSUMES
    reference: ClassVar[str] = _DR_REF + "; self-normalized as Swaminathan & Joachims (2015)"
    needs_model: ClassVar[bool] = True
    self_normalized: ClassVar[bool] = True

    def parts(self, terms: RoundTerms) -> Parts:
        res = residual(terms, self.name)
        check_weight_mass(terms.weight, self.name)
        return Parts(terms.q_target, terms.weight * res, terms.weight)


@dataclass(frozen=True)
class SwitchDR(Estimator):
    r"""Switch-DR: the DR correction only where the weight is at most ``lambda_``.

    .. math::

        \hat V_{\mathrm{Switch}} = \frac{1}{n} \sum_i \Big[\sum_a \pi_e(a|x_i) \hat q(x_i,a)
            + \mathbb{1}[w_i \le \lambda]\, w_i \big(r_i - \hat q(x_i, a_i)\big)\Big]

    Rows with :math:`w_i > \lambda` keep only the DM term (OBP's convention).
    ``lambda_=inf`` is DR; ``lambda_=0`` is DM. Assumptions as :class:`DR`; rows
    above the threshold are biased unless the reward model is correct.

    >>> import numpy as np
    >>> SwitchDR(lambda_=0.5).estimate_policy_value(
    ...     reward=np.array([1.0, 0.0]), action=np.array([0, 1]), pscore=np.array([0.5, 0.5]),
    ...     action_dist=np.array([[0.5, 0.5], [1.0, 0.0]]),
    ...     estimated_rewards=np.array([[0.25, 0.75], [0.5, 0.125]]))
    0.5
    """

    name: ClassVar[str] = "switch-dr"
    reads: ClassVar[frozenset[str]] = frozenset({WEIGHTS, REWARD_MODEL})
    assumptions: ClassVar[tuple[str, ...]] = _DR_ASSUMES
    reference: ClassVar[str] = (
        "Wang, Agarwal & Dudik (2017), Optimal and adaptive off-policy evaluation in "
        "contextual bandits, ICML"
    )
    needs_model: ClassVar[bool] = True
    lambda_: float = math.inf

    def parts(self, terms: RoundTerms) -> Parts:
        res = residual(terms, self.name)
        w = terms.weight
        return Parts(terms.q_target + np.where(w <= self.lambda_, w, 0.0) * res)


@dataclass(frozen=True)
class DRos(Estimator):
    r"""DR with optimistic shrinkage of the weights (Su et al., 2020).

    .. math::

        \hat V_{\mathrm{DRos}} = \frac{1}{n} \sum_i \Big[\sum_a \pi_e(a|x_i) \hat q(x_i,a)
            + \frac{\lambda w_i}{w_i^2 + \lambda} \big(r_i - \hat q(x_i, a_i)\big)\Big]

    ``lambda_=inf`` (the default here) is DR, ``lambda_=0`` is DM. OBP's default
    is ``lambda_=0``; pass it explicitly when comparing. Assumptions as :class:`DR`.

    >>> import numpy as np
    >>> DRos(lambda_=1.0).estimate_policy_value(
    ...     reward=np.array([1.0, 0.0]), action=np.array([0, 1]), pscore=np.array([0.5, 0.5]),
    ...     action_dist=np.array([[0.5, 0.5], [1.0, 0.0]]),
    ...     estimated_rewards=np.array([[0.25, 0.75], [0.5, 0.125]]))
    0.6875
    """

    name: ClassVar[str] = "dr-os"
    reads: ClassVar[frozenset[str]] = frozenset({WEIGHTS, REWARD_MODEL})
    assumptions: ClassVar[tuple[str, ...]] = _DR_ASSUMES
    reference: ClassVar[str] = (
        "Su, Dimakopoulou, Krishnamurthy & Dudik (2020), Doubly robust off-policy "
        "evaluation with shrinkage, ICML"
    )
    needs_model: ClassVar[bool] = True
    lambda_: float = math.inf

    def parts(self, terms: RoundTerms) -> Parts:
        res = residual(terms, self.name)
        w, lam = terms.weight, self.lambda_
        if lam != math.inf:  # optimistic shrinkage lambda * w / (w^2 + lambda), 0 where 0/0
            den = w * w + lam
            w = np.divide(lam * w, den, out=np.zeros_like(w), where=den > 0)
        return Parts(terms.q_target + w * res)


ESTIMATORS: dict[str, type[Estimator]] = {
    cls.name: cls for cls in (IPS, SNIPS, DM, DR, SNDR, SwitchDR, DRos)
}
"""The bandit estimator registry: class by name (the CLI's and pipelines' names). A new
estimator registers with ``ESTIMATORS[MyEstimator.name] = MyEstimator`` and declares its
metadata (:class:`~offrec.ope.trust.EstimatorMeta`)."""


def make_estimator(name: str, **params: Any) -> Estimator:
    """The estimator called ``name`` with ``params``; errors list the valid names/parameters."""
    if name not in ESTIMATORS:
        raise InputError(f"estimator must be one of {list(ESTIMATORS)}; got {name!r}")
    cls = ESTIMATORS[name]
    valid = [f.name for f in fields(cls)]
    unknown = [k for k in params if k not in valid]
    if unknown:
        raise InputError(
            f"unknown parameter {unknown[0]!r} for estimator {name!r}; "
            f"valid parameters: {valid if valid else 'none'}"
        )
    return cls(**params)


def estimate_policy_value(estimator: str, **arrays_and_params: Any) -> float:
    r"""Estimate the target policy's value :math:`V(\pi_e)` with ``estimator``.

    Args:
        estimator: a name from :data:`ESTIMATORS`: ``"ips"``, ``"snips"``, ``"dm"``,
            ``"dr"``, ``"sndr"``, ``"switch-dr"``, ``"dr-os"``.
        **arrays_and_params: the arrays of :func:`~offrec.ope.terms.round_terms` (OBP's
            argument names and shapes: ``reward, action, pscore, action_dist, position,
            estimated_rewards``, and ``check_dist``) and the estimator's parameters
            (``lambda_`` for ``ips``/``dr`` clipping, the ``switch-dr`` threshold and the
            ``dr-os`` shrinkage; default ``inf``). Anything else is an error.

    Returns:
        The estimate, a float; the mean of :func:`estimate_round_rewards`.
    """
    est, arrays = _split(estimator, arrays_and_params)
    return est.estimate_policy_value(**arrays)


def estimate_round_rewards(estimator: str, **arrays_and_params: Any) -> np.ndarray:
    """Per-round contributions ``(n,)`` whose mean is :func:`estimate_policy_value`.

    As in OBP, the contributions of the self-normalized estimators (``snips``,
    ``sndr``) are already divided by ``mean(w)``.
    """
    est, arrays = _split(estimator, arrays_and_params)
    return est.estimate_round_rewards(**arrays)


def estimate_interval(estimator: str, **kwargs: Any) -> Interval:
    """Estimate with a ``1 - alpha`` interval: :meth:`Estimator.estimate_interval` of the
    estimator called ``estimator`` (``method``, ``n_bootstrap``, ``alpha``, ``seed``,
    ``bound`` and the arrays as keywords, plus the estimator's parameters)."""
    options = {
        k: kwargs.pop(k) for k in ("method", "n_bootstrap", "alpha", "seed", "bound") if k in kwargs
    }
    est, arrays = _split(estimator, kwargs)
    return est.estimate_interval(**options, **arrays)


_ARRAYS = (
    "reward",
    "action",
    "pscore",
    "action_dist",
    "position",
    "estimated_rewards",
    "check_dist",
    "stratum_idx",  # the multiple-logger estimators (offrec.ope.multi_logger)
    "pscore_avg",
    "item_groups",
    "pscore_group",
)


def _split(name: str, kwargs: dict[str, Any]) -> tuple[Estimator, dict[str, Any]]:
    params = {k: v for k, v in kwargs.items() if k not in _ARRAYS}
    arrays = {k: v for k, v in kwargs.items() if k in _ARRAYS}
    return make_estimator(name, **params), arrays
