"""The ``Policy`` protocol, sampling with propensities, and heads that turn scores into policies.

Every policy in offrec, hand-made or learned, maps a batch of observations to a
probability distribution over items::

    action_dist(obs: (n, d)) -> (n, n_actions), rows summing to 1
    sample(obs: (n, d), rng) -> actions (n,) int64, pscores (n,) float64

where ``pscore[i] == action_dist(obs)[i, actions[i]]`` exactly, so a policy can
log its own propensities and be scored by off-policy estimators.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from offrec.core.errors import InputError
from offrec.core.validation import check_scalar


@runtime_checkable
class Policy(Protocol):
    """Anything with ``n_actions``, ``action_dist`` and ``sample`` is an offrec policy."""

    n_actions: int

    def action_dist(self, obs: np.ndarray) -> np.ndarray: ...

    def sample(
        self, obs: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]: ...


def sample_from_dist(dist: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw one action per row of ``dist`` (n, n_actions) by inverse CDF, vectorized.

    Returns ``(actions (n,) int64, pscores (n,) float64)`` with
    ``pscores[i] = dist[i, actions[i]]``. Actions with zero probability are never drawn.
    """
    n = dist.shape[0]
    cdf = np.cumsum(dist, axis=1)
    threshold = rng.random(n) * cdf[:, -1]
    # first index whose cumulative mass exceeds the threshold (argmax stops at the first True)
    actions = np.argmax(cdf > threshold[:, None], axis=1).astype(np.int64)
    pscores = dist[np.arange(n), actions].astype(np.float64)
    return actions, pscores


class BasePolicy:
    """Mixin giving ``sample`` from ``action_dist``; subclasses set ``n_actions``."""

    n_actions: int

    def action_dist(self, obs: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def sample(self, obs: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return sample_from_dist(self.action_dist(obs), rng)


@dataclass(frozen=True)
class Head:
    """How scores (n, n_actions) become a distribution.

    - ``greedy``: mass split evenly over the argmax set;
    - ``epsilon_greedy``: ``(1 - epsilon) * greedy + epsilon / |support|``;
    - ``softmax``: ``exp(s / temperature)`` normalised (``temperature > 0``).

    ``support`` (optional boolean mask over actions) gives zero probability to
    the items outside it: a deficient-support policy, as real loggers often are.
    """

    kind: str = "greedy"
    epsilon: float = 0.0
    temperature: float = 1.0

    KINDS = ("greedy", "epsilon_greedy", "softmax")

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            raise InputError(f"head kind must be one of {list(self.KINDS)}; got {self.kind!r}")
        check_scalar(self.epsilon, "epsilon", float, min=0.0, max=1.0)
        check_scalar(self.temperature, "temperature", float, min=0.0, min_inclusive=False)

    def apply(self, scores: np.ndarray, support: np.ndarray | None = None) -> np.ndarray:
        """Distribution (n, n_actions) float64 from ``scores`` (n, n_actions)."""
        s = np.asarray(scores, dtype=np.float64)
        if support is not None:
            s = np.where(support[None, :], s, -np.inf)
        if self.kind == "softmax":
            z = s - s.max(axis=1, keepdims=True)  # a fresh array: safe to work in place
            z *= 1.0 / self.temperature
            np.exp(z, out=z)
            z /= z.sum(axis=1, keepdims=True)
            return z
        top = s == s.max(axis=1, keepdims=True)
        greedy = top / top.sum(axis=1, keepdims=True)
        if self.kind == "greedy" or self.epsilon == 0.0:
            return greedy
        allowed = np.ones(s.shape[1], bool) if support is None else support
        explore = allowed / allowed.sum()
        return (1.0 - self.epsilon) * greedy + self.epsilon * explore[None, :]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return d


class UniformPolicy(BasePolicy):
    """Uniform random over all items, or over ``support`` (boolean mask) when given."""

    def __init__(self, n_actions: int, support: np.ndarray | None = None) -> None:
        check_scalar(n_actions, "n_actions", int, min=1)
        self.n_actions = n_actions
        self.support = None if support is None else _check_support(support, n_actions)

    def action_dist(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs)
        row = np.full(self.n_actions, 1.0 / self.n_actions)
        if self.support is not None:
            row = self.support / self.support.sum()
        return np.broadcast_to(row, (obs.shape[0], self.n_actions)).copy()

    def sample(self, obs: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        n = np.asarray(obs).shape[0]
        if self.support is None:
            actions = np.asarray(rng.integers(0, self.n_actions, size=n), dtype=np.int64)
            return actions, np.full(n, 1.0 / self.n_actions)
        allowed = np.flatnonzero(self.support)
        return allowed[rng.integers(0, allowed.size, size=n)], np.full(n, 1.0 / allowed.size)

    def spec(self) -> dict[str, Any]:
        support = None if self.support is None else np.flatnonzero(self.support).tolist()
        return {"type": "uniform", "n_actions": self.n_actions, "support": support}


class ScorePolicy(BasePolicy):
    """A scorer ``obs (n, d) -> scores (n, n_actions)`` followed by a :class:`Head`."""

    def __init__(
        self,
        scorer: Callable[[np.ndarray], np.ndarray],
        n_actions: int,
        head: Head | None = None,
        support: np.ndarray | None = None,
        spec: dict[str, Any] | None = None,
    ) -> None:
        check_scalar(n_actions, "n_actions", int, min=1)
        self.scorer = scorer
        self.n_actions = n_actions
        self.head = head or Head()
        self.support = None if support is None else _check_support(support, n_actions)
        self._spec = spec or {"type": "score"}

    def action_dist(self, obs: np.ndarray) -> np.ndarray:
        scores = self.scorer(np.asarray(obs))
        if scores.shape != (len(obs), self.n_actions):
            raise InputError(f"scorer must return shape (n, {self.n_actions}); got {scores.shape}")
        return self.head.apply(scores, self.support)

    def spec(self) -> dict[str, Any]:
        support = None if self.support is None else np.flatnonzero(self.support).tolist()
        return {**self._spec, "head": self.head.to_dict(), "support": support}


def _check_support(support: np.ndarray, n_actions: int) -> np.ndarray:
    mask = np.asarray(support)
    if mask.dtype != bool:
        idx = mask.astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= n_actions):
            raise InputError(f"support items must be in [0, {n_actions}); got {idx.tolist()}")
        mask = np.zeros(n_actions, bool)
        mask[idx] = True
    if mask.shape != (n_actions,):
        raise InputError(f"support must have shape ({n_actions},); got {mask.shape}")
    if not mask.any():
        raise InputError("support must allow at least one item; got an empty support")
    return mask
