import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import offrec  # noqa: F401  (registers the env)
from offrec.policies import Head, ScorePolicy, UniformPolicy
from offrec.sim import BestItemOracle, LookaheadOracle, MyopicOracle, World, WorldConfig
from offrec.sim.env import RecommenderVectorEnv


@pytest.fixture(scope="module")
def bandit_world():
    return World(WorldConfig(), seed=0)


@pytest.fixture(scope="module")
def session_world():
    return World(WorldConfig(horizon=10), seed=0)


def _softmax_on_profile(world, temperature=0.5):
    """A policy that depends on the observation: softmax of <profile, item topic one-hot>."""
    onehot = np.eye(world.config.n_topics)[world.item_topic]  # (items, topics)
    T = world.config.n_topics
    return ScorePolicy(
        lambda obs: obs[:, :T] @ onehot.T, world.n_actions, Head("softmax", temperature=temperature)
    )


def test_world_is_deterministic_by_seed():
    a, b, c = World(seed=3), World(seed=3), World(seed=4)
    assert np.array_equal(a.user_obs_profile, b.user_obs_profile)
    assert np.array_equal(a.item_vec, b.item_vec)
    assert not np.array_equal(a.item_vec, c.item_vec)
    trajs = [
        w.run_sessions(UniformPolicy(100), 500, np.random.default_rng(9))
        for w in (World(WorldConfig(horizon=5), seed=1), World(WorldConfig(horizon=5), seed=1))
    ]
    for name in ("obs", "action", "reward", "click_prob", "terminated", "truncated"):
        assert np.array_equal(getattr(trajs[0], name), getattr(trajs[1], name)), name


def test_exact_bandit_value_matches_monte_carlo_of_200k_users(bandit_world):
    w = bandit_world
    rng = np.random.default_rng(11)
    for policy in (UniformPolicy(100), _softmax_on_profile(w)):
        exact = w.true_value(policy)
        assert exact.exact and exact.stderr == 0.0
        traj = w.run_sessions(policy, 200_000, rng)
        mc, se = traj.reward.mean(), traj.reward.std(ddof=1) / np.sqrt(200_000)
        assert abs(mc - exact.value) < 4 * se, (mc, exact.value, se)


def test_exact_value_equals_hand_computed_mean_over_users():
    w = World(WorldConfig(n_items=5, n_users=7, n_topics=2), seed=2)
    p = UniformPolicy(5)
    q = 1 / (
        1
        + np.exp(-(w.config.theta0 + w.config.theta1 * w.user_vec @ w.item_vec.T + w.item_quality))
    )
    assert w.true_value(p).value == pytest.approx(q.mean(), rel=1e-12)


def test_contextual_targeting_beats_best_single_item_by_1_3x(bandit_world):
    best = bandit_world.true_value(BestItemOracle(bandit_world)).value
    myopic = bandit_world.true_value(MyopicOracle(bandit_world)).value
    assert myopic >= 1.3 * best, (myopic, best)


def test_far_sighted_oracle_beats_myopic_by_10_percent_beyond_4_se(session_world):
    myopic = session_world.true_value(MyopicOracle(session_world), n_sessions=6000, seed=5)
    far = session_world.true_value(LookaheadOracle(session_world), n_sessions=6000, seed=5)
    diff_se = np.hypot(myopic.stderr, far.stderr)
    assert far.value >= 1.10 * myopic.value, (far, myopic)
    assert far.value - myopic.value > 4 * diff_se


def test_session_value_reproducible_by_seed(session_world):
    p = UniformPolicy(100)
    a = session_world.true_value(p, n_sessions=2000, seed=1)
    b = session_world.true_value(p, n_sessions=2000, seed=1)
    assert a == b and a.stderr > 0 and not a.exact


def test_bored_users_leave_earlier(session_world):
    """Always the same topic -> fatigue -> shorter sessions than rotating topics."""
    w = session_world
    same = np.flatnonzero(w.item_topic == 0)
    rotate = np.array([np.flatnonzero(w.item_topic == t)[0] for t in range(w.config.n_topics)])
    rng = np.random.default_rng(0)
    lengths = {}
    for name, items in (("same", same), ("rotate", rotate)):
        batch = w.new_sessions(20_000, rng)
        alive = np.ones(20_000, bool)
        steps = np.zeros(20_000)
        for t in range(w.config.horizon):
            res = w.step(batch, np.full(20_000, items[t % len(items)]), rng)
            steps += alive
            alive &= ~(res.terminated | res.truncated)
        lengths[name] = steps.mean()
    assert lengths["rotate"] > lengths["same"] + 0.5, lengths


def test_oracles_recover_users_from_logged_contexts(bandit_world):
    w = bandit_world
    batch = w.new_sessions(1000, np.random.default_rng(0))
    assert np.array_equal(w.user_from_obs(w.observe(batch)), batch.user)
    with pytest.raises(ValueError, match="obs row 0 matches no user"):
        w.user_from_obs(np.zeros((2, w.context_dim), np.float32))


def test_step_rejects_actions_out_of_range(session_world):
    batch = session_world.new_sessions(3, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"action must be in \[0, 100\); row 1 has 100"):
        session_world.step(batch, np.array([0, 100, 2]), np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"actions must have shape \(3,\)"):
        session_world.step(batch, np.array([0, 1]), np.random.default_rng(0))


def test_gym_env_passes_check_env_and_seeding_contract():
    env = gym.make("offrec/Recommender-v0", horizon=10)
    check_env(env.unwrapped, skip_render_check=True)
    o1, _ = env.reset(seed=42)
    steps1 = [env.step(i) for i in range(5)]
    o2, _ = env.reset(seed=42)
    steps2 = [env.step(i) for i in range(5)]
    assert np.array_equal(o1, o2)
    assert [s[1:4] for s in steps1] == [s[1:4] for s in steps2]
    with pytest.raises(ValueError, match=r"action must be in \[0, 100\); got 100"):
        env.step(100)


def test_vector_env_autoresets_and_matches_core():
    venv = gym.make_vec(
        "offrec/Recommender-v0", num_envs=4, vectorization_mode="vector_entry_point", horizon=3
    )
    assert isinstance(venv, RecommenderVectorEnv)
    obs, _ = venv.reset(seed=0)
    assert obs.shape == (4, 18)
    done_prev = np.zeros(4, bool)
    n_ends = 0
    for _ in range(10):
        obs, rew, term, trunc, _ = venv.step(np.zeros(4, np.int64))
        # the step after an end is a reset: zero reward, fresh observation at step 0
        assert np.all(rew[done_prev] == 0) and np.all(obs[done_prev, 16] == 0)
        done_prev = term | trunc
        n_ends += int(done_prev.sum())
    assert n_ends >= 8  # horizon 3: every env ends at least twice in 10 steps
    # the same seed through the batch core by hand (new_sessions, step, restart of the
    # sessions that ended on the step before): identical observations, rewards and ends
    world = venv.world
    rng = np.random.default_rng(0)
    obs, _ = venv.reset(seed=0)
    batch = world.new_sessions(4, rng)
    np.testing.assert_array_equal(obs, world.observe(batch))
    ended = np.zeros(4, bool)
    actions = np.random.default_rng(9).integers(0, world.n_actions, (10, 4))
    for a in actions:
        obs, rew, term, trunc, info = venv.step(a)
        res = world.step(batch, a, rng, validate=False)
        r, t, u = res.reward.copy(), res.terminated.copy(), res.truncated.copy()
        if ended.any():
            world.restart(batch, np.flatnonzero(ended), rng)
            r[ended], t[ended], u[ended] = 0.0, False, False
        ended = t | u
        np.testing.assert_array_equal(obs, world.observe(batch))
        np.testing.assert_array_equal(rew, r)
        np.testing.assert_array_equal(term, t)
        np.testing.assert_array_equal(trunc, u)
        np.testing.assert_array_equal(info["click_prob"], res.click_prob)


def test_deprecated_size_aliases_warn_and_agree(bandit_world):
    """``World.n_items`` / ``World.obs_dim`` are the old names of ``n_actions`` /
    ``context_dim``: each read warns, names the new attribute and returns the same value."""
    w = bandit_world
    with pytest.warns(
        DeprecationWarning, match=r"World\.n_items is deprecated; use World\.n_actions"
    ):
        assert w.n_items == w.n_actions == w.config.n_items
    with pytest.warns(
        DeprecationWarning, match=r"World\.obs_dim is deprecated; use World\.context_dim"
    ):
        assert w.obs_dim == w.context_dim == w.config.obs_dim
    with warnings.catch_warnings():  # the new names and the config's TOML keys stay quiet
        warnings.simplefilter("error")
        assert (w.n_actions, w.context_dim) == (w.config.n_items, w.config.obs_dim)
