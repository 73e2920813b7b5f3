"""Training, Q-policies, save/load, config checks and the vectorized sampler."""

import json

import numpy as np
import pytest

from offrec.logs.data import LoggedData
from offrec.policies import Head
from offrec.report.learning_curves import plot_training_curve
from offrec.rl import (
    QPolicy,
    RLConfig,
    VectorizedReplayBuffer,
    load_q_policy,
    to_transitions,
    train_rl,
)
from offrec.testing import check_policy

GAMMA = 0.5
N_ACTIONS = 4
GOOD = 2  # the only action that clicks, and only at step 1


def two_step_log(n_sessions: int = 600, seed: int = 0) -> LoggedData:
    """Sessions of two steps, uniform actions. Step 0 (obs [0, 1]) never clicks; step 1
    (obs [1, 1]) clicks iff the action is GOOD; half the sessions end by the user leaving,
    half by the horizon (2). True Q: Q(s1, GOOD) = 1, Q(s1, other) = 0, Q(s0, .) = GAMMA."""
    rng = np.random.default_rng(seed)
    n = 2 * n_sessions
    step = np.tile([0, 1], n_sessions)
    context = np.stack([step, np.ones(n)], axis=1).astype(np.float32)
    action = rng.integers(0, N_ACTIONS, n)
    reward = ((step == 1) & (action == GOOD)).astype(float)
    leaves = np.repeat(rng.random(n_sessions) < 0.5, 2)
    return LoggedData.from_arrays(
        context,
        action,
        reward,
        np.full(n, 1 / N_ACTIONS),
        n_actions=N_ACTIONS,
        session_id=np.repeat(np.arange(n_sessions), 2),
        terminated=(step == 1) & leaves,
        truncated=(step == 1) & ~leaves,
        metadata={"world_config": {"horizon": 2}},
    )


S0 = np.array([[0, 1]], np.float32)
S1 = np.array([[1, 1]], np.float32)


def tiny(algo: str, **kw) -> RLConfig:
    base = dict(
        algo=algo,
        n_steps=1500,
        batch_size=64,
        learning_rate=3e-3,
        gamma=GAMMA,
        target_update_interval=50,
        hidden_units=(32,),
        log_every=250,
        seed=0,
        alpha=0.1,
    )
    base.update(kw)
    return RLConfig(**base)


@pytest.fixture(scope="module")
def log():
    return two_step_log()


@pytest.fixture(scope="module")
def dqn(log):
    return train_rl(log, tiny("dqn"))


def test_dqn_learns_the_true_q_values_with_bootstrapping(dqn):
    q1, q0 = dqn.policy.q_values(S1)[0], dqn.policy.q_values(S0)[0]
    assert abs(q1[GOOD] - 1.0) < 0.1
    assert np.abs(np.delete(q1, GOOD)).max() < 0.1
    # step 0 pays nothing now: its value comes only through the bootstrapped target
    np.testing.assert_allclose(q0, GAMMA, atol=0.1)
    assert dqn.policy.action_dist(S1)[0, GOOD] == 1.0


def test_training_curve_is_recorded(dqn, tmp_path):
    c = dqn.curve
    np.testing.assert_array_equal(c.steps, [250, 500, 750, 1000, 1250, 1500])
    assert set(c.losses) == {"loss"} and c.losses["loss"].shape == (6,)
    assert np.isfinite(c.losses["loss"]).all() and c.losses["loss"][-1] < c.losses["loss"][0]
    assert c.q_start.shape == (6,) and abs(c.q_start[-1] - GAMMA) < 0.1
    assert np.all(np.diff(c.seconds) > 0) and c.eval_steps.size == 0
    assert dqn.data["n_transitions"] == 1200
    # the reported speed is the steps over the measured training time, which is the
    # curve's last cumulative time (evaluations excluded)
    assert dqn.seconds == c.seconds[-1]
    assert dqn.steps_per_second == pytest.approx(dqn.config.n_steps / c.seconds[-1], rel=1e-12)
    png = plot_training_curve(dqn, tmp_path / "curve.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("algo", ["double-dqn", "cql", "bcq"])
def test_other_algorithms_pick_the_clicking_action(log, algo):
    result = train_rl(log, tiny(algo, n_steps=800, log_every=400))
    policy = result.policy
    q = policy.q_values(np.vstack([S0, S1]))
    # BCQ scores the actions it may not take -inf; everything else is finite
    assert np.isfinite(q).all() if algo != "bcq" else np.isfinite(q.max(axis=1)).all()
    assert policy.action_dist(S1).argmax() == GOOD
    if algo == "cql":
        assert set(result.curve.losses) == {"loss", "td_loss", "conservative_loss"}
    check_policy(policy.with_head(Head("softmax", temperature=0.5)), np.vstack([S0, S1] * 8))


def test_same_seed_same_weights(log):
    a = train_rl(log, tiny("dqn", n_steps=100, log_every=50))
    b = train_rl(log, tiny("dqn", n_steps=100, log_every=50))
    c = train_rl(log, tiny("dqn", n_steps=100, log_every=50, seed=1))
    x = np.vstack([S0, S1])
    np.testing.assert_array_equal(a.policy.q_values(x), b.policy.q_values(x))
    assert not np.array_equal(a.policy.q_values(x), c.policy.q_values(x))


@pytest.mark.parametrize("sampler", ["vectorized", "default"])
def test_training_leaves_the_global_random_state_unchanged(log, sampler):
    import random

    import torch

    np.random.seed(12345)  # noqa: NPY002 - the legacy global state is what is checked
    random.seed(12345)
    torch.manual_seed(12345)
    np_before = np.random.get_state()  # noqa: NPY002
    py_before, torch_before = random.getstate(), torch.random.get_rng_state()
    train_rl(log, tiny("dqn", n_steps=50, log_every=25, sampler=sampler))
    np_after = np.random.get_state()  # noqa: NPY002
    assert np_after[0] == np_before[0] and np.array_equal(np_after[1], np_before[1])
    assert np_after[2:] == np_before[2:]
    assert random.getstate() == py_before
    assert torch.equal(torch.random.get_rng_state(), torch_before)


@pytest.mark.parametrize("caller", [(False, False), (True, True)])
def test_training_is_deterministic_and_restores_the_callers_setting(log, caller):
    """Training runs under torch.use_deterministic_algorithms(True) (a spy on the flag
    inside an update) and leaves the caller's setting, warn_only included, as it was."""
    import torch

    from offrec.rl import q_learning as train_module

    seen = []
    step = train_module.gradient_step

    def spy(algo, batch):
        seen.append(torch.are_deterministic_algorithms_enabled())
        return step(algo, batch)

    before = torch.are_deterministic_algorithms_enabled()
    before_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(caller[0], warn_only=caller[1])
    try:
        train_module.gradient_step = spy
        train_rl(log, tiny("cql", n_steps=20, log_every=10))
        assert seen == [True] * 20
        assert torch.are_deterministic_algorithms_enabled() is caller[0]
        assert torch.is_deterministic_algorithms_warn_only_enabled() is caller[1]
    finally:
        train_module.gradient_step = step
        torch.use_deterministic_algorithms(before, warn_only=before_warn)


def test_default_sampler_trains_too(log):
    result = train_rl(log, tiny("dqn", sampler="default", n_steps=1000))
    assert result.policy.action_dist(S1).argmax() == GOOD


def test_q_values_match_d3rlpy_one_action_at_a_time(dqn):
    algo = dqn.policy.model
    x = np.random.default_rng(0).random((7, 2)).astype(np.float32)
    q = dqn.policy.q_values(x)
    for a in range(N_ACTIONS):
        np.testing.assert_allclose(q[:, a], algo.predict_value(x, np.full(7, a)), rtol=1e-6)
    np.testing.assert_array_equal(q.argmax(axis=1), algo.predict(x))


def test_a_rows_q_values_do_not_depend_on_its_batch(dqn):
    x = np.random.default_rng(2).random((300, 2)).astype(np.float32)
    x[:150] = np.round(x[:150])  # the states of the log, where Q-values nearly tie
    full = dqn.policy.q_values(x)
    for rows in (slice(0, 1), slice(5, 7), slice(10, 73), slice(0, 300)):
        np.testing.assert_array_equal(dqn.policy.q_values(x[rows]), full[rows])


def test_q_policy_around_a_torch_module_and_size_checks(dqn):
    import torch

    torch.manual_seed(0)
    net = torch.nn.Linear(2, N_ACTIONS)
    policy = QPolicy(net, N_ACTIONS, Head("softmax"), obs_dim=2)
    x = np.random.default_rng(0).random((9, 2)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(policy.q_values(x), net(torch.from_numpy(x)).numpy(), rtol=1e-6)
    check_policy(policy, x)
    with pytest.raises(ValueError, match="obs_dim is required"):
        QPolicy(net, N_ACTIONS)
    with pytest.raises(ValueError, match="n_actions=5 but the model scores 4 actions"):
        QPolicy(dqn.policy.model, 5)
    with pytest.raises(TypeError, match="only a QPolicy around a d3rlpy model"):
        policy.save("unused")


def test_policy_heads_and_recommend(dqn):
    x = np.vstack([S0, S1] * 32)
    for head in (Head(), Head("epsilon_greedy", epsilon=0.2), Head("softmax", temperature=0.3)):
        check_policy(dqn.policy.with_head(head), x)
    eps = dqn.policy.with_head(Head("epsilon_greedy", epsilon=0.2)).action_dist(S1)[0]
    np.testing.assert_allclose(eps, np.where(np.arange(4) == GOOD, 0.85, 0.05))
    items, scores = dqn.policy.recommend(S1, k=3)
    assert items.shape == (1, 3) and items[0, 0] == GOOD and np.all(np.diff(scores[0]) <= 0)
    np.testing.assert_array_equal(scores, np.take_along_axis(dqn.policy.q_values(S1), items, 1))
    with pytest.raises(ValueError, match=r"obs must have shape \(n, 2\); got \(3, 5\)"):
        dqn.policy.action_dist(np.zeros((3, 5)))


@pytest.mark.parametrize("algo", ["dqn", "bcq"])
def test_save_load_round_trip_gives_identical_action_dist(log, dqn, tmp_path, algo):
    result = dqn if algo == "dqn" else train_rl(log, tiny("bcq", n_steps=200, log_every=100))
    policy = result.policy.with_head(Head("softmax", temperature=0.2))
    folder = policy.save(tmp_path / "model")
    loaded = load_q_policy(folder, n_actions=N_ACTIONS, obs_dim=2)
    x = np.random.default_rng(1).random((50, 2)).astype(np.float32)
    np.testing.assert_array_equal(loaded.action_dist(x), policy.action_dist(x))
    assert loaded.head == policy.head and loaded.config == result.config
    greedy = load_q_policy(folder, head=Head())
    np.testing.assert_array_equal(greedy.action_dist(x), result.policy.action_dist(x))
    with pytest.raises(FileExistsError):
        policy.save(tmp_path / "model")


def test_load_rejects_mismatched_sizes_and_tampering(dqn, tmp_path):
    folder = dqn.save(tmp_path / "model", plot=plot_training_curve)
    assert {p.name for p in folder.iterdir() if not p.name.startswith(".")} == {
        "qpolicy.json",
        "weights.npz",
        "training.json",
        "training_curve.png",
    }
    with pytest.raises(
        ValueError, match="trained for n_actions=4 items; cannot load it for n_actions=100"
    ):
        load_q_policy(folder, n_actions=100)
    with pytest.raises(ValueError, match="width 2; cannot load it for obs_dim=18"):
        load_q_policy(folder, obs_dim=18)
    meta = json.loads((folder / "qpolicy.json").read_text())
    meta["rl_config"]["hidden_units"] = [64]
    (folder / "qpolicy.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="does not fit the saved config"):
        load_q_policy(folder)
    (folder / "weights.npz").write_bytes(b"not weights")
    with pytest.raises(ValueError, match="does not match the checksum"):
        load_q_policy(folder)
    with pytest.raises(FileNotFoundError, match="qpolicy.json not found"):
        load_q_policy(tmp_path)


def test_training_writes_nothing_outside_the_output(log, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    train_rl(log, tiny("cql", n_steps=20, log_every=10))
    assert list(tmp_path.iterdir()) == []
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_config_json_round_trip_and_errors():
    cfg = RLConfig(algo="dqn", hidden_units=[64, 32], gamma=0.8)
    assert cfg.hidden_units == (64, 32)
    assert RLConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(
        ValueError, match=r"unknown RL config key\(s\) \['lr'\]; valid keys: algo, n_steps"
    ):
        RLConfig.from_dict({"lr": 0.1})
    with pytest.raises(
        ValueError,
        match=r"RLConfig.algo must be one of \['dqn', 'double-dqn', 'cql', 'bcq'\]; got 'sac'",
    ):
        RLConfig(algo="sac")
    with pytest.raises(ValueError, match="RLConfig.learning_rate must be > 0.0; got -1.0"):
        RLConfig(learning_rate=-1.0)
    with pytest.raises(ValueError, match="RLConfig.gamma must be <= 1.0; got 1.5"):
        RLConfig(gamma=1.5)
    with pytest.raises(TypeError, match="RLConfig.n_steps must be int; got 10.5"):
        RLConfig(n_steps=10.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="RLConfig.sampler must be one of"):
        RLConfig(sampler="fast")
    with pytest.raises(ValueError, match="RLConfig.hidden_units must be a non-empty list"):
        RLConfig(hidden_units=())
    with pytest.raises(ValueError, match=r"RLConfig.hidden_units\[1\] must be >= 1; got 0"):
        RLConfig(hidden_units=(8, 0))


def test_train_rl_rejects_a_world_of_another_shape(log):
    from offrec.sim import World, WorldConfig

    world = World(WorldConfig(n_items=10, n_users=20, horizon=2), seed=0)
    with pytest.raises(ValueError, match="world has 10 items and observations of width 18"):
        train_rl(log, tiny("dqn", n_steps=10), world=world)


def test_online_evaluation_in_the_world(tmp_path):
    from offrec.logs import collect, read_logs
    from offrec.policies.loggers import logging_policy
    from offrec.sim import World, WorldConfig

    world = World(WorldConfig(n_items=10, n_users=200, horizon=3), seed=0)
    collect(world, logging_policy(world, "softmax"), out=tmp_path / "log", n_sessions=300, seed=0)
    cfg = RLConfig(
        algo="cql",
        n_steps=60,
        batch_size=32,
        hidden_units=(16,),
        log_every=20,
        eval_every=30,
        eval_sessions=200,
    )
    result = train_rl(read_logs(tmp_path / "log"), cfg, world=world)
    c = result.curve
    np.testing.assert_array_equal(c.eval_steps, [30, 60])
    # each evaluation is world.true_value of the policy as it was at that step: the last
    # one of the final policy, the first one of a run stopped at step 30 (same seed, so
    # the same first 30 updates)
    again = world.true_value(result.policy, n_sessions=200, seed=cfg.eval_seed)
    assert (again.value, again.stderr) == (c.eval_value[-1], c.eval_stderr[-1])
    short = train_rl(read_logs(tmp_path / "log"), RLConfig(**{**cfg.to_dict(), "n_steps": 30}))
    first = world.true_value(short.policy, n_sessions=200, seed=cfg.eval_seed)
    assert (first.value, first.stderr) == (c.eval_value[0], c.eval_stderr[0])
    check_policy(result.policy.with_head(Head("softmax")), obs_dim=world.context_dim)


def test_vectorized_sampler_draws_logged_transitions(log):
    tr = to_transitions(log)
    buf = VectorizedReplayBuffer(tr, seed=3)
    batch = buf.sample_transition_batch(512)
    assert len(batch) == 512 and batch.observations.dtype == np.float32
    nxt = tr.next_observations()
    logged = {
        (*o, a, r, *n, t)
        for o, a, r, n, t in zip(
            tr.observations, tr.actions, tr.rewards, nxt, tr.terminals, strict=True
        )
    }
    sampled = zip(
        batch.observations,
        batch.actions[:, 0],
        batch.rewards[:, 0],
        batch.next_observations,
        batch.terminals[:, 0],
        strict=True,
    )
    for o, a, r, n, t in sampled:
        assert (*o, a, r, *n, t) in logged
    # step-1 rows are terminal (both kinds of ending), step-0 rows bootstrap from step 1
    np.testing.assert_array_equal(batch.terminals[:, 0], batch.observations[:, 0])
    # seeded: the same seed draws the same batch, and rows are drawn uniformly
    again = VectorizedReplayBuffer(tr, seed=3).sample_transition_batch(512)
    np.testing.assert_array_equal(again.observations, batch.observations)
    assert abs(batch.terminals.mean() - 0.5) < 4 * np.sqrt(0.25 / 512)


def test_vectorized_batch_matches_d3rlpys_picker_row_by_row(log):
    tr = to_transitions(log)
    buf = VectorizedReplayBuffer(tr, seed=0)
    rows = np.r_[0, 1, 2, 3, np.random.default_rng(1).integers(0, tr.n_transitions, 60)]
    batch = buf.batch_at(rows)
    for i, row in enumerate(rows):
        t = buf.transition_at(int(row))  # d3rlpy's own BasicTransitionPicker
        np.testing.assert_array_equal(batch.observations[i], t.observation)
        np.testing.assert_array_equal(batch.actions[i], t.action)
        np.testing.assert_array_equal(batch.rewards[i], t.reward)
        np.testing.assert_array_equal(batch.next_observations[i], t.next_observation)
        np.testing.assert_array_equal(batch.next_actions[i], t.next_action)
        np.testing.assert_array_equal(batch.terminals[i], t.terminal)
        np.testing.assert_array_equal(batch.intervals[i], t.interval)


@pytest.mark.parametrize("algo", ["dqn", "cql"])
def test_gradient_step_gives_d3rlpy_the_update_algo_update_would(log, algo):
    import torch

    from offrec.rl.config import build_algo, seeded
    from offrec.rl.q_learning import gradient_step

    tr = to_transitions(log)
    cfg = tiny(algo, target_update_interval=3)  # the step counter drives the target sync
    runs = []
    for direct in (True, False):
        with seeded(0):
            a = build_algo(cfg)
            a.create_impl((tr.observation_dim,), tr.n_actions)
        buf = VectorizedReplayBuffer(tr, seed=5)
        losses = [
            gradient_step(a, buf.sample_torch_batch(64))
            if direct
            else a.update(buf.sample_transition_batch(64))
            for _ in range(10)
        ]
        targets = a.impl.modules.targ_q_funcs.state_dict()
        runs.append((losses, a.grad_step, a.impl.q_function.state_dict(), targets))
    (l1, g1, w1, t1), (l2, g2, w2, t2) = runs
    assert l1 == l2 and g1 == g2 == 10
    for name in w2:
        assert torch.equal(w1[name], w2[name]) and torch.equal(t1[name], t2[name]), name


def test_a_torch_batch_is_refused_when_d3rlpy_would_scale_it(log):
    import d3rlpy

    from offrec.rl.q_learning import gradient_step

    tr = to_transitions(log)
    scaler = d3rlpy.preprocessing.StandardObservationScaler(mean=np.zeros(2), std=np.ones(2))
    algo = d3rlpy.algos.DQNConfig(observation_scaler=scaler).create(device="cpu:0")
    algo.create_impl((tr.observation_dim,), tr.n_actions)
    buf = VectorizedReplayBuffer(tr, seed=0)
    with pytest.raises(ValueError, match="skips d3rlpy's scalers and returns-to-go"):
        gradient_step(algo, buf.sample_torch_batch(8))
    assert set(gradient_step(algo, buf.sample_transition_batch(8))) == {"loss"}
