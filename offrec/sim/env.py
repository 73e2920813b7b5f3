"""Gymnasium wrappers over the world's batch core: one env, and a vector env.

``gymnasium.make("offrec/Recommender-v0")`` builds :class:`RecommenderEnv`: by default a
session env of :data:`DEFAULT_HORIZON` steps (pass ``horizon=1`` for bandit mode, where the
one-step episode ends with ``terminated=True``, as the logs mark it);
``gymnasium.make_vec("offrec/Recommender-v0", num_envs=64, vectorization_mode="vector_entry_point")``
builds :class:`RecommenderVectorEnv`. Both call :meth:`World.step`; neither holds dynamics.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import VectorEnv
from gymnasium.vector.utils import batch_space

from offrec.core.errors import InputError, InputTypeError
from offrec.sim.config import WorldConfig
from offrec.sim.world import SessionBatch, World

DEFAULT_HORIZON = 10
"""Steps per session of the env when neither a config nor ``horizon`` is given."""


def _make_world(
    config: WorldConfig | dict[str, Any] | None, world_seed: int, overrides: dict[str, Any]
) -> World:
    from offrec.sim.limits import check_world_size

    if isinstance(config, dict):
        config = WorldConfig.from_dict(config)
    if config is None and "horizon" not in overrides:
        overrides = {"horizon": DEFAULT_HORIZON, **overrides}
    config = (config or WorldConfig()).replace(**overrides) if overrides else config
    assert config is not None
    check_world_size(config)
    return World(config, seed=world_seed)


def _observation_space(world: World) -> spaces.Box:
    T = world.config.n_topics
    low = np.zeros(world.context_dim, np.float32)
    high = np.ones(world.context_dim, np.float32)  # step fraction, last click in [0, 1]
    low[:T], high[:T] = -1.0, 2.0  # observed profile (clipped in World)
    high[T : 2 * T] = world.config.horizon  # fatigue <= steps taken
    return spaces.Box(low, high, dtype=np.float32)


def check_action(action: Any, n_items: int) -> int:
    """``action`` as an int item index: a Python or numpy integer (a 0-d integer array too)
    in ``[0, n_items)``. A float (``3.7``, even ``3.0``), a bool, a string or an array of
    several values is an :class:`~offrec.core.errors.InputTypeError`, never truncated."""
    value = action
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise InputTypeError(
            f"action must be an integer item index in [0, {n_items}); got {action!r} "
            f"({type(action).__name__})"
        )
    if not 0 <= int(value) < n_items:
        raise InputError(f"action must be in [0, {n_items}); got {action!r}")
    return int(value)


class RecommenderEnv(gym.Env[np.ndarray, np.int64]):
    """One user session at a time. Action: item index; observation: ``World.observe``.

    Args:
        config: a ``WorldConfig`` (or a dict of its fields); keyword overrides such as
            ``horizon=10`` or ``n_items=50`` are applied on top.
        world_seed: fixes the items and users. Session randomness follows
            ``reset(seed=...)`` (gymnasium's ``np_random``).
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        config: WorldConfig | dict[str, Any] | None = None,
        world_seed: int = 0,
        **overrides: Any,
    ) -> None:
        self.world = _make_world(config, world_seed, overrides)
        self.action_space = spaces.Discrete(self.world.n_actions)
        self.observation_space = _observation_space(self.world)
        self._batch: SessionBatch | None = None
        self._one = np.zeros(1, np.int64)
        self._done = False  # the episode ended (terminated or truncated): reset() is due

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if self._batch is None:
            self._batch = self.world.new_sessions(1, self.np_random)
        else:
            self.world.restart(self._batch, slice(None), self.np_random)
        self._done = False
        return self.world.observe(self._batch)[0], {"user": int(self._batch.user[0])}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._batch is None:
            raise RuntimeError("call reset() before step()")
        if self._done:
            raise gym.error.ResetNeeded(
                "the episode has ended (terminated or truncated); call reset() before step()"
            )
        a = check_action(action, self.world.n_actions)
        self._one[0] = a
        res = self.world.step(self._batch, self._one, self.np_random, validate=False)
        obs = self.world.observe(self._batch)[0]
        info = {"click_prob": float(res.click_prob[0])}
        terminated, truncated = bool(res.terminated[0]), bool(res.truncated[0])
        if self.world.config.horizon == 1:  # bandit mode: nothing follows the one decision
            terminated, truncated = True, False
        self._done = terminated or truncated
        return obs, float(res.reward[0]), terminated, truncated, info


class RecommenderVectorEnv(VectorEnv):
    """``num_envs`` sessions stepped together by one call of the batch core.

    Autoreset follows gymnasium 1.0's next-step convention: the step after a
    session ends returns the first observation of a new session (reward 0, not done)
    and ignores that env's action.
    """

    metadata: dict[str, Any] = {"render_modes": [], "autoreset_mode": "NextStep"}

    def __init__(
        self,
        num_envs: int = 16,
        config: WorldConfig | dict[str, Any] | None = None,
        world_seed: int = 0,
        **overrides: Any,
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise InputError(f"num_envs must be an int >= 1; got {num_envs!r}")
        self.world = _make_world(config, world_seed, overrides)
        self.num_envs = num_envs
        self.single_action_space = spaces.Discrete(self.world.n_actions)
        self.single_observation_space = _observation_space(self.world)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self._batch: SessionBatch | None = None
        self._needs_reset = np.zeros(num_envs, bool)
        self._rng = np.random.default_rng()

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._batch = self.world.new_sessions(self.num_envs, self._rng)
        self._needs_reset[:] = False
        return self.world.observe(self._batch), {}

    def step(
        self, actions: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if self._batch is None:
            raise RuntimeError("call reset() before step()")
        a = self.world.check_actions(np.asarray(actions), self.num_envs)
        batch, fresh = self._batch, self._needs_reset
        res = self.world.step(batch, a, self._rng, validate=False)
        reward, term, trunc = res.reward, res.terminated, res.truncated
        if self.world.config.horizon == 1:  # bandit mode: the decision terminates the episode
            term, trunc = term | trunc, np.zeros_like(trunc)
        if fresh.any():  # sessions that ended last step start anew; their step is discarded
            idx = np.flatnonzero(fresh)
            self.world.restart(batch, idx, self._rng)
            reward[idx], term[idx], trunc[idx] = 0.0, False, False
        self._needs_reset = term | trunc
        return self.world.observe(batch), reward, term, trunc, {"click_prob": res.click_prob}
