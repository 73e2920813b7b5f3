"""``offrec.training.train``: one entry point for bandit, RL and online learners, used by
the CLI and the pipeline alike."""

from __future__ import annotations

import numpy as np
import pytest

from offrec.cli import main
from offrec.core.errors import InputError, OutputExistsError
from offrec.logs import collect, read_logs
from offrec.models import load_model
from offrec.pipeline_config import OnlineLearnerSpec
from offrec.policies.loggers import logging_policy
from offrec.sim import World, WorldConfig
from offrec.training import LearnerSpec, train


@pytest.fixture(scope="module")
def session_log(tmp_path_factory):
    world = World(WorldConfig(n_items=5, n_topics=3, horizon=4, n_users=200), seed=2)
    out = tmp_path_factory.mktemp("logs") / "s"
    collect(world, logging_policy(world, "uniform"), out=out, n_sessions=150, seed=1)
    return world, out


def test_bandit_learner_from_a_log_on_disk_saves_a_loadable_model(session_log, tmp_path):
    world, logs = session_log
    t = train("linucb", logs, tmp_path / "m")
    n = read_logs(logs).n_rows
    assert t.summary.n_rows == n and t.curve is None and t.out == tmp_path / "m"
    again = load_model(tmp_path / "m")
    x = np.random.default_rng(0).random((6, world.context_dim))
    np.testing.assert_array_equal(again.action_dist(x), t.policy.action_dist(x))
    assert (tmp_path / "m" / "world.json").is_file()  # a simulated log: its world is kept
    with pytest.raises(OutputExistsError, match="already exists"):
        train("linucb", logs, tmp_path / "m")  # refused before training


def test_rl_learner_reports_steps_and_its_curve(session_log, tmp_path):
    _, logs = session_log
    spec = LearnerSpec("dqn", {"n_steps": 30, "hidden_units": [8], "batch_size": 16})
    t = train(spec, logs, tmp_path / "q", evaluate=True)
    assert t.summary.n_steps == 30 and t.summary.value_label == "clicks per session"
    assert t.summary.eval_value is not None and isinstance(t.curve, dict)
    assert {"training.json", "training_curve.png", "qpolicy.json"} <= {
        p.name for p in (tmp_path / "q").iterdir()
    }


def test_cli_train_rl_samples_whole_sessions_like_every_learner(session_log, tmp_path, monkeypatch):
    """`offrec train rl` draws its training rows like :func:`train` does for every
    learner (a bounded sample of whole sessions from the streamed log), not by reading
    the whole log into memory."""
    import offrec.training

    calls = []
    real = offrec.training.draw_sample

    def spy(source, eng, max_rows, seed, *, sessions=False, progress=None):
        calls.append((type(source).__name__, max_rows, sessions))
        return real(source, eng, max_rows, seed, sessions=sessions, progress=progress)

    monkeypatch.setattr(offrec.training, "draw_sample", spy)
    _, logs = session_log
    argv = ["-q", "train", "rl", str(logs), "--algo", "dqn", "--n-steps", "20"]
    argv += ["--param", "hidden_units=[8]", "--out", str(tmp_path / "q")]
    assert main(argv) == 0
    assert calls == [("LogSource", 1_000_000, True)]
    assert load_model(tmp_path / "q").n_actions == 5


def test_memory_guard_is_inside_the_rl_trainer(session_log):
    from offrec.rl.config import DQNConfig
    from offrec.rl.q_learning import train_rl

    _, logs = session_log
    with pytest.raises(InputError, match=r"hidden_units=\[100000, 100000\] is too large"):
        train_rl(read_logs(logs), DQNConfig(hidden_units=(100_000, 100_000)))


def test_online_learner_trains_in_the_world_without_a_log(session_log, tmp_path):
    world, _ = session_log
    spec = OnlineLearnerSpec(
        name="o", learner="linucb", n_steps=400, batch_size=100, eval_sessions=20
    )
    t = train(spec, world=world, out=tmp_path / "o")
    assert t.curve is not None and int(t.curve.interactions[-1]) == 400
    assert {"value_curve.json", "policy.json", "world.json"} <= {
        p.name for p in (tmp_path / "o").iterdir()
    }
    with pytest.raises(InputError, match="pass the world to interact with"):
        train(spec)
    with pytest.raises(InputError, match="online learner spec: train it without logs"):
        train(spec, "some/log")  # type: ignore[arg-type]
