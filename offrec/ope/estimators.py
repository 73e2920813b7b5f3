r"""Bandit off-policy estimators: a functional core and thin estimator classes.

Conventions follow the Open Bandit Pipeline (OBP) so results can be compared
array for array. For logged rows :math:`i = 1..n` with context :math:`x_i`,
action :math:`a_i`, position :math:`k_i`, reward :math:`r_i` and logging
propensity :math:`p_i = \pi_b(a_i|x_i)`:

.. math::

    w_i = \pi_e(a_i|x_i, k_i) / p_i, \qquad
    \hat q_i = \hat q(x_i, a_i, k_i), \qquad
    \hat q_i^{\pi} = \sum_a \pi_e(a|x_i, k_i)\, \hat q(x_i, a, k_i).

Every estimator is a function of these four per-row quantities
(:class:`RoundTerms`) and can be written with sums over rows,

.. math::

    \hat V = \frac{1}{n}\sum_i A_i + \frac{\sum_i B_i}{\sum_i C_i}

(the second term only for the self-normalized estimators), so the same code
serves one array, a stream of chunks or the partitions of a distributed
engine, and the bootstrap (:mod:`offrec.ope.intervals`) only has to resample
these sums.

Shapes: ``reward``, ``action``, ``pscore``, ``position`` are ``(n,)``;
``action_dist`` and ``estimated_rewards`` are ``(n, n_actions)`` or
``(n, n_actions, n_positions)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from offrec.core.errors import InputError
from offrec.core.validation import check_scalar, first_bad

if TYPE_CHECKING:
    from offrec.ope.intervals import Interval

ESTIMATORS: tuple[str, ...] = ("ips", "snips", "dm", "dr", "sndr", "switch-dr", "dr-os")
"""Names accepted by :func:`estimate_policy_value`."""

_PARAMS: dict[str, tuple[str, ...]] = {
    "ips": ("lambda_",),
    "snips": (),
    "dm": (),
    "dr": ("lambda_",),
    "sndr": (),
    "switch-dr": ("lambda_",),
    "dr-os": ("lambda_",),
}
NEEDS_MODEL: frozenset[str] = frozenset({"dm", "dr", "sndr", "switch-dr", "dr-os"})
"""Estimators that need ``estimated_rewards`` (a reward model)."""

SUM_TOL = 1e-6
"""Tolerance on ``|sum_a action_dist[i, a] - 1|``."""

_CHUNK_ELEMS = 1 << 17  # rows of action_dist are scanned in ~1 MB blocks (cache-resident)


# --------------------------------------------------------------------------- per-row terms


@dataclass(frozen=True)
class RoundTerms:
    """The per-row quantities every estimator is built from (all ``(n,)`` float64).

    Attributes:
        reward: :math:`r_i`.
        weight: :math:`w_i = \\pi_e(a_i|x_i,k_i) / p_i` (unclipped).
        q_logged: :math:`\\hat q(x_i, a_i, k_i)`, or None without a reward model.
        q_target: :math:`\\sum_a \\pi_e(a|x_i,k_i) \\hat q(x_i, a, k_i)`, or None without one.
    """

    reward: np.ndarray
    weight: np.ndarray
    q_logged: np.ndarray | None = None
    q_target: np.ndarray | None = None

    @property
    def n(self) -> int:
        return int(self.reward.shape[0])


def round_terms(
    *,
    reward: Any,
    action: Any,
    pscore: Any,
    action_dist: Any,
    position: Any = None,
    estimated_rewards: Any = None,
    check_dist: bool = True,
) -> RoundTerms:
    """Validate the inputs and compute :class:`RoundTerms` in one pass over ``action_dist``.

    Args:
        reward: (n,) observed rewards, finite.
        action: (n,) integer actions in ``[0, n_actions)``.
        pscore: (n,) logging propensities of ``action``, in (0, 1].
        action_dist: (n, n_actions) or (n, n_actions, n_positions), the target
            policy's probabilities; non-negative, summing to 1 over actions.
        position: (n,) integer positions in ``[0, n_positions)``; None means 0.
        estimated_rewards: None or the same shape as ``action_dist``, finite.
        check_dist: check every entry of ``action_dist`` (non-negative, finite, rows
            summing to 1 within :data:`SUM_TOL`) and of ``estimated_rewards``
            (finite). These checks read the whole ``(n, n_actions)`` arrays, which
            costs more than IPS itself (about 150 ms for 1M x 100 float64);
            ``False`` skips them for arrays already checked once (the runner checks
            each policy once). Shapes and the per-row arrays are always checked.

    Raises:
        ValueError: naming the argument, the rule and the first offending row,
            e.g. ``"pscore must be in (0, 1]; row 3 has 0.0"``.
    """
    reward = _as_1d(reward, "reward")
    n = reward.shape[0]
    if n == 0:
        raise InputError("reward must have at least one row; got 0 rows")
    pscore = _as_1d(pscore, "pscore", n)
    action = _as_index(action, "action", n)
    dist = as_action_dist(action_dist, "action_dist", n)
    n_actions = dist.shape[1]
    n_positions = 1 if dist.ndim == 2 else dist.shape[2]
    pos = None if position is None else _as_index(position, "position", n)
    q = None
    if estimated_rewards is not None:
        q = np.asarray(estimated_rewards)
        if q.shape != dist.shape:
            raise InputError(
                f"estimated_rewards must have the same shape as action_dist {dist.shape}; "
                f"got {q.shape}"
            )
    _check_finite(reward, "reward")
    bad = ~((pscore > 0.0) & (pscore <= 1.0))
    if bad.any():
        i = first_bad(bad)
        raise InputError(f"pscore must be in (0, 1]; row {i} has {float(pscore[i])!r}")
    _check_range(action, "action", n_actions, "")
    if pos is not None:
        _check_range(pos, "position", n_positions, " (positions are axis 2 of action_dist)")
    if dist.ndim == 2 and pos is not None:
        pos = None  # all zeros (checked above): a 2-D action_dist has one position

    weight = _gather(dist, action, pos)
    weight /= pscore
    q_logged = None if q is None else _gather(q, action, pos)
    q_target = _scan_rows(dist, q, pos, check_dist)
    return RoundTerms(reward=reward, weight=weight, q_logged=q_logged, q_target=q_target)


def _as_1d(x: Any, name: str, n: int | None = None) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise InputError(f"{name} must be 1-D with shape (n,); got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise InputError(f"{name} must have the same length as reward ({n}); got {arr.shape[0]}")
    return arr


def _as_index(x: Any, name: str, n: int) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise InputError(f"{name} must be 1-D with shape (n,); got shape {arr.shape}")
    if arr.shape[0] != n:
        raise InputError(f"{name} must have the same length as reward ({n}); got {arr.shape[0]}")
    if arr.dtype.kind not in "iu":
        raise InputError(f"{name} must be integers; got dtype {arr.dtype}")
    return arr.astype(np.intp, copy=False)


def as_action_dist(x: Any, name: str, n: int) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim not in (2, 3) or arr.shape[0] != n or 0 in arr.shape:
        raise InputError(
            f"{name} must have shape (n, n_actions) or (n, n_actions, n_positions) "
            f"with n = {n}; got {arr.shape}"
        )
    if arr.dtype.kind not in "fiu":
        raise InputError(f"{name} must be a real-valued array; got dtype {arr.dtype}")
    return arr


def _check_finite(x: np.ndarray, name: str) -> None:
    if not np.isfinite(x.sum()) and not np.isfinite(x).all():
        i = first_bad(~np.isfinite(x))
        raise InputError(f"{name} must be finite; row {i} has {float(x[i])!r}")


def _check_range(x: np.ndarray, name: str, size: int, where: str) -> None:
    if x.min() < 0 or x.max() >= size:
        i = first_bad((x < 0) | (x >= size))
        raise InputError(f"{name} must be in [0, {size}){where}; row {i} has {int(x[i])}")


def _gather(x: np.ndarray, action: np.ndarray, position: np.ndarray | None) -> np.ndarray:
    """``x[i, action[i](, position[i])]`` as float64 (n,); one flat ``take`` when contiguous."""
    n = x.shape[0]
    if x.flags.c_contiguous:  # flat indices; actions and positions are range-checked
        idx = np.arange(0, x.size, x.size // n, dtype=np.intp)
        if x.ndim == 2:
            idx += action
        else:
            idx += action * x.shape[2]
            if position is not None:
                idx += position
        return np.take(x.reshape(-1), idx, mode="clip").astype(np.float64, copy=False)
    rows = np.arange(n)
    if x.ndim == 2:
        return x[rows, action].astype(np.float64, copy=False)
    return x[rows, action, 0 if position is None else position].astype(np.float64, copy=False)


def _scan_rows(
    dist: np.ndarray, q: np.ndarray | None, position: np.ndarray | None, check: bool
) -> np.ndarray | None:
    """One blocked pass over the rows: check ``dist`` and compute ``sum_a dist * q``.

    Blocks of ~1 MB stay in cache, so validation and the DM term share one read of
    ``dist`` from memory. Non-finite entries of ``dist`` make a row sum non-finite,
    and non-finite entries of ``q`` (at the row's position) make the DM term
    non-finite (``0 * inf`` is nan), so finiteness needs no separate pass.
    """
    if not check and q is None:
        return None
    n = dist.shape[0]
    step = max(1, _CHUNK_ELEMS // (dist.size // n))
    q_target = None if q is None else np.empty(n)
    for start in range(0, n, step):
        stop = min(start + step, n)
        block = dist[start:stop]
        if check:
            _check_dist_block(block, start)
        if q is None or q_target is None:
            continue
        qb = q[start:stop]
        if dist.ndim == 3:  # the slice at each row's position, (m, n_actions)
            rows = np.arange(stop - start)
            k = 0 if position is None else position[start:stop]
            block, qb = block[rows, :, k], qb[rows, :, k]
        out = np.einsum("ij,ij->i", block, qb)
        if check and not np.isfinite(out.sum()):
            _raise_non_finite(qb, out, start)
        q_target[start:stop] = out
    return q_target


def _raise_non_finite(qb: np.ndarray, out: np.ndarray, start: int) -> None:
    bad = ~np.isfinite(qb)
    if bad.any():
        i = first_bad(bad)
        value = float(qb[i][bad[i]][0])
        raise InputError(f"estimated_rewards must be finite; row {start + i} has {value!r}")
    i = first_bad(~np.isfinite(out))  # finite entries, but sum_a pi * q overflows
    raise InputError(f"estimated_rewards are too large: sum_a pi * q overflows in row {start + i}")


def _check_dist_block(block: np.ndarray, start: int) -> None:
    sums = block.sum(axis=1)  # (m,) or (m, n_positions)
    bad_sum = ~(np.abs(sums - 1.0) <= SUM_TOL)
    if not bad_sum.any() and block.min() >= 0:
        return
    bad_row = ~np.isfinite(block) | (block < 0)
    bad_row = bad_row.reshape(len(block), -1).any(axis=1) | bad_sum.reshape(len(block), -1).any(1)
    i = first_bad(bad_row)
    row = block[i]
    if not np.isfinite(row).all():
        value = float(row[~np.isfinite(row)][0])
        raise InputError(f"action_dist must be finite; row {start + i} has {value!r}")
    if (row < 0).any():
        value = float(row[row < 0][0])
        raise InputError(f"action_dist must be non-negative; row {start + i} has {value!r}")
    if block.ndim == 2:
        where, total = f"row {start + i}", float(sums[i])
    else:
        k = int(np.flatnonzero(bad_sum[i])[0])
        where, total = f"row {start + i}, position {k}", float(sums[i, k])
    raise InputError(
        f"action_dist rows must sum to 1 (tolerance {SUM_TOL:g}); {where} sums to {total!r}"
    )


# --------------------------------------------------------------------------- estimators


@dataclass(frozen=True)
class Parts:
    r"""An estimate as sums over rows: :math:`\hat V = \bar A + \sum B / \sum C`.

    ``a`` is averaged; ``b`` and ``c`` (self-normalized estimators only) form a
    ratio. All arrays are ``(n,)``; absent parts are None.
    """

    a: np.ndarray | None
    b: np.ndarray | None = None
    c: np.ndarray | None = None

    def value(self) -> float:
        v = 0.0 if self.a is None else float(self.a.mean())
        if self.b is not None and self.c is not None:
            v += float(self.b.sum()) / float(self.c.sum())
        return v

    def round_rewards(self) -> np.ndarray:
        """Per-round contributions whose mean is :meth:`value` (OBP's convention)."""
        if self.b is None or self.c is None:
            return np.zeros(0) if self.a is None else self.a
        scaled = self.b / float(self.c.mean())
        return scaled if self.a is None else self.a + scaled


def resolve(estimator: str, params: dict[str, Any]) -> dict[str, Any]:
    """Check ``estimator`` and its ``params``; return the params with defaults filled in."""
    if estimator not in _PARAMS:
        raise InputError(f"estimator must be one of {list(ESTIMATORS)}; got {estimator!r}")
    valid = _PARAMS[estimator]
    for key in params:
        if key not in valid:
            raise InputError(
                f"unknown parameter {key!r} for estimator {estimator!r}; "
                f"valid parameters: {list(valid) if valid else 'none'}"
            )
    full = {key: params.get(key, math.inf) for key in valid}
    if "lambda_" in full:
        lam = full["lambda_"]
        if not (isinstance(lam, float | int) and lam == math.inf):
            check_scalar(lam, "lambda_", float, min=0.0)
    return full


def parts(estimator: str, terms: RoundTerms, **params: Any) -> Parts:
    """Decompose ``estimator`` on ``terms`` into :class:`Parts` (sums over rows)."""
    full = resolve(estimator, params)
    w, r = terms.weight, terms.reward
    if estimator == "ips":
        return Parts(_clip(w, full["lambda_"]) * r)
    if estimator == "snips":
        _check_weight_mass(w, estimator)
        return Parts(None, w * r, w)
    if terms.q_target is None or terms.q_logged is None:
        raise _model_error(estimator)
    if estimator == "dm":
        return Parts(terms.q_target)
    residual = r - terms.q_logged
    if estimator == "sndr":
        _check_weight_mass(w, estimator)
        return Parts(terms.q_target, w * residual, w)
    lam = full["lambda_"]
    if estimator == "dr":
        omega = _clip(w, lam)
    elif estimator == "switch-dr":
        omega = np.where(w <= lam, w, 0.0)
    else:  # dr-os: optimistic shrinkage lambda * w / (w^2 + lambda), 0 where 0/0
        omega = w if lam == math.inf else _shrink(w, lam)
    return Parts(terms.q_target + omega * residual)


def _model_error(estimator: str) -> InputError:
    return InputError(
        f"estimator {estimator!r} needs estimated_rewards with the shape of action_dist "
        "(e.g. from RewardModel.fit_predict); got None"
    )


def require_model(estimator: str, estimated_rewards: Any) -> None:
    if estimator in NEEDS_MODEL and estimated_rewards is None:
        raise _model_error(estimator)


def _clip(w: np.ndarray, lam: float) -> np.ndarray:
    return w if lam == math.inf else np.minimum(w, lam)


def _shrink(w: np.ndarray, lam: float) -> np.ndarray:
    den = w * w + lam
    return np.divide(lam * w, den, out=np.zeros_like(w), where=den > 0)


def _check_weight_mass(w: np.ndarray, estimator: str) -> None:
    if not w.sum() > 0:
        raise InputError(
            f"{estimator} is undefined: every importance weight is 0 "
            "(the target puts no mass on any logged action)"
        )


def estimate_policy_value(
    estimator: str,
    *,
    reward: Any,
    action: Any,
    pscore: Any,
    action_dist: Any,
    position: Any = None,
    estimated_rewards: Any = None,
    check_dist: bool = True,
    **params: Any,
) -> float:
    r"""Estimate the target policy's value :math:`V(\pi_e)` with ``estimator``.

    Args:
        estimator: one of :data:`ESTIMATORS`: ``"ips"``, ``"snips"``, ``"dm"``, ``"dr"``,
            ``"sndr"``, ``"switch-dr"``, ``"dr-os"``.
        reward, action, pscore, action_dist, position, estimated_rewards, check_dist:
            as in :func:`round_terms` (OBP's argument names and shapes).
        **params: ``lambda_`` for ``ips`` / ``dr`` (clipping, :math:`\min(w, \lambda)`),
            ``switch-dr`` (switch threshold) and ``dr-os`` (shrinkage); default
            ``inf`` (no clipping / no shrinkage). Anything else is an error.

    Returns:
        The estimate, a float; the mean of :func:`estimate_round_rewards`.
    """
    resolve(estimator, params)  # cheap checks before the pass over the arrays
    require_model(estimator, estimated_rewards)
    terms = round_terms(
        reward=reward,
        action=action,
        pscore=pscore,
        action_dist=action_dist,
        position=position,
        estimated_rewards=estimated_rewards,
        check_dist=check_dist,
    )
    return parts(estimator, terms, **params).value()


def estimate_round_rewards(
    estimator: str,
    *,
    reward: Any,
    action: Any,
    pscore: Any,
    action_dist: Any,
    position: Any = None,
    estimated_rewards: Any = None,
    check_dist: bool = True,
    **params: Any,
) -> np.ndarray:
    """Per-round contributions ``(n,)`` whose mean is :func:`estimate_policy_value`.

    As in OBP, the contributions of the self-normalized estimators (``snips``,
    ``sndr``) are already divided by ``mean(w)``.
    """
    resolve(estimator, params)
    require_model(estimator, estimated_rewards)
    terms = round_terms(
        reward=reward,
        action=action,
        pscore=pscore,
        action_dist=action_dist,
        position=position,
        estimated_rewards=estimated_rewards,
        check_dist=check_dist,
    )
    return parts(estimator, terms, **params).round_rewards()


# --------------------------------------------------------------------------- classes


@dataclass(frozen=True)
class Estimator:
    """Base of the estimator classes: a name and parameters over the functional core.

    ``estimate_policy_value(**arrays)``, ``estimate_round_rewards(**arrays)`` and
    ``estimate_interval(**arrays)`` take the keyword arrays of
    :func:`estimate_policy_value` (``reward, action, pscore, action_dist, position,
    estimated_rewards``).
    """

    name: ClassVar[str] = ""

    def __post_init__(self) -> None:
        resolve(self.name, self.params())

    def params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def label(self) -> str:
        """``name`` plus the parameters that differ from the defaults, e.g. ``ips(lambda_=10)``."""
        set_ = {k: v for k, v in self.params().items() if v != math.inf}
        return self.name + (
            "" if not set_ else f"({', '.join(f'{k}={v}' for k, v in set_.items())})"
        )

    def estimate_policy_value(self, **arrays: Any) -> float:
        return estimate_policy_value(self.name, **arrays, **self.params())

    def estimate_round_rewards(self, **arrays: Any) -> np.ndarray:
        return estimate_round_rewards(self.name, **arrays, **self.params())

    def estimate_interval(self, **arrays: Any) -> Interval:
        """See :func:`offrec.ope.intervals.estimate_interval` (``method``, ``alpha``, ...)."""
        from offrec.ope.intervals import estimate_interval

        return estimate_interval(self.name, **arrays, **self.params())


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
    lambda_: float = math.inf


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
    lambda_: float = math.inf


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
    lambda_: float = math.inf


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
    lambda_: float = math.inf


ESTIMATOR_CLASSES: dict[str, type[Estimator]] = {
    cls.name: cls for cls in (IPS, SNIPS, DM, DR, SNDR, SwitchDR, DRos)
}
"""Estimator class by name."""
