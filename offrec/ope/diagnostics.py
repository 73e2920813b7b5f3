r"""What to look at before trusting an off-policy estimate.

- importance weights :math:`w_i = \pi_e(a_i|x_i) / \pi_b(a_i|x_i)` and their
  statistics (mean, which should be close to 1 when the target is supported by
  the logger; max; quantiles);
- the effective sample size :math:`\mathrm{ESS} = (\sum_i w_i)^2 / \sum_i w_i^2`,
  the number of on-policy rows the weighted sample is worth (``n`` when
  :math:`\pi_e = \pi_b`, small when a few rows carry the estimate);
- support violations: target mass on actions the logger never takes
  (``logging_dist == 0``). Importance weighting cannot see that mass at all,
  so IPS/SNIPS/DR are biased there whatever ``n`` is; it is reported, not hidden.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from offrec.core.errors import InputError
from offrec.ope.terms import DistLike, as_action_dist, round_terms

QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.99)


def importance_weights(
    *,
    action: npt.ArrayLike,
    pscore: npt.ArrayLike,
    action_dist: DistLike,
    position: npt.ArrayLike | None = None,
    check_dist: bool = True,
) -> np.ndarray:
    """Importance weights ``(n,)``: ``action_dist[i, action[i](, position[i])] / pscore[i]``.

    Inputs are validated as in :func:`~offrec.ope.estimators.round_terms`.
    """
    pscore = np.asarray(pscore, dtype=np.float64)
    terms = round_terms(
        reward=np.zeros(pscore.shape),
        action=action,
        pscore=pscore,
        action_dist=action_dist,
        position=position,
        check_dist=check_dist,
    )
    return terms.weight


def effective_sample_size(weights: np.ndarray) -> float:
    r""":math:`(\sum_i w_i)^2 / \sum_i w_i^2` (0 when every weight is 0)."""
    w = np.asarray(weights, dtype=np.float64)
    sq = float(np.dot(w, w))
    return float(w.sum()) ** 2 / sq if sq > 0 else 0.0


@dataclass(frozen=True)
class WeightStats:
    """Summary of importance weights.

    Attributes:
        n: number of rows.
        ess: effective sample size; ``ess / n`` is the fraction of rows the sample is worth.
        mean: mean weight (about 1 when the target is supported by the logger).
        max: largest weight.
        quantiles: ``{q: quantile}`` for ``q`` in :data:`QUANTILES`.
    """

    n: int
    ess: float
    mean: float
    max: float
    quantiles: dict[float, float]


def weight_stats(weights: np.ndarray, quantiles: tuple[float, ...] = QUANTILES) -> WeightStats:
    """:class:`WeightStats` of ``weights`` ``(n,)``."""
    w = np.asarray(weights, dtype=np.float64)
    qs = np.quantile(w, quantiles) if len(quantiles) else np.zeros(0)
    return WeightStats(
        n=int(w.shape[0]),
        ess=effective_sample_size(w),
        mean=float(w.mean()),
        max=float(w.max()),
        quantiles={float(q): float(v) for q, v in zip(quantiles, qs, strict=True)},
    )


@dataclass(frozen=True)
class SupportViolation:
    r"""Target probability mass on actions the logger never takes.

    With :math:`m_i = \sum_{a:\, \pi_b(a|x_i) = 0} \pi_e(a|x_i)`:

    Attributes:
        rows: fraction of rows with :math:`m_i > 0`.
        mass: :math:`\frac{1}{n}\sum_i m_i`, the share of the target's value that
            importance weighting cannot see (for rewards in [0, 1], IPS is biased by
            up to this much).
    """

    rows: float
    mass: float


def support_violation(
    *,
    action_dist: npt.ArrayLike,
    logging_dist: npt.ArrayLike,
    position: npt.ArrayLike | None = None,
) -> SupportViolation:
    """Measure :class:`SupportViolation` of ``action_dist`` against ``logging_dist`` (n, n_actions).

    ``action_dist`` is ``(n, n_actions)`` or ``(n, n_actions, n_positions)``; with
    positions, row ``i`` is read at ``position[i]`` (0 when None). The logger's
    distribution is per row (one list of probabilities per logged decision).
    """
    logging = np.asarray(logging_dist)
    n = logging.shape[0] if logging.ndim else 0
    dist = as_action_dist(action_dist, "action_dist", n)
    if logging.shape != dist.shape[:2]:
        raise InputError(
            f"logging_dist must have shape (n, n_actions) = {dist.shape[:2]}; got {logging.shape}"
        )
    pos = None if position is None or dist.ndim == 2 else np.asarray(position, dtype=np.intp)
    mass = np.empty(n)
    step = max(1, (1 << 17) // dist.shape[1])
    for start in range(0, n, step):
        stop = min(start + step, n)
        block = dist[start:stop]
        if dist.ndim == 3:
            block = block[np.arange(stop - start), :, 0 if pos is None else pos[start:stop]]
        mass[start:stop] = np.where(logging[start:stop] == 0, block, 0.0).sum(axis=1)
    return SupportViolation(rows=float((mass > 0).mean()), mass=float(mass.mean()))
