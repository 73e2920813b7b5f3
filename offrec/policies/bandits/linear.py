"""Linear contextual bandit learners: per-arm ridge regression on ``phi(x) = [1, x]``.

- :class:`LinUCB`: disjoint LinUCB (Li et al. 2010),
  ``theta_a = A_a^{-1} b_a``, score ``phi^T theta_a + alpha sqrt(phi^T A_a^{-1} phi)``
  with ``A_a = reg I + sum w phi phi^T`` and ``b_a = sum w r phi``.
- :class:`LinTS`: linear Thompson sampling (Agrawal & Goyal 2013),
  ``theta_a ~ N(A_a^{-1} b_a, scale^2 A_a^{-1})``; ``action_dist`` is the probability of
  each arm being the argmax under ``n_draws`` shared posterior draws (see
  :mod:`offrec.policies.bandits.context_free` on why).

A batch is grouped by arm once (:class:`~offrec.reward.newton.ArmGroups`) and the per-arm
sums ``sum w phi phi^T``, ``sum w r phi`` come from ``np.add.reduceat``; scoring
evaluates every arm at once with matrix products, in blocks of rows to bound memory.

>>> import numpy as np
>>> learner = LinUCB(n_actions=3, context_dim=2, alpha=0.5)
>>> x = np.array([[1.0, 0.0], [0.0, 1.0]])
>>> _ = learner.partial_fit(x, np.array([0, 2]), np.array([1.0, 0.0]))
>>> learner.action_dist(x).shape
(2, 3)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from offrec.core.errors import InputTypeError
from offrec.core.policy import GreedyDist, Head
from offrec.core.validation import SeedLike, check_scalar
from offrec.policies.bandits.base import BanditLearner, as_head, block_rows, seed_int
from offrec.reward.newton import ArmGroups

__all__ = ["LinTS", "LinUCB"]


class _Linear(BanditLearner):
    """Per-arm models on ``phi(x) = [1, x]`` (or ``x`` when ``fit_intercept=False``)."""

    contextual = True

    def _init_linear(self, context_dim: int, reg: float, fit_intercept: bool) -> None:
        check_scalar(reg, "reg", float, min=0.0, min_inclusive=False)
        if not isinstance(fit_intercept, bool):
            raise InputTypeError(f"fit_intercept must be a bool; got {fit_intercept!r}")
        self.reg = float(reg)
        self.fit_intercept = fit_intercept
        self.n_features = int(context_dim) + int(fit_intercept)

    def features(self, x: np.ndarray) -> np.ndarray:
        """``phi(x)`` (n, n_features) float64."""
        if not self.fit_intercept:
            return np.asarray(x, np.float64)
        return np.concatenate([np.ones((x.shape[0], 1)), x], axis=1)

    def _linear_params(self) -> dict[str, Any]:
        return {
            "n_actions": self.n_actions,
            "context_dim": self.context_dim,
            "reg": self.reg,
            "fit_intercept": self.fit_intercept,
        }


class _Ridge(_Linear):
    """Per-arm ridge regression sufficient statistics ``A_a`` (precision) and ``b_a``."""

    A: np.ndarray  # (n_actions, n_features, n_features)
    b: np.ndarray  # (n_actions, n_features)
    A_inv: np.ndarray  # (n_actions, n_features, n_features)
    theta: np.ndarray  # (n_actions, n_features) posterior means A^{-1} b

    def reset(self) -> None:
        d, k = self.n_features, self.n_actions
        self.A = np.broadcast_to(self.reg * np.eye(d), (k, d, d)).copy()
        self.b = np.zeros((k, d))
        self.A_inv, self.theta = np.empty_like(self.A), np.empty_like(self.b)
        self._refresh(np.arange(k))

    def _refresh(self, arms: np.ndarray) -> None:
        """Recompute ``A^{-1}`` and ``theta = A^{-1} b`` for ``arms``."""
        inv = np.linalg.inv(self.A[arms])
        inv = 0.5 * (inv + np.swapaxes(inv, 1, 2))
        self.A_inv[arms] = inv
        self.theta[arms] = np.einsum("gij,gj->gi", inv, self.b[arms])

    def _update(self, x: np.ndarray | None, a: np.ndarray, r: np.ndarray, w: np.ndarray) -> None:
        assert x is not None
        g = ArmGroups(a)
        phi, r, w = g.sort(self.features(x), r, w)
        self.A[g.arms] += g.gram(phi, w)
        self.b[g.arms] += g.sum(phi * (w * r)[:, None])
        self._refresh(g.arms)

    def _predict(self, x: np.ndarray) -> np.ndarray:
        return self.features(x) @ self.theta.T

    def _exploit_compact(self, x: np.ndarray) -> GreedyDist | np.ndarray:
        """Greedy heads: :meth:`~offrec.core.policy.Head.greedy_linear` of the linear
        scores ``phi(x) @ theta^T`` (float32 where it provably keeps the argmax sets)."""
        if self.head.kind == "softmax":
            return super()._exploit_compact(x)
        return self.head.greedy_linear(self.features(x), self.theta.T)

    def _state(self) -> dict[str, np.ndarray]:
        return {"A": self.A.copy(), "b": self.b.copy()}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.A, self.b = state["A"], state["b"]
        self.A_inv, self.theta = np.empty_like(self.A), np.empty_like(self.b)
        self._refresh(np.arange(self.n_actions))


class LinUCB(_Ridge):
    """Disjoint LinUCB: per-arm ridge regression with an upper-confidence bonus.

    .. math::

        A_a = \\lambda I + \\sum_{i: a_i = a} w_i \\phi_i \\phi_i^T,\\quad
        b_a = \\sum_{i: a_i = a} w_i r_i \\phi_i,\\quad
        \\text{score}_a(x) = \\phi^T A_a^{-1} b_a + \\alpha \\sqrt{\\phi^T A_a^{-1} \\phi}

    ``reg`` is :math:`\\lambda`. The head (default greedy) turns the scores into a
    distribution. All arms are scored in one matrix product per block of rows.
    """

    kind = "linucb"

    def __init__(
        self,
        n_actions: int,
        context_dim: int,
        *,
        alpha: float = 0.5,
        reg: float = 1.0,
        fit_intercept: bool = True,
        head: Head | dict[str, Any] | None = None,
        explore: bool = True,
    ) -> None:
        check_scalar(alpha, "alpha", float, min=0.0)
        self.alpha = float(alpha)
        self._init_common(n_actions, context_dim, as_head(head, Head()), explore)
        self._init_linear(context_dim, reg, fit_intercept)
        self.reset()

    def ucb(self, x: np.ndarray) -> np.ndarray:
        """UCB scores (n, n_actions) for validated contexts ``x`` (n, context_dim).

        The quadratic forms ``phi^T A_a^{-1} phi`` of all arms come from one product
        ``(phi_i phi_j)_{i <= j} @ (c_ij A^{-1}_{a,ij})`` over the upper triangle
        (``c_ij = 2`` off the diagonal), half the work of the full ``d x d`` form.
        """
        phi = self.features(x)
        out = phi @ self.theta.T
        if self.alpha == 0.0:
            return out
        rows, cols = np.triu_indices(self.n_features)
        tri = self.A_inv[:, rows, cols] * np.where(rows == cols, 1.0, 2.0)  # (k, d(d+1)/2)
        step = block_rows(rows.size)
        for lo in range(0, phi.shape[0], step):
            p = phi[lo : lo + step]
            quad = (p[:, rows] * p[:, cols]) @ tri.T
            out[lo : lo + step] += self.alpha * np.sqrt(np.maximum(quad, 0.0))
        return out

    def _explore_dist(self, x: np.ndarray) -> np.ndarray:
        return self.head.apply(self.ucb(x))

    def get_params(self) -> dict[str, Any]:
        return {
            **self._linear_params(),
            "alpha": self.alpha,
            "head": self.head.to_dict(),
            "explore": self.explore,
        }


class LinTS(_Ridge):
    """Linear Thompson sampling with per-arm Gaussian posteriors.

    .. math::

        \\theta_a \\sim \\mathcal N\\big(A_a^{-1} b_a,\\ s^2 A_a^{-1}\\big)

    (``scale`` is :math:`s`; ``A_a``, ``b_a`` as in :class:`LinUCB`). ``action_dist`` is
    the probability that each arm has the largest ``phi^T theta_a`` under ``n_draws``
    posterior draws shared by all rows (seeded by ``(seed, n_updates)``), so ``sample``
    logs exact propensities. ``predict`` uses the posterior means.
    """

    kind = "lints"

    def __init__(
        self,
        n_actions: int,
        context_dim: int,
        *,
        scale: float = 0.3,
        reg: float = 1.0,
        fit_intercept: bool = True,
        n_draws: int = 64,
        seed: SeedLike = 0,
        head: Head | dict[str, Any] | None = None,
        explore: bool = True,
    ) -> None:
        check_scalar(scale, "scale", float, min=0.0)
        check_scalar(n_draws, "n_draws", int, min=1)
        self.scale, self.n_draws = float(scale), int(n_draws)
        self.seed = seed_int(seed)
        self._init_common(n_actions, context_dim, as_head(head, Head()), explore)
        self._init_linear(context_dim, reg, fit_intercept)
        self.reset()

    def _refresh(self, arms: np.ndarray) -> None:
        super()._refresh(arms)
        self._cache: tuple[int, np.ndarray] | None = None

    def posterior_draws(self) -> np.ndarray:
        """``n_draws`` posterior samples of every arm's weights, (n_draws, n_actions, n_features)."""
        if self._cache is None or self._cache[0] != self.n_updates:
            rng = np.random.default_rng([self.seed, self.n_updates])
            chol = np.linalg.cholesky(self.A_inv)  # (k, d, d)
            z = rng.standard_normal((self.n_draws, self.n_actions, self.n_features))
            draws = self.theta[None] + self.scale * np.einsum("kde,mke->mkd", chol, z)
            self._cache = (self.n_updates, draws)
        return self._cache[1]

    def _explore_dist(self, x: np.ndarray) -> np.ndarray:
        phi = self.features(x)
        k, m = self.n_actions, self.n_draws
        flat = self.posterior_draws().reshape(m * k, self.n_features).T  # (d, m k)
        out = np.empty((phi.shape[0], k))
        step = block_rows(m * k)
        for lo in range(0, phi.shape[0], step):
            best = (phi[lo : lo + step] @ flat).reshape(-1, m, k).argmax(axis=2)  # (nb, m)
            nb = best.shape[0]
            idx = (np.arange(nb)[:, None] * k + best).ravel()
            out[lo : lo + nb] = np.bincount(idx, minlength=nb * k).reshape(nb, k) / m
        return out

    def get_params(self) -> dict[str, Any]:
        return {
            **self._linear_params(),
            "scale": self.scale,
            "n_draws": self.n_draws,
            "seed": self.seed,
            "head": self.head.to_dict(),
            "explore": self.explore,
        }
