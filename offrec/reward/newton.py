r"""Per-arm sums and the batched per-arm ridge logistic Newton solver.

Shared by the bandit learners (:mod:`offrec.policies.bandits`: LinUCB / LinTS Gram
matrices, the logistic learner's Laplace update) and the per-item logistic reward model
of :class:`~offrec.policies.offline.RewardModelGreedy`. Everything is grouped by arm
once (rows sorted by arm) and summed with ``np.add.reduceat``: no Python loop per row.

For arm :math:`a` with prior :math:`\mathcal N(m_a, P_a^{-1})` over its weights and rows
:math:`(\phi_i, r_i, w_i)`, :func:`newton_logistic` maximises the log posterior

.. math::

    -\tfrac12 (\beta - m_a)^\top P_a (\beta - m_a)
    + \sum_{i: a_i = a} w_i \big[r_i \log \sigma(\phi_i^\top \beta)
    + (1 - r_i) \log(1 - \sigma(\phi_i^\top \beta))\big]

by Newton steps (gradient :math:`g = P_a(\beta - m_a) - \sum_i w_i (r_i - p_i)\phi_i`,
Hessian :math:`H = P_a + \sum_i w_i p_i (1 - p_i) \phi_i \phi_i^\top`,
:math:`p_i = \sigma(\phi_i^\top \beta)`), each step capped at
:data:`MAX_NEWTON_STEP` per coordinate (a trust region). It returns the new mode and the
Hessian there: the Laplace approximation of the posterior (Chapelle & Li 2011).
With a zero prior mean and :math:`P_a = \lambda I`, iterated to convergence, the mode is
the ridge logistic regression of each arm.

>>> import numpy as np
>>> phi = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 0.5]]); arm = np.array([0, 0, 1])
>>> g = ArmGroups(arm)
>>> g.arms.tolist(), g.sum(g.sort(phi)[0]).tolist()
([0, 1], [[2.0, 1.0], [1.0, 0.5]])
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

__all__ = ["MAX_NEWTON_STEP", "ArmGroups", "newton_logistic"]

#: a Newton step changes no weight by more than this (trust region)
MAX_NEWTON_STEP = 4.0
_ROWS_PER_ARM_FOR_BLAS = 64  # grouped Gram matrices: per-arm BLAS above this many rows per arm


class ArmGroups:
    """Rows grouped by arm. Sort the batch once with :meth:`sort`; the sums then take
    arrays in that sorted order and return one entry per distinct arm ``arms`` (g,).

    Attributes:
        order: (n,) permutation that sorts the rows by arm (stable).
        arms: (g,) the distinct arms, ascending.
        starts: (g,) first sorted row of each arm.
        group: (n,) index in ``arms`` of each sorted row.
    """

    def __init__(self, action: np.ndarray) -> None:
        self.order = np.argsort(action, kind="stable")
        a = action[self.order]
        self.starts = np.flatnonzero(np.r_[True, a[1:] != a[:-1]]) if a.size else np.zeros(0, int)
        self.arms = a[self.starts]
        counts = np.diff(np.r_[self.starts, a.size])
        self.group = np.repeat(np.arange(self.arms.size), counts)  # group of each sorted row

    def sort(self, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
        """The arrays (n, ...) in arm order."""
        return tuple(arr[self.order] for arr in arrays)

    def sum(self, values: np.ndarray) -> np.ndarray:
        """Per-arm sums (g, ...) of sorted ``values`` (n, ...)."""
        return np.add.reduceat(values, self.starts, axis=0)

    def gram(self, x: np.ndarray, w: np.ndarray, block: int = 4096) -> np.ndarray:
        """Per-arm ``sum_i w_i x_i x_i^T`` (g, D, D) of sorted ``x`` (n, D), ``w`` (n,).

        Many rows per arm (offline fits): one BLAS product ``X_a^T (w X_a)`` per arm, a
        short loop over arms. Few rows per arm (online batches, large catalogs): outer
        products of blocks of rows summed per arm with ``np.add.reduceat``, no loop over
        arms. Both give the same sums.
        """
        n, d = x.shape
        g = self.arms.size
        out = np.empty((g, d, d))
        if n >= _ROWS_PER_ARM_FOR_BLAS * g:
            ends = np.r_[self.starts[1:], n]
            for j, (lo, hi) in enumerate(zip(self.starts, ends, strict=True)):
                xa = x[lo:hi]
                np.matmul(xa.T, xa * w[lo:hi, None], out=out[j])
            return out
        out[:] = 0.0
        for lo in range(0, n, block):
            gid = self.group[lo : lo + block]
            local = np.flatnonzero(np.r_[True, gid[1:] != gid[:-1]])
            xb = x[lo : lo + block]
            outer = np.einsum("ni,nj->nij", xb * w[lo : lo + block, None], xb)
            out[gid[local]] += np.add.reduceat(outer, local, axis=0)
        return out


def newton_logistic(
    groups: ArmGroups,
    phi: np.ndarray,
    reward: np.ndarray,
    weight: np.ndarray,
    prior_mean: np.ndarray,
    prior_precision: np.ndarray,
    *,
    n_iter: int,
    tol: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Newton steps on every arm's log posterior (module docstring); all arms at once.

    Args:
        groups: the rows grouped by arm.
        phi, reward, weight: (n, D), (n,), (n,) in ``groups``' sorted order; rewards in [0, 1].
        prior_mean, prior_precision: (g, D) and (g, D, D), one per arm of ``groups.arms``.
        n_iter: at most this many Newton steps.
        tol: stop early once no coordinate moved more than ``tol`` (0: run ``n_iter``).

    Returns:
        ``(mode (g, D), hessian (g, D, D))``: the new mean and the precision of the
        Laplace approximation (the Hessian of the negative log posterior at the mode).
    """
    cur = prior_mean.copy()
    it, converged = 0, False
    while True:
        p = expit(np.einsum("nd,nd->n", phi, cur[groups.group]))
        hess = prior_precision + groups.gram(phi, weight * p * (1.0 - p))
        if it == n_iter or converged:
            return cur, hess
        grad = np.einsum("gij,gj->gi", prior_precision, cur - prior_mean) - groups.sum(
            phi * (weight * (reward - p))[:, None]
        )
        delta = np.linalg.solve(hess, grad[..., None])[..., 0]
        # trust region: at most MAX_NEWTON_STEP per coordinate, so a start far out on the
        # flat part of the sigmoid (tiny curvature) cannot throw the iterate away
        big = np.abs(delta).max(axis=1, keepdims=True)
        delta *= np.minimum(1.0, MAX_NEWTON_STEP / np.maximum(big, 1e-300))
        cur -= delta
        it += 1
        converged = bool(np.abs(delta).max() < tol)
