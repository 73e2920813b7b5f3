"""The Bernoulli world: click probabilities written down, run by the one dynamics core."""

import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from scipy.special import expit, logit

from offrec.policies import UniformPolicy
from offrec.sim import BestItemOracle, MyopicOracle, World, WorldConfig

P3 = [0.2, 0.5, 0.7]


class ObsSoftmax:
    """A context-dependent policy: softmax of 3 * observed profile (the type's row)."""

    def __init__(self, n: int) -> None:
        self.n_actions = n

    def action_dist(self, obs: np.ndarray) -> np.ndarray:
        z = np.exp(3.0 * obs[:, : self.n_actions].astype(np.float64))
        return z / z.sum(axis=1, keepdims=True)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"click_probs": [0.2, 1.5]},
            ValueError,
            r"WorldConfig.click_probs\[0\]\[1\] must be a probability in \[0, 1\]; got 1.5",
        ),
        (
            {"click_probs": [-0.1, 0.5]},
            ValueError,
            r"WorldConfig.click_probs\[0\]\[0\] must be a probability in \[0, 1\]; got -0.1",
        ),
        (
            {"click_probs": [[0.2, 0.5], [0.1, math.nan]]},
            ValueError,
            r"WorldConfig.click_probs\[1\]\[1\] must be a probability in \[0, 1\]; got nan",
        ),
        (
            {"click_probs": [[0.2, 0.5], [0.1]]},
            ValueError,
            r"WorldConfig.click_probs rows must all have 2 items \(row 0\); row 1 has 1",
        ),
        ({"click_probs": [0.5]}, ValueError, "WorldConfig.n_items must be >= 2; got 1"),
        ({"click_probs": "0.2,0.5"}, TypeError, "WorldConfig.click_probs must be a list of"),
        ({"click_probs": []}, TypeError, "WorldConfig.click_probs must be a list of"),
        (
            {"click_probs": [0.2, "x"]},
            TypeError,
            r"WorldConfig.click_probs\[0\]\[1\] must be a number; got 'x'",
        ),
        (
            {"click_probs": [0.2, True]},
            TypeError,
            r"WorldConfig.click_probs\[0\]\[1\] must be a number; got True",
        ),
        (
            {"click_probs": [[0.2, 0.5], [0.3, 0.1]], "n_users": 3},
            ValueError,
            "WorldConfig.n_users must be a multiple of the 2 user types in click_probs",
        ),
        (
            {"click_probs": P3, "theta0": 1.0},
            ValueError,
            "WorldConfig.theta0 has no effect when click_probs is given",
        ),
        (
            {"click_probs": P3, "obs_noise": 0.2},
            ValueError,
            "WorldConfig.obs_noise has no effect when click_probs is given",
        ),
        (
            {"click_probs": P3, "n_items": 4},
            ValueError,
            r"WorldConfig.n_items must be 3 \(the number of items in click_probs",
        ),
        (
            {"click_probs": P3, "topic_names": ["a", "b"]},
            ValueError,
            "WorldConfig.topic_names must have n_topics=3 names; got 2",
        ),
    ],
)
def test_bad_bernoulli_config_names_field_rule_value(kwargs, error, message):
    with pytest.raises(error, match=message):
        WorldConfig.from_dict(kwargs)


def test_direct_construction_must_match_the_table():
    with pytest.raises(ValueError, match=r"WorldConfig.n_items must be 3 .* got 100"):
        WorldConfig(click_probs=((0.2, 0.5, 0.7),))


def test_bernoulli_fills_derived_fields_and_round_trips(tmp_path):
    cfg = WorldConfig.bernoulli(P3)
    assert (cfg.n_items, cfg.n_topics, cfg.latent_dim, cfg.n_users) == (3, 3, 3, 1)
    assert cfg.click_probs == ((0.2, 0.5, 0.7),) and cfg.n_user_types == 1
    assert WorldConfig.from_json(cfg.to_json()) == cfg
    (tmp_path / "w.toml").write_text("[world]\nclick_probs = [0.2, 0.5, 0.7]\n")
    assert WorldConfig.from_file(tmp_path / "w.toml") == cfg
    (tmp_path / "t.toml").write_text("click_probs = [[0.2, 0.5], [0.6, 0.1]]\nhorizon = 4\n")
    two = WorldConfig.from_file(tmp_path / "t.toml")
    assert two == WorldConfig.bernoulli([[0.2, 0.5], [0.6, 0.1]], horizon=4)
    assert two.n_users == 2 and two.replace(horizon=1).click_probs == two.click_probs
    big = WorldConfig.bernoulli(np.linspace(0.0, 1.0, 20))
    assert big.topics[:2] == ("item0", "item1") and len(big.topics) == 20


def test_latent_worlds_serialise_without_the_new_key():
    # caches and log metadata of latent worlds keep their old form
    assert "click_probs" not in WorldConfig().to_dict()
    assert WorldConfig().n_user_types is None


def test_exact_truth_is_the_table_average():
    rng = np.random.default_rng(7)
    probs = rng.uniform(0.0, 1.0, size=(4, 5))
    probs[0, 1], probs[2, 3] = 0.0, 1.0  # the edges are exact too
    world = World(WorldConfig.bernoulli(probs, n_users=12), seed=0)
    # one pi(a | type) per type; the world's users repeat the 4 types 3 times each
    pi = ObsSoftmax(5)
    dist = pi.action_dist(probs.astype(np.float32))
    want = float(np.mean((dist * probs).sum(axis=1)))
    assert world.true_value(pi).value == pytest.approx(want, abs=1e-12)
    assert world.true_value(UniformPolicy(5)).value == pytest.approx(probs.mean(), abs=1e-12)
    assert world.true_value(MyopicOracle(world)).value == pytest.approx(
        probs.max(axis=1).mean(), abs=1e-12
    )
    best = BestItemOracle(world)
    assert best.best_item == int(np.argmax(probs.mean(axis=0)))
    assert np.allclose(best.item_ctr, probs.mean(axis=0), atol=1e-12)


def test_clicks_are_bernoulli_with_the_given_probability():
    world = World(WorldConfig.bernoulli(P3), seed=0)
    rng = np.random.default_rng(3)
    n = 40_000
    for item, p in enumerate(P3):
        batch = world.new_sessions(n, rng)
        res = world.step(batch, np.full(n, item), rng)
        assert np.allclose(res.click_prob, p, atol=1e-15)
        # 4.5 binomial standard errors: fails for a wrong p by more than ~0.01
        assert abs(res.reward.mean() - p) < 4.5 * math.sqrt(p * (1 - p) / n)


def test_zero_and_one_are_never_and_always():
    world = World(WorldConfig.bernoulli([0.0, 1.0], horizon=3), seed=0)
    rng = np.random.default_rng(0)
    for item, p in enumerate((0.0, 1.0)):
        batch = world.new_sessions(5000, rng)
        res = world.step(batch, np.full(5000, item), rng)
        assert np.all(res.reward == p) and np.all(res.click_prob == p)


def test_session_dynamics_act_on_the_logit():
    cfg = WorldConfig.bernoulli(P3, horizon=5, boredom=0.4, repeat_penalty=1.0)
    world = World(cfg, seed=0)
    rng = np.random.default_rng(0)
    batch = world.new_sessions(1, rng)
    world.step(batch, np.array([2]), rng)
    q = world.click_probs(batch)[0]
    # item 2: fatigue 1 on its own topic and in the repeat window; others untouched
    assert q[2] == pytest.approx(expit(logit(0.7) - 0.4 - 1.0), abs=1e-12)
    assert np.allclose(q[:2], [0.2, 0.5], atol=1e-12)


def test_gym_env_on_a_bernoulli_world():
    env = gym.make("offrec/Recommender-v0", config=WorldConfig.bernoulli(P3, horizon=5))
    check_env(env.unwrapped)
    obs, _ = env.reset(seed=0)
    assert np.allclose(obs[:3], P3)  # the observed profile is the type's row
    _, _, _, _, info = env.step(1)
    assert info["click_prob"] == pytest.approx(0.5, abs=1e-12)


def test_env_single_session_path_keeps_zero_and_one_exact():
    env = gym.make("offrec/Recommender-v0", config=WorldConfig.bernoulli([0.0, 1.0], horizon=50))
    env.reset(seed=3)
    for t in range(20):  # boredom and repeats never move a probability of 0 or 1
        item = t % 2
        _, reward, terminated, truncated, info = env.step(item)
        assert info["click_prob"] == float(item) and reward == float(item)
        if terminated or truncated:
            env.reset(seed=t)
