import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from offrec.logs import collect, query, read_logs, read_metadata, summary
from offrec.logs.schema import log_schema
from offrec.policies import UniformPolicy
from offrec.policies.loggers import logging_policy
from offrec.sim import World, WorldConfig


@pytest.fixture(scope="module")
def world():
    return World(WorldConfig(n_users=2000), seed=0)


@pytest.fixture(scope="module")
def session_world():
    return World(WorldConfig(n_users=2000, horizon=6), seed=0)


def test_round_trip_keeps_every_column_and_metadata(tmp_path, session_world):
    pi = logging_policy(session_world, "softmax", beta=1.0)
    res = collect(
        session_world,
        pi,
        out=tmp_path / "log",
        n_sessions=300,
        seed=3,
        logging_dist=True,
        chunk_rows=600,
    )
    data = read_logs(tmp_path / "log")
    assert data.n_rows == res.n_rows and res.n_files == 1
    assert len(np.unique(data.session_id)) == 300 == res.n_sessions
    assert data.context.shape == (res.n_rows, session_world.context_dim)
    # rows ordered by (session, step); steps contiguous from 0; each session ends exactly once
    assert np.all(np.diff(data.session_id) >= 0)
    starts = np.r_[True, np.diff(data.session_id) != 0]
    assert np.all(data.step[starts] == 0) and np.all(np.diff(data.step)[~starts[1:]] == 1)
    ends = np.r_[starts[1:], True]
    assert np.all((data.terminated | data.truncated) == ends)
    assert np.all(data.truncated[ends] == (data.step[ends] == 5) & ~data.terminated[ends])
    # logged pscore is the policy's probability of the logged action, and so is logging_dist
    # (float32 scores: BLAS rounds a row's scores by its place in the batch, so a
    # recomputation in another batch agrees to float32 precision, ~1e-7 relative)
    dist = pi.action_dist(data.context)
    np.testing.assert_allclose(data.pscore, dist[np.arange(data.n_rows), data.action], rtol=2e-6)
    np.testing.assert_allclose(data.logging_dist, dist, atol=1e-6)
    meta = read_metadata(tmp_path / "log")
    assert meta["schema_version"] == 1 and meta["n_actions"] == 100
    assert WorldConfig.from_dict(meta["world_config"]) == session_world.config
    assert meta["logging_policy"]["type"] == "softmax" and meta["seed"] == 3
    # true_ctr is the world's click probability: clicks agree with it on average
    se = np.sqrt(np.sum(data.true_ctr * (1 - data.true_ctr))) / data.n_rows
    assert abs(data.reward.mean() - data.true_ctr.mean()) < 4 * se


def test_same_seed_same_table_row_by_row(tmp_path, session_world):
    pi = logging_policy(session_world, "epsilon_greedy", epsilon=0.2)
    for name in ("a", "b"):
        collect(session_world, pi, out=tmp_path / name, n_decisions=1500, seed=11, chunk_rows=500)
    ta, tb = (pq.read_table(tmp_path / n / "part-00000.parquet") for n in ("a", "b"))
    assert ta.num_rows == 1500 and ta.equals(tb)
    collect(session_world, pi, out=tmp_path / "c", n_decisions=1500, seed=12, chunk_rows=500)
    assert not ta.equals(pq.read_table(tmp_path / "c" / "part-00000.parquet"))


@pytest.mark.parametrize("kind", ["softmax", "epsilon_greedy"])
def test_fast_loggers_same_seed_same_parquet_and_exact_pscores(tmp_path, world, kind):
    """Several cohorts in flight across part files: same seed, same bytes of content;
    the logged pscores are the dense float64 probabilities of the logged actions."""
    pi = logging_policy(world, kind, beta=2.0, epsilon=0.3, support=list(range(90)))
    for name, overlap in (("a", True), ("b", True), ("c", False)):
        collect(
            world,
            pi,
            out=tmp_path / name,
            n_decisions=9000,
            seed=5,
            chunk_rows=1000,
            rows_per_file=4000,
            overlap=overlap,
        )
    files = sorted(p.name for p in (tmp_path / "a").glob("*.parquet"))
    assert len(files) == 3
    for other in ("b", "c"):  # same seed; encoding in a worker thread or not
        assert files == sorted(p.name for p in (tmp_path / other).glob("*.parquet"))
        for f in files:
            assert pq.read_table(tmp_path / "a" / f).equals(pq.read_table(tmp_path / other / f))
    data = read_logs(tmp_path / "a")
    assert data.n_rows == 9000 and data.action.max() < 90
    # dense float64 head over the same float32 scores, one row at a time apart from batching
    scores = pi.scorer(data.context).astype(np.float64)  # type: ignore[attr-defined]
    scores[:, 90:] = -np.inf
    if kind == "softmax":
        e = np.exp(2.0 * (scores - scores.max(axis=1, keepdims=True)))
        dense = e / e.sum(axis=1, keepdims=True)
        rtol = 2e-6  # float32 scores and weights (see Head.sample)
    else:
        top = scores == scores.max(axis=1, keepdims=True)
        dense = 0.7 * top / top.sum(axis=1, keepdims=True) + 0.3 / 90
        rtol = 1e-15
    np.testing.assert_allclose(data.pscore, dense[np.arange(9000), data.action], rtol=rtol)


def test_n_decisions_is_exact_and_cut_session_is_truncated(tmp_path, session_world):
    res = collect(session_world, UniformPolicy(100), out=tmp_path / "x", n_decisions=1001, seed=0)
    data = read_logs(tmp_path / "x")
    assert res.n_rows == data.n_rows == 1001
    assert data.terminated[-1] or data.truncated[-1]


def test_streams_in_row_groups_and_part_files(tmp_path, world):
    res = collect(
        world,
        UniformPolicy(100),
        out=tmp_path / "x",
        n_decisions=10_000,
        seed=0,
        chunk_rows=1000,
        rows_per_file=4000,
    )
    files = sorted((tmp_path / "x").glob("*.parquet"))
    assert res.n_files == len(files) == 3
    assert pq.ParquetFile(files[0]).metadata.num_row_groups == 4
    assert read_logs(tmp_path / "x").n_rows == 10_000


class Boom(UniformPolicy):
    def __init__(self, fail_after: int) -> None:
        super().__init__(100)
        self.calls, self.fail_after = 0, fail_after

    def sample(self, obs, rng):
        self.calls += 1
        if self.calls > self.fail_after:
            raise RuntimeError("policy crashed")
        return super().sample(obs, rng)


def test_failing_collection_leaves_nothing_and_keeps_existing(tmp_path, world):
    with pytest.raises(RuntimeError, match="policy crashed"):
        collect(world, Boom(2), out=tmp_path / "x", n_decisions=10_000, seed=0, chunk_rows=1000)
    assert list(tmp_path.iterdir()) == []
    collect(world, UniformPolicy(100), out=tmp_path / "x", n_decisions=100, seed=0)
    with pytest.raises(FileExistsError, match="already exists; pass overwrite=True"):
        collect(world, UniformPolicy(100), out=tmp_path / "x", n_decisions=50, seed=0)
    with pytest.raises(RuntimeError):
        collect(
            world,
            Boom(2),
            out=tmp_path / "x",
            n_decisions=10_000,
            seed=0,
            chunk_rows=1000,
            overwrite=True,
        )
    assert read_logs(tmp_path / "x").n_rows == 100  # the old dataset survived
    assert [p.name for p in tmp_path.iterdir()] == ["x"]
    collect(world, UniformPolicy(100), out=tmp_path / "x", n_decisions=50, seed=0, overwrite=True)
    assert read_logs(tmp_path / "x").n_rows == 50


def test_uniform_log_mean_reward_matches_exact_true_value(tmp_path, world):
    collect(world, UniformPolicy(100), out=tmp_path / "u", n_decisions=200_000, seed=5)
    data = read_logs(tmp_path / "u")
    truth = world.true_value(UniformPolicy(100)).value
    se = data.reward.std(ddof=1) / np.sqrt(data.n_rows)
    assert abs(data.reward.mean() - truth) < 4 * se


def test_deficient_support_logger_never_logs_excluded_items(tmp_path, world):
    pi = logging_policy(world, "softmax", support=list(range(10)))
    collect(world, pi, out=tmp_path / "d", n_decisions=5000, seed=0)
    data = read_logs(tmp_path / "d")
    assert set(np.unique(data.action)) <= set(range(10))
    assert read_metadata(tmp_path / "d")["logging_policy"]["support"] == list(range(10))


def _write(path, **overrides):
    """A valid 4-row log with some columns overridden (arrow arrays or python lists)."""
    n = 4
    cols = {
        "session_id": pa.array([0, 1, 2, 3], pa.int64()),
        "step": pa.array([0] * n, pa.int32()),
        "user_id": pa.array([0] * n, pa.int64()),
        "context": pa.FixedSizeListArray.from_arrays(pa.array(np.ones(2 * n, np.float32)), 2),
        "action": pa.array([0, 1, 2, 1], pa.int32()),
        "position": pa.array([0] * n, pa.int32()),
        "reward": pa.array([1.0, 0.0, 0.0, 1.0], pa.float32()),
        "pscore": pa.array([0.5, 0.25, 0.25, 0.25]),
        "terminated": pa.array([False] * n),
        "truncated": pa.array([True] * n),
    }
    drop = overrides.pop("drop", None)
    cols.update(overrides)
    if drop:
        del cols[drop]
    meta = {b"offrec.n_actions": b"3"}
    table = pa.table(cols).replace_schema_metadata(meta)
    path.mkdir()
    pq.write_table(table, path / "part-00000.parquet")
    return path


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"pscore": pa.array([0.5, 0.0, 0.25, 0.25])},
            r"column 'pscore' must be in \(0, 1\]; row 1 has 0.0",
        ),
        (
            {"pscore": pa.array([0.5, 0.25, 1.5, 0.25])},
            r"column 'pscore' must be in \(0, 1\]; row 2 has 1.5",
        ),
        (
            {"reward": pa.array([1.0, 0.0, np.nan, 1.0], pa.float32())},
            r"column 'reward' must be finite; row 2 has nan",
        ),
        (
            {"action": pa.array([0, 1, 3, 1], pa.int32())},
            r"column 'action' must be in \[0, 3\); row 2 has 3",
        ),
        ({"drop": "reward"}, r"missing required column\(s\) \['reward'\]"),
        (
            {"action": pa.array(["a", "b", "c", "d"])},
            r"column 'action' has type string; expected int32 \(any integer type\)",
        ),
        (
            {"reward": pa.array([1.0, None, 0.0, 1.0])},
            "column 'reward' must not contain nulls; row 1 is null",
        ),
        (
            {"context": pa.array([[1.0, 2.0], [1.0], [1.0, 2.0], [0.0, 0.0]])},
            "column 'context' rows must all have the same width; row 1 has 1, row 0 has 2",
        ),
        (
            {"context": pa.array([[1.0, 2.0], [1.0, np.inf], [1.0, 2.0], [0.0, 0.0]])},
            r"column 'context' must be finite; row 1 has \[1.0, inf\]",
        ),
    ],
)
def test_bad_logs_get_exact_errors(tmp_path, overrides, message):
    path = _write(tmp_path / "bad", **overrides)
    with pytest.raises(ValueError, match=message):
        read_logs(path)


def test_empty_and_missing_logs(tmp_path):
    schema = log_schema(2, 3)
    (tmp_path / "empty").mkdir()
    pq.write_table(schema.empty_table(), tmp_path / "empty" / "part-00000.parquet")
    with pytest.raises(ValueError, match="has no rows"):
        read_logs(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no log at .*nope"):
        read_logs(tmp_path / "nope")
    (tmp_path / "dir").mkdir()
    with pytest.raises(FileNotFoundError, match="has no .parquet files"):
        read_logs(tmp_path / "dir")


def test_duckdb_query_and_summary(tmp_path, session_world):
    collect(
        session_world,
        logging_policy(session_world, "softmax"),
        out=tmp_path / "s",
        n_sessions=500,
        seed=0,
    )
    data = read_logs(tmp_path / "s")
    df = query(
        tmp_path / "s",
        "SELECT step, count(*) AS n, avg(reward) AS ctr FROM logs GROUP BY step ORDER BY step",
    )
    counts = np.bincount(data.step)
    np.testing.assert_array_equal(df["n"].to_numpy(), counts)
    np.testing.assert_allclose(
        df["ctr"].to_numpy(), np.bincount(data.step, data.reward) / counts, rtol=1e-6
    )
    s = summary(tmp_path / "s")
    row = s.overall.iloc[0]
    assert row["rows"] == data.n_rows and row["sessions"] == 500
    assert row["pscore_min"] == pytest.approx(data.pscore.min())
    w = (1 / 100) / data.pscore
    assert row["ess_uniform"] == pytest.approx(w.sum() ** 2 / (w**2).sum(), rel=1e-9)
    assert s.by_topic is not None and s.by_topic["rows"].sum() == data.n_rows
    topics = session_world.item_topic[data.action]
    top = s.by_topic.iloc[0]
    assert top["rows"] == np.bincount(topics).max()
    with pytest.raises(ValueError, match="SQL error: Parser Error"):
        query(tmp_path / "s", "SELEC 1")
