"""The base of every bandit learner: feedback validation, heads, exploit copies, state.

A learner is a :class:`~offrec.core.policy.Policy` that also learns::

    action_dist(obs (n, d)) -> (n, n_actions)
    sample(obs, rng)        -> actions (n,), pscores (n,)   (pscore == action_dist at the action)
    partial_fit(context (n, d), action (n,), reward (n,), weight (n,) | None) -> self
    predict(obs)            -> (n, n_actions) point estimates of the expected reward

``explore`` / :meth:`BanditLearner.exploit`: while exploring, a learner acts as the
algorithm says (epsilon-greedy, UCB indices, posterior sampling). ``exploit(head)``
returns a copy that applies ``head`` (greedy by default) to the point estimates
``predict(obs)``: the policy to deploy or to score off-policy after learning.

>>> import numpy as np
>>> x, a, r, w = check_feedback(None, [0, 2], [1.0, 0.0], None, n_actions=3, context_dim=None)
>>> a.tolist(), w.tolist()
([0, 2], [1.0, 1.0])
>>> check_feedback(None, [0, 3], [1.0, 0.0], None, n_actions=3, context_dim=None)
Traceback (most recent call last):
...
offrec.core.errors.InputError: action must be in [0, 3); row 1 has 3
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import numpy as np

from offrec.core.errors import InputError, InputTypeError
from offrec.core.policy import BasePolicy, GreedyDist, Head
from offrec.core.validation import SeedLike, as_seed_sequence, check_scalar, first_bad

__all__ = [
    "BanditLearner",
    "as_head",
    "block_rows",
    "check_context",
    "check_feedback",
    "seed_int",
]

_BLOCK_CELLS = 4_000_000  # scoring works on blocks of rows with about this many cells


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


def seed_int(seed: SeedLike) -> int:
    """An int seed to store (so saved learners reproduce); a fresh one when ``seed`` is None."""
    if isinstance(seed, int | np.integer) and not isinstance(seed, bool):
        if seed < 0:
            raise InputError(f"seed must be >= 0; got {seed}")
        return int(seed)
    return int(as_seed_sequence(seed).generate_state(1, np.uint64)[0] >> np.uint64(1))


def as_head(head: Head | dict[str, Any] | None, default: Head) -> Head:
    """``head`` as a :class:`Head` (a dict is its fields); ``default`` when None."""
    if head is None:
        return default
    if isinstance(head, Head):
        return head
    if isinstance(head, dict):
        return Head(**head)
    raise InputTypeError(f"head must be a Head or a dict; got {type(head).__name__}")


def block_rows(cells_per_row: int) -> int:
    """Rows per block so a block of ``cells_per_row``-wide rows has about 4M cells."""
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

    def action_dist_compact(self, obs: np.ndarray) -> GreedyDist | np.ndarray:
        """:meth:`action_dist` in its cheapest exact form: the head's
        (:meth:`~offrec.core.policy.Head.compact`) when not exploring, else dense."""
        x = self._check_obs(obs)
        if self.explore:
            return self._explore_dist(x)
        return self._exploit_compact(x)

    def _exploit_compact(self, x: np.ndarray) -> GreedyDist | np.ndarray:
        """The head on the point estimates, in its compact form (validated ``x``)."""
        return self.head.compact(self._predict(x))

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
    reward_support: ClassVar[str] = "any"
    """Which declared reward domains the learner takes (:mod:`offrec.core.domain`):
    ``"any"`` (raw rewards), ``"unit"`` (bounded rewards, learned on the unit scale
    ``(r - low) / (high - low)``) or ``"binary"`` (clicks only; :attr:`fits_instead` names
    what to use for other rewards). Read by :func:`offrec.policies.logged.domain_rewards`."""
    fits_instead: ClassVar[str] = ""
    item_map: Any = None
    """The item map it learned with (an :class:`~offrec.logs.items.ItemMap`, set when fitted
    on a ``LoggedData``; saved with it), or None: indexed like whatever log it meets."""

    def partial_fit(
        self,
        context: np.ndarray | None,
        action: np.ndarray,
        reward: np.ndarray,
        weight: np.ndarray | None = None,
    ) -> BanditLearner:
        """Update with one batch of ``(context, action, reward)`` rows, optionally weighted.

        ``weight`` (n,) multiplies each row's contribution (importance weights for
        off-policy fitting; see :func:`offrec.policies.logged.fit_logged`). Returns ``self``.
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
            context,
            action,
            reward,
            weight,
            n_actions=self.n_actions,
            context_dim=self.context_dim if self.contextual else None,
            reward_range=self._reward_range,
            who=who,
        )

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
