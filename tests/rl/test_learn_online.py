"""One entry point for online learners (bandits and SB3), their curves, and `train online`."""

import json
import math
import re
import sys

import numpy as np
import pytest

from offrec.cli import main
from offrec.policies import UniformPolicy
from offrec.policies.online import ValueCurve, session_stats
from offrec.rl.online_baseline import (
    MissingDependencyError,
    compare_online,
    learn_online,
    load_sb3_policy,
)
from offrec.sim import MyopicOracle, World, WorldConfig


@pytest.fixture(scope="module")
def bandit_world():
    return World(WorldConfig(n_items=20, n_users=300), seed=0)


def test_bandit_curve_is_the_exact_value_of_the_deployable_policy(bandit_world):
    run = learn_online(bandit_world, "linucb", 5_000, batch_size=500, eval_every=2_000)
    # measured at the first round reaching each multiple of eval_every, and at the end
    assert run.curve.interactions.tolist() == [2_000, 4_000, 5_000]
    assert np.all(run.curve.stderr == 0) and run.curve.metric == "CTR"
    assert run.curve.final[0] == bandit_world.true_value(run.policy).value
    assert run.bandit_curve is not None and run.bandit_curve.n_decisions == 5_000
    # the deployable policy is greedy and learned something: well above uniform
    assert run.curve.final[0] > 1.5 * bandit_world.true_value(UniformPolicy(20)).value


def test_value_curve_round_trip_and_shape_check():
    c = ValueCurve([10, 20], [0.1, 0.2], [0.0, 0.01], "CTR", 1.5, {"type": "x"})
    back = ValueCurve.from_dict(json.loads(json.dumps(c.to_dict())))
    assert back.interactions.tolist() == [10, 20] and back.value.tolist() == [0.1, 0.2]
    assert back.metric == "CTR" and back.learner == {"type": "x"} and back.final == (0.2, 0.01)
    with pytest.raises(ValueError, match=r"must be 1-D of one length; got shapes \(2,\), \(3,\)"):
        ValueCurve([1, 2], [0.1, 0.2, 0.3], [0, 0, 0], "CTR")


def test_unknown_learner_and_bad_params_are_named(bandit_world):
    with pytest.raises(
        ValueError, match=r"online learner must be one of \[.*'ppo', 'dqn'\]; got 'sac'"
    ):
        learn_online(bandit_world, "sac", 100)
    with pytest.raises(ValueError, match=r"learners must be distinct; repeated: \['linucb'\]"):
        compare_online(bandit_world, ["linucb", "linucb"], 100)
    with pytest.raises(ValueError, match=r"params given for \['ppo'\], which are not among"):
        compare_online(bandit_world, ["linucb"], 100, params={"ppo": {"n_envs": 2}})
    with pytest.raises(ValueError, match="eval_every must be >= 1; got 0"):
        learn_online(bandit_world, "linucb", 100, eval_every=0)


def test_session_stats_clicks_are_the_true_value_and_ctr_is_unbiased():
    world = World(WorldConfig(n_items=20, n_users=300, horizon=6), seed=0)
    policy = MyopicOracle(world)
    st = session_stats(world, policy, n_sessions=3_000, seed=5)
    assert st["clicks_per_session"] == world.true_value(policy, n_sessions=3_000, seed=5).value
    assert 1 <= st["session_length"] <= 6 and st["ctr_se"] > 0
    # no boredom, no repeat penalty: every step clicks with mean(p) under a uniform policy,
    # whatever the session length, so the ratio estimate must land within its SEs
    p = [0.1, 0.3, 0.6, 0.9]
    flat = World(WorldConfig.bernoulli(p, horizon=8, boredom=0.0, repeat_penalty=0.0), seed=0)
    st = session_stats(flat, UniformPolicy(4), n_sessions=4_000, seed=1)
    assert abs(st["ctr"] - np.mean(p)) < 4 * st["ctr_se"]
    assert st["clicks_per_session"] == pytest.approx(st["ctr"] * st["session_length"], rel=1e-12)
    exact = session_stats(World(WorldConfig.bernoulli(p), seed=0), UniformPolicy(4))
    assert exact["exact"] and exact["ctr"] == pytest.approx(np.mean(p), abs=1e-12)


# -- the CLI ---------------------------------------------------------------------------------
TINY_WORLD = ["--n-items", "8", "--n-users", "200", "--horizon", "4"]


def test_train_online_ppo_cli_round_trip(tmp_path, capsys, monkeypatch):
    pytest.importorskip("stable_baselines3")
    import tempfile

    scratch = tmp_path / "tmp"  # SB3's default logger would make SB3-<date> folders here
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    out = tmp_path / "run"
    argv = [
        "-q",
        "train",
        "online",
        "--learner",
        "ppo",
        "--learner",
        "epsilon-greedy",
        "--n-steps",
        "1500",
        "--eval-every",
        "500",
        "--eval-sessions",
        "300",
        "--param",
        "ppo.n_envs=2",
        "--param",
        "ppo.hidden_units=[16]",
        "--out",
        str(out),
        *TINY_WORLD,
    ]
    assert main(argv) == 0
    # no SB3 log folders outside --out (torch may keep its own kernel cache there)
    assert [f.name for f in scratch.iterdir() if f.name.startswith("SB3-")] == []
    printed = capsys.readouterr().out
    assert re.search(r"ppo: true clicks per session \d\.\d{4} ± \d\.\d{4} after", printed)
    data = json.loads((out / "curves.json").read_text())
    assert set(data["runs"]) == {"ppo", "epsilon-greedy"}
    assert set(data["references"]) == {"myopic oracle", "lookahead oracle"}
    ppo = ValueCurve.from_dict(data["runs"]["ppo"]["value_curve"])
    # PPO runs whole rollouts (n_envs x n_steps = 2 x 1024), so it may pass the budget
    assert ppo.interactions[0] >= 500 and ppo.interactions[-1] >= 1_500
    assert ppo.learner["n_envs"] == 2 and ppo.learner["hidden_units"] == [16]
    for name in (
        "value_curves.png",
        "learning_curves.png",
        "models/ppo.zip",
        "models/epsilon-greedy/policy.json",
    ):
        assert (out / name).is_file(), name
    # the saved model is the measured one: same truth with the same evaluation sessions
    world = World(WorldConfig(n_items=8, n_users=200, horizon=4), seed=0)
    policy = load_sb3_policy(out / "models" / "ppo.zip", world.n_actions)
    again = world.true_value(policy, n_sessions=300, seed=2024)
    assert again.value == ppo.value[-1]
    # an existing output is refused before any training
    assert main(argv) == 2
    assert "already exists; use --overwrite" in capsys.readouterr().err


def test_train_online_without_sb3_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "stable_baselines3", None)
    out = tmp_path / "run"
    code = main(
        [
            "-q",
            "train",
            "online",
            "--learner",
            "ppo",
            "--n-steps",
            "100",
            "--out",
            str(out),
            *TINY_WORLD,
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("offrec: error:") and "pip install 'offrec[sb3]'" in err
    assert not out.exists()
    with pytest.raises(MissingDependencyError):
        learn_online(World(WorldConfig(n_items=8, n_users=200), seed=0), "dqn", 10)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--learner", "sac"], r"online learner must be one of \[.*\]; got 'sac'"),
        (
            ["--learner", "linucb", "--param", "ppo.n_envs=2"],
            r"params name \['ppo'\], which are not among the learners \['linucb'\]",
        ),
        (["--learner", "linucb", "--param", "alpha=-1"], "alpha must be >= 0"),
    ],
)
def test_train_online_bad_input_is_one_line(tmp_path, capsys, extra, message):
    code = main(
        [
            "-q",
            "train",
            "online",
            *extra,
            "--n-steps",
            "100",
            "--out",
            str(tmp_path / "o"),
            *TINY_WORLD,
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and re.search(message, err), err
    assert not (tmp_path / "o").exists()


def test_bandit_and_rl_curves_share_one_axis(tmp_path):
    from offrec.report.learning_curves import plot_value_curves

    a = ValueCurve([100, 200], [0.5, 0.7], [0.01, 0.01], "clicks per session")
    b = ValueCurve([150, 300], [0.4, 0.9], [0.02, 0.02], "clicks per session")
    path = plot_value_curves(
        {"bandit": a, "ppo": b},
        tmp_path / "v.png",
        points={"CQL": (250, 0.8, 0.01)},
        references={"oracle": 1.0},
    )
    assert path.is_file() and path.stat().st_size > 10_000
    with pytest.raises(ValueError, match=r"curves must share one metric; got \['CTR', 'clicks"):
        plot_value_curves({"a": a, "c": ValueCurve([1], [0.1], [0.0], "CTR")}, tmp_path / "x.png")
    assert not math.isnan(a.final[0])
