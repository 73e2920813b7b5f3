"""The env validates action types and refuses steps after the episode ended (issue 21)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from offrec.core.errors import InputError, InputTypeError
from offrec.sim.env import RecommenderEnv


@pytest.mark.parametrize(
    "action", [3.7, 3.0, True, np.True_, "3", np.float32(2.0), [1], np.array([1, 2])]
)
def test_non_integer_actions_are_refused_not_truncated(action):
    env = RecommenderEnv(n_items=10, n_users=50, horizon=3)
    env.reset(seed=0)
    with pytest.raises(InputTypeError, match="action must be an integer item index in \\[0, 10\\)"):
        env.step(action)


@pytest.mark.parametrize("action", [-1, 10, np.int64(10)])
def test_out_of_range_actions_are_refused(action):
    env = RecommenderEnv(n_items=10, n_users=50, horizon=3)
    env.reset(seed=0)
    with pytest.raises(InputError, match="action must be in \\[0, 10\\)"):
        env.step(action)


@pytest.mark.parametrize("action", [4, np.int64(4), np.int32(4), np.array(4), np.uint8(4)])
def test_integer_actions_of_any_kind_are_accepted(action):
    env = RecommenderEnv(n_items=10, n_users=50, horizon=3)
    env.reset(seed=0)
    obs, reward, *_ = env.step(action)
    assert obs.shape == env.observation_space.shape and reward in (0.0, 1.0)


@pytest.mark.parametrize("horizon", [1, 3])
def test_a_step_after_the_end_raises_until_reset(horizon):
    env = RecommenderEnv(n_items=10, n_users=50, horizon=horizon)
    env.reset(seed=1)
    steps, done = 0, False
    while not done:
        _, _, terminated, truncated, _ = env.step(0)
        done, steps = terminated or truncated, steps + 1
    assert steps <= horizon
    with pytest.raises(gym.error.ResetNeeded, match="call reset\\(\\) before step\\(\\)"):
        env.step(0)
    env.reset(seed=2)
    env.step(0)  # a new episode steps again


def test_env_still_passes_gymnasiums_checker():
    check_env(RecommenderEnv(n_items=10, n_users=50, horizon=3), skip_render_check=True)
