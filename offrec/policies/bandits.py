"""Bandit learners that learn online (``partial_fit`` on batches) and act as policies.

Non-contextual (the context is ignored; one value per arm):

- :class:`EpsilonGreedy`: incremental sample means, epsilon-greedy head.
- :class:`UCB1`: ``mean_a + sqrt(c * ln t / n_a)`` (Auer et al. 2002), greedy head.
- :class:`BernoulliTS`: Beta-Bernoulli Thompson sampling.

Contextual (one model per arm on the features ``phi(x) = [1, x]``):

- :class:`LinUCB`: disjoint LinUCB (Li et al. 2010),
  ``theta_a = A_a^{-1} b_a``, score ``phi^T theta_a + alpha sqrt(phi^T A_a^{-1} phi)``
  with ``A_a = reg I + sum w phi phi^T`` and ``b_a = sum w r phi``.
- :class:`LinTS`: linear Thompson sampling (Agrawal & Goyal 2013),
  ``theta_a ~ N(A_a^{-1} b_a, scale^2 A_a^{-1})``.
- :class:`LogisticEpsilonGreedy`: per-arm ridge logistic regression, updated
  online by a Laplace (Gaussian) approximation of the posterior: each batch runs a
  few Newton steps on ``log N(w; m_a, P_a^{-1}) + sum w_i log Bernoulli(r_i; sigmoid(phi_i^T w))``
  and keeps the new mode and Hessian (Chapelle & Li 2011, with a full precision matrix).

Every learner is a :class:`~offrec.core.policy.Policy`::

    action_dist(obs (n, d)) -> (n, n_actions)
    sample(obs, rng)        -> actions (n,), pscores (n,)   (pscore == action_dist at the action)
    partial_fit(context (n, d), action (n,), reward (n,), weight (n,) | None) -> self
    predict(obs)            -> (n, n_actions) point estimates of the expected reward

Updates are batched: all rows of a batch are grouped by arm and the per-arm sums
(counts, ``sum w phi phi^T``, ``sum w r phi``) are computed with vectorized numpy
(``np.add.reduceat`` on rows sorted by arm), never a Python loop per row. Scoring
evaluates every arm at once with matrix products, in blocks of rows to bound memory.

Thompson sampling and ``action_dist``: a policy must report the distribution it
samples from, so the samplers here report the *probability that each arm is the
argmax of a posterior draw*, estimated with ``n_draws`` posterior draws shared by all
rows of a call. The draws are seeded by ``(seed, n_updates)``, so the distribution is a
deterministic function of the learner's state and ``sample`` (which draws from
``action_dist``) logs exact propensities. An arm that wins none of the draws has
probability 0 and is not shown; raise ``n_draws`` for finer exploration.

``explore`` / :meth:`BanditLearner.exploit`: while exploring, a learner acts as the
algorithm says (epsilon-greedy, UCB indices, posterior sampling). ``exploit(head)``
returns a copy that applies ``head`` (greedy by default) to the point estimates
``predict(obs)``: the policy to deploy or to score off-policy after learning.

>>> import numpy as np
>>> learner = LinUCB(n_actions=3, context_dim=2, alpha=0.5)
>>> x = np.array([[1.0, 0.0], [0.0, 1.0]])
>>> _ = learner.partial_fit(x, np.array([0, 2]), np.array([1.0, 0.0]))
>>> learner.action_dist(x).shape
(2, 3)
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import numpy as np
from scipy.special import expit

from offrec.core.errors import InputError, InputTypeError
from offrec.core.policy import BasePolicy, Head
from offrec.core.validation import SeedLike, as_seed_sequence, check_scalar, first_bad

__all__ = [
    "LEARNERS",
    "UNTRIED_SCORE",
    "BanditLearner",
    "BernoulliTS",
    "EpsilonGreedy",
    "LinTS",
    "LinUCB",
    "LogisticEpsilonGreedy",
    "UCB1",
    "check_context",
    "check_feedback",
    "make_learner",
]

#: score given to arms never pulled by UCB1 (finite, so softmax heads stay defined)
UNTRIED_SCORE = 1e9
_BLOCK_CELLS = 4_000_000  # scoring works on blocks of rows with about this many cells
_MAX_NEWTON_STEP = 4.0  # logistic Newton steps are capped at this change of any weight
_ROWS_PER_ARM_FOR_BLAS = 64  # grouped Gram matrices: per-arm BLAS above this many rows per arm


# -- input checks ------------------------------------------------------------------------------
def check_context(obs: Any, context_dim: int | None, name: str = "obs") -> np.ndarray:
    """``obs`` as a finite float64 (n, d) array; ``d`` must equal ``context_dim`` when given."""
    x = np.asarray(obs)
    if x.ndim != 2:
        raise InputError(f"{name} must be a 2-D array (n, d); got shape {x.shape}")
    if context_dim is not None and x.shape[1] != context_dim:
        raise InputError(
            f"{name} must have {context_dim} columns (the model's context_dim); got {x.shape[1]}"
        )
    if x.dtype == bool or not np.issubdtype(x.dtype, np.number):
        raise InputError(f"{name} must be numeric; got dtype {x.dtype}")
    x = x.astype(np.float64, copy=False)
    bad = ~np.isfinite(x)
    if bad.any():
        i = first_bad(bad)
        raise InputError(f"{name} must be finite; row {i} has {x[i].tolist()}")
    return x


def check_feedback(
    context: Any,
    action: Any,
    reward: Any,
    weight: Any,
    *,
    n_actions: int,
    context_dim: int | None,
    reward_range: tuple[float, float] | None = None,
    who: str = "",
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray, np.ndarray]:
    """Validate one batch of feedback; return ``(context, action, reward, weight)``.

    ``context`` (n, context_dim) float64 (``None`` allowed when ``context_dim`` is None),
    ``action`` (n,) int64 in ``[0, n_actions)``, ``reward`` (n,) finite float64 (inside
    ``reward_range`` when given), ``weight`` (n,) finite and ``>= 0`` (ones when None).
    Errors name the argument, the rule and the first offending row.
    """
    a = np.asarray(action)
    if a.ndim != 1:
        raise InputError(f"action must be a 1-D array (n,); got shape {a.shape}")
    if a.size and (a.dtype == bool or not np.issubdtype(a.dtype, np.integer)):
        raise InputError(f"action must be integers; got dtype {a.dtype}")
    a = a.astype(np.int64, copy=False)
    n = a.shape[0]
    bad = (a < 0) | (a >= n_actions)
    if bad.any():
        i = first_bad(bad)
        raise InputError(f"action must be in [0, {n_actions}); row {i} has {int(a[i])}")
    r = np.asarray(reward)
    if r.shape != (n,):
        raise InputError(f"reward must have shape ({n},) like action; got {r.shape}")
    if r.size and (r.dtype == bool or not np.issubdtype(r.dtype, np.number)):
        raise InputError(f"reward must be numeric; got dtype {r.dtype}")
    r = r.astype(np.float64, copy=False)
    bad = ~np.isfinite(r)
    if bad.any():
        i = first_bad(bad)
        raise InputError(f"reward must be finite; row {i} has {r[i]}")
    if reward_range is not None:
        lo, hi = reward_range
        bad = (r < lo) | (r > hi)
        if bad.any():
            i = first_bad(bad)
            raise InputError(f"reward must be in [{lo:g}, {hi:g}]{who}; row {i} has {r[i]}")
    if weight is None:
        w = np.ones(n)
    else:
        w = np.asarray(weight)
        if w.shape != (n,):
            raise InputError(f"weight must have shape ({n},) like action; got {w.shape}")
        w = w.astype(np.float64, copy=False)
        bad = ~np.isfinite(w) | (w < 0)
        if bad.any():
            i = first_bad(bad)
            raise InputError(f"weight must be finite and >= 0; row {i} has {w[i]}")
    x: np.ndarray | None = None
    if context_dim is not None:
        if context is None:
            raise InputError("context is required by a contextual learner; got None")
        x = check_context(context, context_dim, name="context")
        if x.shape[0] != n:
            raise InputError(f"context must have {n} rows like action; got {x.shape[0]}")
    elif context is not None and len(context) != n:
        raise InputError(f"context must have {n} rows like action; got {len(context)}")
    return x, a, r, w


def _seed_int(seed: SeedLike) -> int:
    """An int seed to store (so saved learners reproduce); a fresh one when ``seed`` is None."""
    if isinstance(seed, int | np.integer) and not isinstance(seed, bool):
        if seed < 0:
            raise InputError(f"seed must be >= 0; got {seed}")
        return int(seed)
    return int(as_seed_sequence(seed).generate_state(1, np.uint64)[0] >> np.uint64(1))


def _as_head(head: Head | dict[str, Any] | None, default: Head) -> Head:
    if head is None:
        return default
    if isinstance(head, Head):
        return head
    if isinstance(head, dict):
        return Head(**head)
    raise InputTypeError(f"head must be a Head or a dict; got {type(head).__name__}")


# -- grouped sums ------------------------------------------------------------------------------
class _Groups:
    """Rows grouped by arm. Sort the batch once with :meth:`sort`; the sums then take
    arrays in that sorted order and return one entry per distinct arm ``arms`` (g,)."""

    def __init__(self, action: np.ndarray) -> None:
        self.order = np.argsort(action, kind="stable")
        a = action[self.order]
        self.starts = np.flatnonzero(np.r_[True, a[1:] != a[:-1]]) if a.size else np.zeros(0, int)
        self.arms = a[self.starts]
        counts = np.diff(np.r_[self.starts, a.size])
        self.group = np.repeat(np.arange(self.arms.size), counts)  # group of each sorted row

    def sort(self, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
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


def _block_rows(cells_per_row: int) -> int:
    return max(1, _BLOCK_CELLS // max(1, cells_per_row))


# -- base class --------------------------------------------------------------------------------
class BanditLearner(BasePolicy):
    """Shared machinery: validation, heads, exploit copies, spec and persistence hooks.

    Subclasses define ``kind``, ``contextual``, ``get_params``, ``reset``, ``_predict``,
    ``_update`` (one batch), ``_explore_dist`` and ``_state`` / ``_set_state`` (the learned
    arrays, for persistence); ``_fit_all`` when fitting all rows at once differs from one
    big batch.
    """

    kind: ClassVar[str] = "bandit"
    contextual: ClassVar[bool] = False
    n_actions: int
    context_dim: int | None
    head: Head
    explore: bool
    n_updates: int

    def _init_common(
        self, n_actions: int, context_dim: int | None, head: Head, explore: bool
    ) -> None:
        check_scalar(n_actions, "n_actions", int, min=1)
        if context_dim is not None:
            check_scalar(context_dim, "context_dim", int, min=1)
        if not isinstance(explore, bool):
            raise InputTypeError(f"explore must be a bool; got {explore!r}")
        self.n_actions = int(n_actions)
        self.context_dim = None if context_dim is None else int(context_dim)
        self.head = head
        self.explore = explore
        self.n_updates = 0

    # -- policy ----------------------------------------------------------------------------
    def action_dist(self, obs: np.ndarray) -> np.ndarray:
        """Distribution (n, n_actions) float64: the algorithm's (``explore``) or the head's."""
        x = self._check_obs(obs)
        if self.explore:
            return self._explore_dist(x)
        return self.head.apply(self._predict(x))

    def predict(self, obs: np.ndarray) -> np.ndarray:
        """Point estimate of the expected reward of every arm, (n, n_actions) float64."""
        return self._predict(self._check_obs(obs))

    def _check_obs(self, obs: np.ndarray) -> np.ndarray:
        if self.contextual:
            return check_context(obs, self.context_dim)
        x = np.asarray(obs)
        if x.ndim != 2:
            raise InputError(f"obs must be a 2-D array (n, d); got shape {x.shape}")
        return x

    # -- learning --------------------------------------------------------------------------
    _reward_range: ClassVar[tuple[float, float] | None] = None

    def partial_fit(
        self,
        context: np.ndarray | None,
        action: np.ndarray,
        reward: np.ndarray,
        weight: np.ndarray | None = None,
    ) -> BanditLearner:
        """Update with one batch of ``(context, action, reward)`` rows, optionally weighted.

        ``weight`` (n,) multiplies each row's contribution (importance weights for
        off-policy fitting; see :func:`offrec.policies.offline.fit_logged`). Returns ``self``.
        """
        x, a, r, w = self._check_feedback(context, action, reward, weight)
        if a.size:
            self._update(x, a, r, w)
        self.n_updates += 1
        return self

    def fit(
        self,
        context: np.ndarray | None,
        action: np.ndarray,
        reward: np.ndarray,
        weight: np.ndarray | None = None,
    ) -> BanditLearner:
        """Forget everything learned, then learn from all rows at once. Returns ``self``."""
        x, a, r, w = self._check_feedback(context, action, reward, weight)
        self.reset()
        if a.size:
            self._fit_all(x, a, r, w)
        self.n_updates = 1
        return self

    def _check_feedback(
        self, context: Any, action: Any, reward: Any, weight: Any
    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray, np.ndarray]:
        who = f" for {type(self).__name__}" if self._reward_range is not None else ""
        return check_feedback(
            context, action, reward, weight,
            n_actions=self.n_actions,
            context_dim=self.context_dim if self.contextual else None,
            reward_range=self._reward_range, who=who,
        )  # fmt: skip

    def _fit_all(self, x: np.ndarray | None, a: np.ndarray, r: np.ndarray, w: np.ndarray) -> None:
        self._update(x, a, r, w)

    def exploit(self, head: Head | None = None) -> BanditLearner:
        """A copy that acts with ``head`` (default greedy) on the point estimates ``predict``."""
        other = copy.deepcopy(self)
        other.head = head or Head()
        other.explore = False
        return other

    # -- description and persistence ------------------------------------------------------
    def spec(self) -> dict[str, Any]:
        """JSON-able description: ``{"type": kind, **get_params()}``."""
        return {"type": self.kind, **self.get_params()}

    def get_params(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> BanditLearner:
        """Build an unfitted learner from ``get_params()`` output."""
        return cls(**params)

    def get_state(self) -> dict[str, np.ndarray]:
        """Everything learned, as numpy arrays (what :func:`save_policy` writes)."""
        return {"n_updates": np.asarray(self.n_updates, np.int64), **self._state()}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore :meth:`get_state` output; shapes are checked against this learner's sizes."""
        expected = self.get_state()
        missing = sorted(set(expected) - set(state))
        if missing:
            raise InputError(f"{type(self).__name__} state is missing arrays {missing}")
        for key, ref in expected.items():
            got = np.asarray(state[key])
            if got.shape != ref.shape:
                raise InputError(
                    f"{type(self).__name__} state array {key!r} must have shape {ref.shape}; "
                    f"got {got.shape}"
                )
        self.n_updates = int(state["n_updates"])
        self._set_state(
            {k: np.array(state[k], dtype=np.float64) for k in expected if k != "n_updates"}
        )

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    # -- hooks -----------------------------------------------------------------------------
    def reset(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _predict(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _update(
        self, x: np.ndarray | None, a: np.ndarray, r: np.ndarray, w: np.ndarray
    ) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _explore_dist(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _state(self) -> dict[str, np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _set_state(self, state: dict[str, np.ndarray]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


# -- non-contextual ----------------------------------------------------------------------------
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

    kind = "epsilon_greedy"

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
        self._init_common(n_actions, None, _as_head(head, default), explore)
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
            "n_actions": self.n_actions, "epsilon": self.epsilon,
            "initial_value": self.initial_value, "head": self.head.to_dict(),
            "explore": self.explore,
        }  # fmt: skip


class UCB1(_ArmStats):
    """UCB1: ``index_a = mean_a + sqrt(c ln t / n_a)`` (``t`` total pulls), greedy on the index.

    Arms never pulled get :data:`UNTRIED_SCORE` (tried first, ties split evenly). With
    batches of size > 1 every row of a batch sees the same indices; the head (default
    greedy) decides how to spread them. Rewards are assumed in [0, 1] (``c = 2`` is the
    textbook constant for that range).
    """

    kind = "ucb1"

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
        self._init_common(n_actions, None, _as_head(head, Head()), explore)
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
            "n_actions": self.n_actions, "c": self.c, "head": self.head.to_dict(),
            "explore": self.explore,
        }  # fmt: skip


class BernoulliTS(_ArmStats):
    """Beta-Bernoulli Thompson sampling: ``p_a ~ Beta(alpha + S_a, beta + N_a - S_a)``.

    ``action_dist`` is the probability that each arm has the largest of ``n_draws``
    posterior draws (shared by all rows; seeded by ``(seed, n_updates)``, see the module
    docstring). Rewards must be in [0, 1] (a fractional reward counts as that fraction
    of a success). ``predict`` gives posterior means.
    """

    kind = "bernoulli_ts"
    _reward_range = (0.0, 1.0)

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
        self.seed = _seed_int(seed)
        self._init_common(n_actions, None, _as_head(head, Head()), explore)
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
            "n_actions": self.n_actions, "alpha": self.alpha, "beta": self.beta,
            "n_draws": self.n_draws, "seed": self.seed, "head": self.head.to_dict(),
            "explore": self.explore,
        }  # fmt: skip


# -- contextual --------------------------------------------------------------------------------
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
            "n_actions": self.n_actions, "context_dim": self.context_dim, "reg": self.reg,
            "fit_intercept": self.fit_intercept,
        }  # fmt: skip


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
        g = _Groups(a)
        phi, r, w = g.sort(self.features(x), r, w)
        self.A[g.arms] += g.gram(phi, w)
        self.b[g.arms] += g.sum(phi * (w * r)[:, None])
        self._refresh(g.arms)

    def _predict(self, x: np.ndarray) -> np.ndarray:
        return self.features(x) @ self.theta.T

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

    kind = "lin_ucb"

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
        self._init_common(n_actions, context_dim, _as_head(head, Head()), explore)
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
        step = _block_rows(rows.size)
        for lo in range(0, phi.shape[0], step):
            p = phi[lo : lo + step]
            quad = (p[:, rows] * p[:, cols]) @ tri.T
            out[lo : lo + step] += self.alpha * np.sqrt(np.maximum(quad, 0.0))
        return out

    def _explore_dist(self, x: np.ndarray) -> np.ndarray:
        return self.head.apply(self.ucb(x))

    def get_params(self) -> dict[str, Any]:
        return {
            **self._linear_params(), "alpha": self.alpha, "head": self.head.to_dict(),
            "explore": self.explore,
        }  # fmt: skip


class LinTS(_Ridge):
    """Linear Thompson sampling with per-arm Gaussian posteriors.

    .. math::

        \\theta_a \\sim \\mathcal N\\big(A_a^{-1} b_a,\\ s^2 A_a^{-1}\\big)

    (``scale`` is :math:`s`; ``A_a``, ``b_a`` as in :class:`LinUCB`). ``action_dist`` is
    the probability that each arm has the largest ``phi^T theta_a`` under ``n_draws``
    posterior draws shared by all rows (seeded by ``(seed, n_updates)``), so ``sample``
    logs exact propensities. ``predict`` uses the posterior means.
    """

    kind = "lin_ts"

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
        self.seed = _seed_int(seed)
        self._init_common(n_actions, context_dim, _as_head(head, Head()), explore)
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
        step = _block_rows(m * k)
        for lo in range(0, phi.shape[0], step):
            best = (phi[lo : lo + step] @ flat).reshape(-1, m, k).argmax(axis=2)  # (nb, m)
            nb = best.shape[0]
            idx = (np.arange(nb)[:, None] * k + best).ravel()
            out[lo : lo + nb] = np.bincount(idx, minlength=nb * k).reshape(nb, k) / m
        return out

    def get_params(self) -> dict[str, Any]:
        return {
            **self._linear_params(), "scale": self.scale, "n_draws": self.n_draws,
            "seed": self.seed, "head": self.head.to_dict(), "explore": self.explore,
        }  # fmt: skip


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
    Rewards must be in [0, 1].
    """

    kind = "logistic_epsilon_greedy"
    _reward_range = (0.0, 1.0)

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
        self._init_common(n_actions, context_dim, _as_head(head, default), explore)
        self._init_linear(context_dim, reg, fit_intercept)
        self.reset()

    def reset(self) -> None:
        d, k = self.n_features, self.n_actions
        self.mean = np.zeros((k, d))
        self.precision = np.broadcast_to(self.reg * np.eye(d), (k, d, d)).copy()

    def _newton(
        self, x: np.ndarray, a: np.ndarray, r: np.ndarray, w: np.ndarray, n_iter: int, tol: float
    ) -> None:
        g = _Groups(a)
        phi, r, w = g.sort(self.features(x), r, w)
        m0, p0 = self.mean[g.arms], self.precision[g.arms]
        cur = m0.copy()
        it, converged = 0, False
        while True:
            p = expit(np.einsum("nd,nd->n", phi, cur[g.group]))
            hess = p0 + g.gram(phi, w * p * (1.0 - p))  # Hessian of the negative log posterior
            if it == n_iter or converged:
                break
            grad = np.einsum("gij,gj->gi", p0, cur - m0) - g.sum(phi * (w * (r - p))[:, None])
            delta = np.linalg.solve(hess, grad[..., None])[..., 0]
            # trust region: at most _MAX_NEWTON_STEP per coordinate, so a start far out on the
            # flat part of the sigmoid (tiny curvature) cannot throw the iterate away
            big = np.abs(delta).max(axis=1, keepdims=True)
            delta *= np.minimum(1.0, _MAX_NEWTON_STEP / np.maximum(big, 1e-300))
            cur -= delta
            it += 1
            converged = bool(np.abs(delta).max() < tol)
        self.mean[g.arms] = cur
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
            **self._linear_params(), "epsilon": self.epsilon, "n_newton": self.n_newton,
            "head": self.head.to_dict(), "explore": self.explore,
        }  # fmt: skip


#: learner names used by pipelines and the CLI
LEARNERS: dict[str, type[BanditLearner]] = {
    "epsilon_greedy": EpsilonGreedy,
    "ucb1": UCB1,
    "thompson": BernoulliTS,
    "linucb": LinUCB,
    "lints": LinTS,
    "logistic": LogisticEpsilonGreedy,
}


def make_learner(name: str, n_actions: int, context_dim: int, **params: Any) -> BanditLearner:
    """The learner called ``name`` in :data:`LEARNERS`, sized for ``n_actions`` items and
    (contextual learners) ``context_dim`` features."""
    if name not in LEARNERS:
        raise InputError(f"learner must be one of {list(LEARNERS)}; got {name!r}")
    cls = LEARNERS[name]
    if cls.contextual:
        return cls(n_actions, context_dim, **params)  # type: ignore[call-arg]
    return cls(n_actions, **params)  # type: ignore[call-arg]
