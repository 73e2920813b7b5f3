"""The optional stable-baselines3 online baseline."""

import sys

import numpy as np
import pytest

from offrec.sim import World, WorldConfig
from offrec.testing import check_policy

pytest.importorskip("stable_baselines3")

from offrec.rl.online_baseline import OnlineConfig, require_sb3, train_online  # noqa: E402


@pytest.fixture(scope="module")
def world():
    return World(WorldConfig(n_items=6, n_users=100, horizon=3), seed=0)


@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_tiny_online_run_gives_a_policy_and_a_learning_curve(world, algo):
    cfg = OnlineConfig(
        algo=algo,
        total_timesteps=1_200,
        n_envs=2,
        hidden_units=(16,),
        eval_every=600,
        eval_sessions=100,
    )
    result = train_online(world, cfg)
    t = result.timesteps
    assert t[0] >= 600 and np.all(np.diff(t) > 0) and t[-1] >= 1_200
    assert result.value.shape == t.shape and np.all((result.value > 0) & (result.value <= 3))
    again = world.true_value(result.policy, n_sessions=100, seed=cfg.eval_seed)
    assert again.value == result.value[-1]
    check_policy(result.policy, obs_dim=world.context_dim)
    assert result.to_dict()["config"]["algo"] == algo


def test_missing_sb3_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "stable_baselines3", None)
    with pytest.raises(ImportError, match=r"pip install 'offrec\[sb3\]'"):
        require_sb3()


def test_online_config_rejects_unknown_keys():
    with pytest.raises(
        ValueError, match=r"unknown online config key\(s\) \['steps'\]; valid keys: algo"
    ):
        OnlineConfig.from_dict({"steps": 3})
    with pytest.raises(ValueError, match="OnlineConfig.algo must be one of"):
        OnlineConfig(algo="sac")
    assert OnlineConfig.from_dict(OnlineConfig(algo="dqn").to_dict()) == OnlineConfig(algo="dqn")
