"""Minari: offrec log -> Minari dataset -> offrec log, equal row for row; the dataset read
by ``minari.load_dataset`` offline; a Minari dataset without propensities; d3rlpy trained
from an imported Minari dataset."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from offrec.cli import main
from offrec.core.errors import InputError, OutputExistsError
from offrec.logs import LoggedData, collect, read_logs
from offrec.policies.loggers import logging_policy
from offrec.sim import World, WorldConfig

minari = pytest.importorskip("minari", reason="pip install 'offrec[minari]'")

from offrec.logs.minari import export_minari, import_minari  # noqa: E402


def _assert_same_log(a: LoggedData, b: LoggedData) -> None:
    for f in dataclasses.fields(LoggedData):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray) or x is None:
            assert (x is None) == (y is None), f.name
            if x is not None:
                assert x.dtype == y.dtype, f.name
                np.testing.assert_array_equal(x, y, err_msg=f.name)
        elif f.name == "metadata":
            assert {k: v for k, v in y.items() if k != "source"} == x
            assert y["source"] == "minari:offrec/demo-v0"
        else:
            assert x == y, f.name


@pytest.fixture(scope="module")
def session_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    world = World(WorldConfig(horizon=5, n_items=12, n_users=300), seed=0)
    out = tmp_path_factory.mktemp("minari") / "sessions"
    collect(
        world,
        logging_policy(world, "softmax"),
        out=out,
        n_sessions=400,
        seed=1,
        chunk_rows=256,
        logging_dist=True,
    )
    return out


def test_round_trip_is_equal_row_for_row(session_log: Path, tmp_path: Path) -> None:
    got = export_minari(session_log, "offrec/demo-v0", root=tmp_path / "m", batch_size=300)
    original = read_logs(session_log)
    assert got.episodes == np.unique(original.session_id).size
    assert got.steps == original.n_rows
    back = import_minari(tmp_path / "m" / "offrec" / "demo-v0", tmp_path / "back")
    assert (back.episodes, back.steps, back.propensities) == (got.episodes, got.steps, True)
    again = read_logs(tmp_path / "back")
    assert original.logging_dist is not None and original.true_ctr is not None
    _assert_same_log(original, again)


def test_minari_loads_the_dataset_offline(
    session_log: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    code = main(["-q", "export", "--format", "minari", str(session_log), "--out", "offrec/demo-v0"])
    assert code == 0
    ds = minari.load_dataset("offrec/demo-v0")  # from MINARI_DATASETS_PATH, no download
    log = read_logs(session_log)
    first = np.flatnonzero(log.session_id == log.session_id[0])
    ep = next(ds.iterate_episodes())
    t = first.size
    assert ds.total_steps == log.n_rows and ds.action_space.n == log.n_actions
    np.testing.assert_array_equal(ep.observations[:t], log.context[first])
    np.testing.assert_array_equal(ep.observations[t], log.context[first[-1]])  # repeated
    np.testing.assert_array_equal(ep.actions, log.action[first])
    np.testing.assert_array_equal(ep.rewards, log.reward[first])
    np.testing.assert_array_equal(ep.terminations, log.terminated[first])
    np.testing.assert_array_equal(ep.truncations, log.truncated[first])
    np.testing.assert_array_equal(ep.infos["pscore"][:t], log.pscore[first])
    assert np.isnan(ep.infos["pscore"][t])  # no action at the final observation
    assert log.logging_dist is not None
    np.testing.assert_array_equal(ep.infos["logging_dist"][:t], log.logging_dist[first])
    # a second export under the same id is refused, one line, exit 2; --overwrite replaces
    argv = ["-q", "export", "--format", "minari", str(session_log), "--out", "offrec/demo-v0"]
    assert main(argv) == 2
    assert main([*argv, "--overwrite"]) == 0
    with pytest.raises(OutputExistsError, match="offrec did not write"):
        foreign = tmp_path / "other" / "x-v0" / "data"
        foreign.mkdir(parents=True)
        (foreign / "metadata.json").write_text("{}")
        export_minari(session_log, "x-v0", root=tmp_path / "other", overwrite=True)


@pytest.mark.parametrize("bad", ["no version", "../up-v0", "a//b-v0", ""])
def test_a_bad_dataset_id_is_refused_before_writing(
    session_log: Path, tmp_path: Path, bad: str
) -> None:
    with pytest.raises(InputError, match="Minari dataset id must look like"):
        export_minari(session_log, bad, root=tmp_path)
    assert not any(tmp_path.iterdir())


def _foreign_dataset(root: Path, n_episodes: int = 60, k: int = 4) -> None:
    """A discrete-action Minari dataset made by Minari's own API, without infos."""
    import gymnasium as gym
    from minari.data_collector import EpisodeBuffer

    rng = np.random.default_rng(0)
    buffers = []
    for i in range(n_episodes):
        t = int(rng.integers(1, 5))
        buffers.append(
            EpisodeBuffer(
                id=i,
                observations=rng.normal(size=(t + 1, 3)).astype(np.float32),
                actions=rng.integers(0, k, t),
                rewards=(rng.random(t) < 0.3).astype(np.float64),
                terminations=np.arange(t) == t - 1,
                truncations=np.zeros(t, bool),
            )
        )
    space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    import os

    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        minari.create_dataset_from_buffers(
            "toy/clicks-v0",
            buffers,
            observation_space=space,
            action_space=gym.spaces.Discrete(k),
            algorithm_name="random",
            author="test",
            author_email="t@example.org",
            code_permalink="none",
            description="toy",
        )
    finally:
        if old is None:
            del os.environ["MINARI_DATASETS_PATH"]
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def test_a_dataset_without_propensities(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """No infos['pscore']: the import names what is missing and which estimators would not
    need it, writes nothing; with --uniform-pscore the log is written and DM runs."""
    _foreign_dataset(tmp_path / "m")
    src = str(tmp_path / "m" / "toy" / "clicks-v0")
    out = tmp_path / "log"
    assert main(["import", "minari", src, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "infos['pscore']" in err and "DM and FQE" in err
    assert not out.exists()
    assert main(["-q", "import", "minari", src, "--out", str(out), "--uniform-pscore"]) == 0
    data = read_logs(out)
    assert data.n_actions == 4 and np.all(data.pscore == 0.25)
    assert data.position.max() == 0 and data.user_id.min() == -1
    sessions = np.unique(data.session_id)
    assert sessions.size == 60 and data.step.max() <= 3
    from offrec.ope import FixedProbs, evaluate

    uniform = FixedProbs(np.full((data.n_rows, 4), 0.25))
    table = evaluate(
        out, {"u": uniform}, estimators=["dm", "ips"], mode="bandit", interval="normal"
    ).table
    ips = table.set_index("estimator").value["ips"]
    assert ips == pytest.approx(data.reward.mean(), rel=1e-12)  # target = claimed logger
    assert 0.0 < table.set_index("estimator").value["dm"] < 1.0


@pytest.mark.slow
def test_d3rlpy_trains_from_a_minari_dataset(session_log: Path, tmp_path: Path) -> None:
    """Export -> Minari -> import -> offrec's d3rlpy training (DQN, a few steps): the
    transitions are those of the original log, and the Q-network learns (finite loss)."""
    from offrec.rl import RLConfig, train_rl
    from offrec.rl.dataset import to_transitions

    export_minari(session_log, "offrec/demo-v0", root=tmp_path)
    import_minari(tmp_path / "offrec" / "demo-v0", tmp_path / "log")
    data = read_logs(tmp_path / "log")
    a, b = to_transitions(read_logs(session_log)), to_transitions(data)
    np.testing.assert_array_equal(a.observations, b.observations)
    np.testing.assert_array_equal(a.actions, b.actions)
    result = train_rl(data, RLConfig(algo="dqn", n_steps=40, batch_size=32, log_every=20))
    loss = result.curve.losses["loss"]
    assert loss.shape == (2,) and np.isfinite(loss).all()
    probs = result.policy.action_dist(data.context[:5])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    meta = json.loads((tmp_path / "offrec" / "demo-v0" / "data" / "metadata.json").read_text())
    assert meta["dataset_id"] == "offrec/demo-v0" and "offrec_metadata" in meta
