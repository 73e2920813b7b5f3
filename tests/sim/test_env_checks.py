"""The gymnasium env: session env by default (passes check_env), bandit episodes terminate."""

from __future__ import annotations

import tomllib
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import offrec  # noqa: F401  (registers the env)
from offrec.sim.env import DEFAULT_HORIZON

ROOT = Path(__file__).resolve().parents[2]


def test_default_env_is_a_session_env_that_passes_check_env():
    env = gym.make("offrec/Recommender-v0")
    assert env.unwrapped.world.config.horizon == DEFAULT_HORIZON > 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # check_env warnings are failures here
        check_env(env.unwrapped)
    env.reset(seed=0)
    steps = 0
    while True:
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        steps += 1
        if term or trunc:
            break
    assert 1 <= steps <= DEFAULT_HORIZON


def test_bandit_episode_ends_terminated_like_the_logs(tmp_path):
    env = gym.make("offrec/Recommender-v0", horizon=1)
    check_env(env.unwrapped)
    env.reset(seed=0)
    _, _, term, trunc, _ = env.step(0)
    assert (term, trunc) == (True, False)
    from offrec.logs import collect, read_logs
    from offrec.policies.loggers import logging_policy

    w = env.unwrapped.world
    collect(w, logging_policy(w, "uniform"), out=tmp_path / "l", n_decisions=50, seed=0)
    d = read_logs(tmp_path / "l")
    assert d.terminated.all() and not d.truncated.any()
    vec = gym.make_vec(
        "offrec/Recommender-v0", num_envs=4, vectorization_mode="vector_entry_point", horizon=1
    )
    vec.reset(seed=0)
    _, _, term, trunc, _ = vec.step(np.zeros(4, np.int64))
    assert term.all() and not trunc.any()


def test_entry_point_is_declared_for_gymnasium():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    target = meta["project"]["entry-points"]["gymnasium.envs"]["offrec"]
    module, _, attr = target.partition(":")
    import importlib

    fn = getattr(importlib.import_module(module), attr)
    fn()  # idempotent
    assert "offrec/Recommender-v0" in gym.registry


@pytest.mark.parametrize("field", ["n_users", "n_items"])
def test_absurd_world_sizes_fail_before_allocating(field):
    with pytest.raises(ValueError, match=f"{field}=.* is too large"):
        gym.make("offrec/Recommender-v0", **{field: 10**12})
