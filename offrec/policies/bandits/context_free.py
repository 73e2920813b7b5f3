"""Context-free bandit learners: one value per arm, the context is ignored.

- :class:`EpsilonGreedy`: incremental sample means, epsilon-greedy head.
- :class:`UCB1`: ``mean_a + sqrt(c * ln t / n_a)`` (Auer et al. 2002), greedy head.
- :class:`BernoulliTS`: Beta-Bernoulli Thompson sampling (Thompson 1933).

Updates are per-arm weighted counts and reward sums (``np.bincount``), no loop per row.

Thompson sampling and ``action_dist``: a policy must report the distribution it
samples from, so :class:`BernoulliTS` reports the *probability that each arm is the
argmax of a posterior draw*, estimated with ``n_draws`` posterior draws. The draws are
seeded by ``(seed, n_updates)``, so the distribution is a deterministic function of the
learner's state and ``sample`` logs exact propensities. An arm that wins none of the
draws has probability 0 and is not shown; raise ``n_draws`` for finer exploration.

>>> import numpy as np
>>> learner = UCB1(n_actions=3).partial_fit(None, np.array([0, 1, 1]), np.array([1.0, 0.0, 1.0]))
>>> learner.indices().round(3).tolist()  # arm 2 untried: tried first
[2.482, 1.548, 1000000000.0]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from offrec.core.policy import Head
from offrec.core.validation import SeedLike, check_scalar
from offrec.policies.bandits.base import BanditLearner, as_head, seed_int

__all__ = ["UNTRIED_SCORE", "UCB1", "BernoulliTS", "EpsilonGreedy"]

#: score given to arms never pulled by UCB1 (finite, so softmax heads stay defined)
UNTRIED_SCORE = 1e9


class _ArmStats(BanditLearner):
    """Per-arm weighted pull counts and reward sums (non-contextual learners)."""

    def _reset_stats(self) -> None:
        self.counts = np.zeros(self.n_actions)  # total weight per arm
        self.sums = np.zeros(self.n_actions)  # total weighted reward per arm

    def _add(self, a: np.ndarray, r: np.ndarray, w: np.ndarray) -> None:
        self.counts += np.bincount(a, weights=w, minlength=self.n_actions)
        self.sums += np.bincount(a, weights=w * r, minlength=self.n_actions)

    def _rows(self, x: np.ndarray, row: np.ndarray) -> np.ndarray:
        return np.broadcast_to(row, (x.shape[0], self.n_actions)).copy()

    def _state(self) -> dict[str, np.ndarray]:
        return {"counts": self.counts.copy(), "sums": self.sums.copy()}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.counts, self.sums = state["counts"], state["sums"]


class EpsilonGreedy(_ArmStats):
    """Epsilon-greedy over incremental sample means (the textbook baseline).

    Values start at ``initial_value``; each batch moves the value of every pulled arm
    by the incremental-mean rule ``Q_a <- Q_a + (S_a - N_a Q_a) / (n_a + N_a)``, where
    ``N_a`` / ``S_a`` are the batch's (weighted) pulls and reward sum of arm ``a`` and
    ``n_a`` its pulls before: exactly the sequential update ``Q <- Q + (r - Q) / n`` applied
    row by row. Acts with ``Head("epsilon_greedy", epsilon)`` (ties split evenly).
    """

    kind = "epsilon-greedy"

    def __init__(
        self,
        n_actions: int,
        epsilon: float = 0.1,
        *,
        initial_value: float = 0.0,
        head: Head | dict[str, Any] | None = None,
        explore: bool = True,
    ) -> None:
        check_scalar(epsilon, "epsilon", float, min=0.0, max=1.0)
        check_scalar(initial_value, "initial_value", float)
        self.epsilon = float(epsilon)
        self.initial_value = float(initial_value)
        default = Head("epsilon_greedy", epsilon=self.epsilon)
        self._init_common(n_actions, None, as_head(head, default), explore)
        self.reset()

    def reset(self) -> None:
        self._reset_stats()
        self.values = np.full(self.n_actions, self.initial_value)

    def _update(self, x: np.ndarray | None, a: np.ndarray, r: np.ndarray, w: np.ndarray) -> None:
        n_b = np.bincount(a, weights=w, minlength=self.n_actions)
        s_b = np.bincount(a, weights=w * r, minlength=self.n_actions)
        self.counts += n_b
        self.sums += s_b
        hit = n_b > 0
        self.values[hit] += (s_b[hit] - n_b[hit] * self.values[hit]) / self.counts[hit]

    def _predict(self, x: np.ndarray) -> np.ndarray:
        return self._rows(x, self.values)

    def _explore_dist(self, x: np.ndarray) -> np.ndarray:
        return self.head.apply(self._predict(x))

    def _state(self) -> dict[str, np.ndarray]:
        return {**super()._state(), "values": self.values.copy()}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        super()._set_state(state)
        self.values = state["values"]

    def get_params(self) -> dict[str, Any]:
        return {
            "n_actions": self.n_actions,
            "epsilon": self.epsilon,
            "initial_value": self.initial_value,
            "head": self.head.to_dict(),
            "explore": self.explore,
        }


class UCB1(_ArmStats):
    """UCB1: ``index_a = mean_a + sqrt(c ln t / n_a)`` (``t`` total pulls), greedy on the index.

    Arms never pulled get :data:`UNTRIED_SCORE` (tried first, ties split evenly). With
    batches of size > 1 every row of a batch sees the same indices; the head (default
    greedy) decides how to spread them. Rewards are assumed in [0, 1] (``c = 2`` is the
    textbook constant for that range); a bounded continuous reward is learned on that
    scale (:func:`offrec.policies.logged.domain_rewards`).
    """

    kind = "ucb1"
    reward_support = "unit"  # c = 2 is calibrated for rewards in [0, 1]

    def __init__(
        self,
        n_actions: int,
        *,
        c: float = 2.0,
        head: Head | dict[str, Any] | None = None,
        explore: bool = True,
    ) -> None:
        check_scalar(c, "c", float, min=0.0)
        self.c = float(c)
        self._init_common(n_actions, None, as_head(head, Head()), explore)
        self.reset()

    def reset(self) -> None:
        self._reset_stats()

    def _update(self, x: np.ndarray | None, a: np.ndarray, r: np.ndarray, w: np.ndarray) -> None:
        self._add(a, r, w)

    @property
    def means(self) -> np.ndarray:
        return np.divide(
            self.sums, self.counts, out=np.zeros_like(self.sums), where=self.counts > 0
        )

    def indices(self) -> np.ndarray:
        """UCB index of every arm (n_actions,)."""
        t = max(float(self.counts.sum()), 1.0)
        tried = self.counts > 0
        bonus = np.sqrt(self.c * np.log(t) / np.where(tried, self.counts, 1.0))
        return np.where(tried, self.means + bonus, UNTRIED_SCORE)

    def _predict(self, x: np.ndarray) -> np.ndarray:
        return self._rows(x, self.means)

    def _explore_dist(self, x: np.ndarray) -> np.ndarray:
        return self.head.apply(self._rows(x, self.indices()))

    def get_params(self) -> dict[str, Any]:
        return {
            "n_actions": self.n_actions,
            "c": self.c,
            "head": self.head.to_dict(),
            "explore": self.explore,
        }


class BernoulliTS(_ArmStats):
    """Beta-Bernoulli Thompson sampling: ``p_a ~ Beta(alpha + S_a, beta + N_a - S_a)``.

    ``action_dist`` is the probability that each arm has the largest of ``n_draws``
    posterior draws (shared by all rows; seeded by ``(seed, n_updates)``, see the module
    docstring). Rewards must be in [0, 1] (a fractional reward counts as that fraction
    of a success); fitted on a log it needs the log to declare clicks (binary), and
    refuses another domain naming the learners that take it. ``predict`` gives
    posterior means.
    """

    kind = "bernoulli-ts"
    _reward_range = (0.0, 1.0)
    reward_support = "binary"  # a Beta-Bernoulli posterior is a click model
    fits_instead = "ucb1 or epsilon-greedy (linucb or lints with contexts)"

    def __init__(
        self,
        n_actions: int,
        *,
        alpha: float = 1.0,
        beta: float = 1.0,
        n_draws: int = 1000,
        seed: SeedLike = 0,
        head: Head | dict[str, Any] | None = None,
        explore: bool = True,
    ) -> None:
        check_scalar(alpha, "alpha", float, min=0.0, min_inclusive=False)
        check_scalar(beta, "beta", float, min=0.0, min_inclusive=False)
        check_scalar(n_draws, "n_draws", int, min=1)
        self.alpha, self.beta, self.n_draws = float(alpha), float(beta), int(n_draws)
        self.seed = seed_int(seed)
        self._init_common(n_actions, None, as_head(head, Head()), explore)
        self.reset()

    def reset(self) -> None:
        self._reset_stats()
        self._cache: tuple[int, np.ndarray] | None = None

    def _update(self, x: np.ndarray | None, a: np.ndarray, r: np.ndarray, w: np.ndarray) -> None:
        self._add(a, r, w)
        self._cache = None

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        super()._set_state(state)
        self._cache = None

    def _predict(self, x: np.ndarray) -> np.ndarray:
        a, b = self.alpha + self.sums, self.beta + self.counts - self.sums
        return self._rows(x, a / (a + b))

    def win_probabilities(self) -> np.ndarray:
        """Monte-Carlo probability (n_actions,) that each arm has the largest posterior draw."""
        if self._cache is None or self._cache[0] != self.n_updates:
            rng = np.random.default_rng([self.seed, self.n_updates])
            a = self.alpha + self.sums
            b = self.beta + np.maximum(self.counts - self.sums, 0.0)
            draws = rng.beta(a, b, size=(self.n_draws, self.n_actions))
            wins = np.bincount(draws.argmax(axis=1), minlength=self.n_actions)
            self._cache = (self.n_updates, wins / self.n_draws)
        return self._cache[1]

    def _explore_dist(self, x: np.ndarray) -> np.ndarray:
        return self._rows(x, self.win_probabilities())

    def get_params(self) -> dict[str, Any]:
        return {
            "n_actions": self.n_actions,
            "alpha": self.alpha,
            "beta": self.beta,
            "n_draws": self.n_draws,
            "seed": self.seed,
            "head": self.head.to_dict(),
            "explore": self.explore,
        }
