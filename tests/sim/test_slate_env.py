"""The slate gymnasium env: passes gymnasium's checker, reproducible, the same law as the
slate world."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from offrec.core.errors import InputError
from offrec.sim.config import WorldConfig
from offrec.sim.slate_env import SlateEnv


def _env(kind: str = "cascade") -> SlateEnv:
    return SlateEnv(WorldConfig(n_items=20, n_users=30), slate_size=4, click_model=kind)


@pytest.mark.parametrize("kind", ["independent", "pbm", "cascade"])
def test_passes_gymnasium_check_env(kind: str) -> None:
    check_env(_env(kind), skip_render_check=True)


def test_reproducible_and_matches_the_world() -> None:
    env = _env()
    obs, info = env.reset(seed=3)
    _, r1, term, trunc, step_info = env.step(np.array([3, 1, 4, 0]))
    assert term and not trunc and r1 == step_info["clicks"].sum()
    env2 = _env()
    env2.reset(seed=3)
    _, r2, *_ = env2.step(np.array([3, 1, 4, 0]))
    assert r1 == r2
    sw = env.slate_world
    expect = sw.expected_clicks(np.array([info["user"]]), np.array([[3, 1, 4, 0]]))[0]
    np.testing.assert_allclose(step_info["click_prob"], expect)
    np.testing.assert_array_equal(obs, sw.users_obs(np.array([info["user"]]))[0])


def test_mean_clicks_match_exact_expectation() -> None:
    env = _env("pbm")
    slate = np.array([5, 2, 9, 7])
    n, total, expect = 4000, 0.0, 0.0
    for seed in range(n):  # a loop over episodes: the env is one episode at a time
        _, info = env.reset(seed=seed)
        _, r, *_, step_info = env.step(slate)
        total += r
        expect += step_info["click_prob"].sum()
    # clicks per slate are a sum of 4 Bernoullis: variance <= 1 per episode
    assert abs(total - expect) / n <= 5 * np.sqrt(1.0 / n)


def test_repeated_items_are_empty_slots_and_bad_actions_fail() -> None:
    env = _env("independent")
    env.reset(seed=0)
    *_, info = env.step(np.array([2, 2, 3, 2]))
    np.testing.assert_array_equal(info["repeated"], [False, True, False, True])
    assert info["click_prob"][1] == 0.0 and info["click_prob"][3] == 0.0
    env.reset(seed=0)
    with pytest.raises(InputError, match=r"action items must be in \[0, 20\); slot 2 has 20"):
        env.step(np.array([0, 1, 20, 3]))
    with pytest.raises(InputError, match="action must be 4 integer item indices"):
        env.step(np.array([0, 1]))
    with pytest.raises(InputError, match="world horizon must be 1"):
        SlateEnv(WorldConfig(n_items=20, n_users=30, horizon=3))
