"""Logistic contextual bandit learner: per-arm Bayesian logistic regression.

:class:`LogisticEpsilonGreedy` keeps, per arm, a Gaussian (Laplace) approximation of the
posterior of a ridge logistic regression on ``phi(x) = [1, x]`` and updates it online
with a few batched Newton steps (:func:`offrec.reward.newton.newton_logistic`, shared
with the per-item logistic reward model), then acts epsilon-greedily on the click
probabilities (Chapelle & Li 2011, with a full precision matrix).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import expit

from offrec.core.policy import Head
from offrec.core.validation import check_scalar
from offrec.policies.bandits.base import as_head
from offrec.policies.bandits.linear import _Linear
from offrec.reward.newton import ArmGroups, newton_logistic

__all__ = ["LogisticEpsilonGreedy"]


class LogisticEpsilonGreedy(_Linear):
    """Per-arm Bayesian logistic regression (Laplace approximation), epsilon-greedy head.

    Each arm keeps a Gaussian ``N(m_a, P_a^{-1})`` over its weights (prior
    ``N(0, reg^{-1} I)``). A batch updates every arm it touches by ``n_newton`` Newton
    steps on the log posterior

    .. math::

        -\\tfrac12 (w - m_a)^T P_a (w - m_a)
        + \\sum_{i: a_i = a} w_i \\big[r_i \\log \\sigma(\\phi_i^T w) + (1 - r_i) \\log(1 - \\sigma(\\phi_i^T w))\\big]

    then sets ``m_a`` to the result and ``P_a`` to the Hessian there. :meth:`fit` on all
    rows at once iterates to convergence: the exact per-arm ridge logistic regression.
    ``predict`` is ``sigma(phi^T m_a)``, the head acts on those click probabilities.
    Rewards must be in [0, 1]; from a log with a bounded continuous reward it learns
    on the unit scale (:func:`offrec.policies.logged.domain_rewards`).
    """

    kind = "logistic"
    _reward_range = (0.0, 1.0)
    reward_support = "unit"  # a bounded reward is fitted as a fraction of a success

    def __init__(
        self,
        n_actions: int,
        context_dim: int,
        epsilon: float = 0.1,
        *,
        reg: float = 1.0,
        fit_intercept: bool = True,
        n_newton: int = 2,
        head: Head | dict[str, Any] | None = None,
        explore: bool = True,
    ) -> None:
        check_scalar(epsilon, "epsilon", float, min=0.0, max=1.0)
        check_scalar(n_newton, "n_newton", int, min=1)
        self.epsilon, self.n_newton = float(epsilon), int(n_newton)
        default = Head("epsilon_greedy", epsilon=self.epsilon)
        self._init_common(n_actions, context_dim, as_head(head, default), explore)
        self._init_linear(context_dim, reg, fit_intercept)
        self.reset()

    def reset(self) -> None:
        d, k = self.n_features, self.n_actions
        self.mean = np.zeros((k, d))
        self.precision = np.broadcast_to(self.reg * np.eye(d), (k, d, d)).copy()

    def _newton(
        self, x: np.ndarray, a: np.ndarray, r: np.ndarray, w: np.ndarray, n_iter: int, tol: float
    ) -> None:
        g = ArmGroups(a)
        phi, r, w = g.sort(self.features(x), r, w)
        mode, hess = newton_logistic(
            g, phi, r, w, self.mean[g.arms], self.precision[g.arms], n_iter=n_iter, tol=tol
        )
        self.mean[g.arms] = mode
        self.precision[g.arms] = hess

    def _update(self, x: np.ndarray | None, a: np.ndarray, r: np.ndarray, w: np.ndarray) -> None:
        assert x is not None
        self._newton(x, a, r, w, self.n_newton, tol=0.0)

    def _fit_all(self, x: np.ndarray | None, a: np.ndarray, r: np.ndarray, w: np.ndarray) -> None:
        assert x is not None
        self._newton(x, a, r, w, n_iter=50, tol=1e-7)

    def _predict(self, x: np.ndarray) -> np.ndarray:
        return expit(self.features(x) @ self.mean.T)

    def _explore_dist(self, x: np.ndarray) -> np.ndarray:
        return self.head.apply(self._predict(x))

    def _state(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean.copy(), "precision": self.precision.copy()}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.mean, self.precision = state["mean"], state["precision"]

    def get_params(self) -> dict[str, Any]:
        return {
            **self._linear_params(),
            "epsilon": self.epsilon,
            "n_newton": self.n_newton,
            "head": self.head.to_dict(),
            "explore": self.explore,
        }
