"""LoggedData.from_arrays: defaults for the columns a caller lacks, and the log's value rules."""

import numpy as np
import pyarrow.parquet as pq
import pytest

from offrec.logs.data import LoggedData


def test_bandit_defaults_one_step_sessions_ended_by_the_horizon():
    x = np.arange(8, dtype=float).reshape(4, 2)
    data = LoggedData.from_arrays(x, [0, 3, 1, 3], [1, 0, 0, 1], [0.25] * 4)
    assert data.n_rows == 4 and data.n_actions == 4 and data.context.dtype == np.float32
    np.testing.assert_array_equal(data.session_id, [0, 1, 2, 3])
    np.testing.assert_array_equal(data.step, [0, 0, 0, 0])
    assert data.truncated.all() and not data.terminated.any()
    assert (data.position == 0).all() and (data.user_id == -1).all()
    assert data.action.dtype == np.int64 and data.reward.dtype == np.float64


def test_sessions_count_steps_and_close_with_their_last_row():
    sid = [5, 5, 5, 2, 2, 9]
    term = [False, False, True, False, False, False]
    data = LoggedData.from_arrays(
        np.zeros((6, 1)), [0] * 6, [0] * 6, [1.0] * 6, session_id=sid, terminated=term, n_actions=3
    )
    np.testing.assert_array_equal(data.step, [0, 1, 2, 0, 1, 0])
    np.testing.assert_array_equal(data.truncated, [0, 0, 0, 0, 1, 1])  # session 5 terminated
    assert data.n_actions == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pscore": [0.5, 1.5]}, r"column 'pscore' must be in \(0, 1\]; row 1 has 1.5"),
        ({"action": [0, 4], "n_actions": 4}, r"column 'action' must be in \[0, 4\); row 1 has 4"),
        ({"reward": [0.0, np.nan]}, r"column 'reward' must be finite; row 1 has nan"),
        ({"action": [0.0, 1.0]}, r"action must be integers; got dtype float64"),
        ({"reward": [0.0]}, r"reward must have shape \(2,\) like context rows; got \(1,\)"),
        ({"session_id": [1, 2], "step": [0, -1]}, r"column 'step' must be >= 0; row 1 has -1"),
    ],
)
def test_bad_columns_are_named_with_the_first_bad_row(kwargs, message):
    base = {
        "context": np.zeros((2, 1)),
        "action": [0, 1],
        "reward": [0.0, 1.0],
        "pscore": [0.5, 0.5],
    }
    with pytest.raises(ValueError, match=message):
        LoggedData.from_arrays(**{**base, **kwargs})


def test_sessions_must_be_contiguous():
    with pytest.raises(ValueError, match=r"rows of each session must be contiguous"):
        LoggedData.from_arrays(np.zeros((3, 1)), [0] * 3, [0] * 3, [1.0] * 3, session_id=[1, 2, 1])


def test_round_trip_arrays_disk_read_logs_row_for_row(tmp_path):
    """numpy arrays -> LoggedData.from_arrays -> write_log -> read_logs, public API only;
    small row groups and part files so the streamed writer's seams are crossed."""
    from offrec.logs import read_logs, write_log

    rng = np.random.default_rng(7)
    n, k = 23, 4
    sid = np.repeat(np.arange(9), [3, 1, 4, 2, 3, 1, 5, 2, 2])
    dist = rng.dirichlet(np.ones(k), n).astype(np.float32)
    action = np.array([rng.choice(k, p=d / d.sum()) for d in dist.astype(np.float64)])
    domain = {"kind": "continuous", "low": -0.1, "high": 2.5}
    reward = rng.uniform(-0.1, 2.5, n)
    reward[[0, 5]] = -0.1, 2.5  # at the bounds: still inside after the float32 round trip
    given = dict(
        context=rng.normal(size=(n, 3)),
        action=action,
        reward=reward,
        pscore=dist[np.arange(n), action].astype(np.float64),
        session_id=sid,
        position=rng.integers(0, 3, n),
        user_id=rng.integers(0, 5, n),
        terminated=np.r_[sid[1:] != sid[:-1], False] & (rng.random(n) < 0.5),
        logging_dist=dist,
        reward_domain=domain,
        item_ids=["tea", 7, "jam", -3],
        metadata={"source": "unit-test", "note": {"week": 12}},
    )
    data = LoggedData.from_arrays(**given)
    write_log(data, tmp_path / "log", chunk_rows=5, rows_per_file=10)
    parts = sorted((tmp_path / "log").glob("*.parquet"))
    assert len(parts) == 2  # files roll over only between sessions
    per_file = [set(pq.read_table(f, columns=["session_id"]).column(0).to_pylist()) for f in parts]
    assert not per_file[0] & per_file[1]
    back = read_logs(tmp_path / "log")
    assert back.n_rows == n and back.n_actions == k
    for col in ("action", "session_id", "step", "position", "user_id", "terminated", "truncated"):
        np.testing.assert_array_equal(getattr(back, col), getattr(data, col), err_msg=col)
    np.testing.assert_array_equal(back.context, data.context)  # float32 both ways
    np.testing.assert_array_equal(back.logging_dist, data.logging_dist)
    np.testing.assert_array_equal(back.pscore, data.pscore)  # float64 on disk
    np.testing.assert_array_equal(back.reward, data.reward.astype(np.float32))  # float32 on disk
    assert back.reward_domain == domain
    assert back.metadata["action_map"] == ["tea", 7, "jam", -3]
    assert back.item_map == data.item_map
    assert back.metadata["source"] == "unit-test" and back.metadata["note"] == {"week": 12}
    # written again from what was read: the same rows and metadata
    write_log(back, tmp_path / "again")
    again = read_logs(tmp_path / "again")
    np.testing.assert_array_equal(again.reward, back.reward)
    assert {k: v for k, v in again.metadata.items() if k != "version"} == {
        k: v for k, v in back.metadata.items() if k != "version"
    }


def test_write_log_is_safe_like_every_offrec_writer(tmp_path):
    from offrec.core.errors import OutputExistsError
    from offrec.logs import write_log

    data = LoggedData.from_arrays(np.zeros((2, 1)), [0, 1], [1, 0], [0.5, 0.5])
    write_log(data, tmp_path / "log")
    with pytest.raises(OutputExistsError, match="already exists"):
        write_log(data, tmp_path / "log")
    write_log(data, tmp_path / "log", overwrite=True)  # offrec's own output: replaced
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(OutputExistsError, match="refusing to replace"):
        write_log(data, tmp_path / "mine", overwrite=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    data.pscore[1] = 0.0  # invalid rows: an error naming the row, nothing written
    with pytest.raises(ValueError, match=r"column 'pscore' must be in \(0, 1\]; row 1 has 0.0"):
        write_log(data, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_from_arrays_reward_domain_and_item_ids_are_checked():
    x = np.zeros((2, 1))
    with pytest.raises(ValueError, match=r"column 'reward' must be 0 or 1 .*row 1 has 0.5"):
        LoggedData.from_arrays(x, [0, 1], [1.0, 0.5], [0.5, 0.5])
    cont = {"kind": "continuous", "low": 0, "high": 1}
    data = LoggedData.from_arrays(x, [0, 1], [1.0, 0.5], [0.5, 0.5], reward_domain=cont)
    assert data.reward_domain == {"kind": "continuous", "low": 0.0, "high": 1.0}
    assert data.value_label == "mean reward"
    with pytest.raises(
        ValueError, match=r"must be in the declared domain \[0.0, 1.0\]; row 0 has 3.0"
    ):
        LoggedData.from_arrays(x, [0, 1], [3.0, 0.5], [0.5, 0.5], reward_domain=cont)
    with pytest.raises(ValueError, match=r"item_ids must list n_actions=3 ids .*got 2"):
        LoggedData.from_arrays(x, [0, 1], [1, 0], [0.5, 0.5], n_actions=3, item_ids=["a", "b"])
    with pytest.raises(ValueError, match=r"column 'action' must be in \[0, 2\); row 1 has 2"):
        LoggedData.from_arrays(x, [0, 2], [1, 0], [0.5, 0.5], item_ids=["a", "b"])
    assert LoggedData.from_arrays(x, [0, 1], [1, 0], [0.5, 0.5], item_ids=["b", "a"]).n_actions == 2
