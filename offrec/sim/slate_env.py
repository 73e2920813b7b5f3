"""A gymnasium env that shows ranked lists: one slate per episode (bandit mode).

:class:`SlateEnv` is a thin wrapper over :class:`~offrec.sim.slate.SlateWorld` (the
world's users, items and ``q``; the click model's law): ``reset`` draws a user and
returns the world's observation, ``step`` shows the slate and returns the number of
clicks, and the one-step episode ends with ``terminated=True``, as slate logs mark it.

Action space: ``MultiDiscrete([n_items] * slate_size)``, the item in each slot from the
top. A slate should not show an item twice; since ``MultiDiscrete`` samples may, a
repeated item is shown once, at its first slot, and its later copies are empty slots
(attractiveness 0, never clicked, still examined), reported in ``info["repeated"]``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from offrec.core.errors import InputError
from offrec.sim.config import WorldConfig
from offrec.sim.slate import ClickModel, SlateWorld
from offrec.sim.world import World


class SlateEnv(gym.Env[np.ndarray, np.ndarray]):
    """One user, one slate of ``slate_size`` items, clicks by ``click_model``.

    Args:
        config: a :class:`~offrec.sim.config.WorldConfig` (bandit mode: ``horizon`` 1), or
            a dict of its fields; None is the default world.
        slate_size: items per slate. click_model: a :data:`~offrec.sim.slate.CLICK_MODELS`
            name or a :class:`~offrec.sim.slate.ClickModel`. world_seed: items and users.

    Reward: clicks on the slate. ``info``: ``user``, and after a step ``clicks`` (K,) and
    ``click_prob`` (K,), the exact per-slot click probabilities given the slate.

    >>> env = SlateEnv(WorldConfig(n_items=20, n_users=50), slate_size=3)
    >>> obs, info = env.reset(seed=0)
    >>> _, reward, terminated, truncated, info = env.step(np.array([0, 1, 2]))
    >>> terminated, info["clicks"].shape
    (True, (3,))
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        config: WorldConfig | dict[str, Any] | None = None,
        slate_size: int = 5,
        click_model: str | ClickModel = "cascade",
        world_seed: int = 0,
    ) -> None:
        if isinstance(config, dict):
            config = WorldConfig.from_dict(config)
        world = World(config or WorldConfig(), seed=world_seed)
        cm = click_model if isinstance(click_model, ClickModel) else ClickModel(click_model)
        self.slate_world = SlateWorld(world, slate_size, cm)
        T = world.config.n_topics
        low = np.zeros(world.context_dim, np.float32)
        high = np.ones(world.context_dim, np.float32)
        low[:T], high[:T] = -1.0, 2.0  # observed profile, as the world clips it
        self.observation_space = spaces.Box(low, high, dtype=np.float32)
        self.action_space = spaces.MultiDiscrete(np.full(slate_size, world.n_actions, np.int64))
        self._user: int | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._user = int(self.np_random.integers(0, self.slate_world.world.config.n_users))
        obs = self.slate_world.users_obs(np.array([self._user]))[0]
        return obs, {"user": self._user}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._user is None:
            raise InputError("call reset() before step()")
        sw = self.slate_world
        a = np.asarray(action)
        if a.shape != (sw.slate_size,) or a.dtype.kind not in "iu":
            raise InputError(
                f"action must be {sw.slate_size} integer item indices; got {a.dtype} {a.shape}"
            )
        if a.min() < 0 or a.max() >= sw.n_items:
            i = int(np.flatnonzero((a < 0) | (a >= sw.n_items))[0])
            raise InputError(f"action items must be in [0, {sw.n_items}); slot {i} has {int(a[i])}")
        users = np.array([self._user])
        q = sw.world.pair_click_probs(users, a[None, :].astype(np.int64))
        _, first = np.unique(a, return_index=True)
        repeated = np.ones(sw.slate_size, bool)
        repeated[first] = False
        q[0, repeated] = 0.0  # a repeated item is an empty slot
        clicks = sw.click_model.sample_clicks(q, self.np_random)[0]
        info = {
            "user": self._user,
            "clicks": clicks,
            "click_prob": sw.click_model.slot_click_probs(q)[0],
            "repeated": repeated,
        }
        obs = sw.users_obs(users)[0]
        self._user = None
        return obs, float(clicks.sum()), True, False, info
