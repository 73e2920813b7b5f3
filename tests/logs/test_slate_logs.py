"""Slate logs: round trip, metadata, determinism, and the slate rules on tampered files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from offrec.core.errors import InputError
from offrec.core.policy import UniformPolicy
from offrec.logs.reader import read_logs
from offrec.logs.slate import check_slate_rows, collect_slates, read_slate_log
from offrec.sim.config import WorldConfig
from offrec.sim.slate import ClickModel, PlackettLuce, SlateWorld, TopKEpsilon
from offrec.sim.world import World


def _sw(n_items: int = 12, kind: str = "cascade") -> SlateWorld:
    return SlateWorld(World(WorldConfig(n_items=n_items, n_users=40), seed=1), 3, ClickModel(kind))


def test_round_trip_equals_the_simulated_rounds(tmp_path: Path) -> None:
    sw = _sw()
    logger = TopKEpsilon(UniformPolicy(12), 3, epsilon=0.5)
    collect_slates(sw, logger, out=tmp_path / "log", n_slates=500, chunk_slates=200, seed=7)
    log = read_slate_log(tmp_path / "log")
    assert log.slate_size == 3
    assert log.slate["click_model"] == {"kind": "cascade", "eta": 1.0, "stop": 0.0}
    assert log.slate["marginals"] == "exact"
    d = log.data
    assert d.n_rows == 1500
    np.testing.assert_array_equal(d.position[:6], [0, 1, 2, 0, 1, 2])
    np.testing.assert_array_equal(np.unique(d.session_id), np.arange(500))
    # the first chunk is sw.log with the first child seed: same slates and propensities
    # as recomputing the logger's propensities of the logged slates
    slates = d.action.reshape(500, 3)
    obs = d.context[::3]
    cond = logger.conditional(obs, slates)
    np.testing.assert_allclose(log.pscore_cascade.reshape(500, 3), np.cumprod(cond, axis=1))
    np.testing.assert_allclose(log.pscore_slate.reshape(500, 3)[:, 0], np.prod(cond, axis=1))
    marg, _ = logger.marginals(obs)
    np.testing.assert_allclose(
        d.pscore.reshape(500, 3), marg[np.arange(500)[:, None], np.arange(3), slates]
    )
    again = tmp_path / "again"
    collect_slates(sw, logger, out=again, n_slates=500, chunk_slates=200, seed=7)
    part = "part-00000.parquet"
    assert pq.read_table(again / part).equals(pq.read_table(tmp_path / "log" / part))


def test_monte_carlo_marginals_are_declared(tmp_path: Path) -> None:
    sw = SlateWorld(World(WorldConfig(n_items=40, n_users=20), seed=1), 5, ClickModel("pbm"))
    collect_slates(
        sw,
        PlackettLuce(UniformPolicy(40), 5),
        out=tmp_path / "log",
        n_slates=50,
        marginal_samples=64,
    )
    assert read_slate_log(tmp_path / "log").slate["marginals"] == {"monte_carlo_samples": 64}


def _tamper(src: Path, dst: Path, column: str, row: int, value: int) -> None:
    table = pq.read_table(src / "part-00000.parquet")
    col = table.column(column).to_numpy().copy()
    col[row] = value
    i = table.schema.get_field_index(column)
    table = table.set_column(i, table.schema.field(i), pa.array(col, table.schema.field(i).type))
    dst.mkdir()
    pq.write_table(table, dst / "part-00000.parquet")


@pytest.mark.parametrize(
    ("column", "row", "value", "message"),
    [
        ("action", 4, None, r"must not show an item twice; slate \(session_id 1, step 0\) shows"),
        (
            "position",
            5,
            1,
            r"positions 0..2 exactly once; slate \(session_id 1, step 0\) has positions \[0, 1, 1\]",
        ),
        ("position", 2, 3, r"position must be in \[0, 3\) \(slate_size\); row 2 has 3"),
    ],
)
def test_reader_checks_the_slate_rules(
    tmp_path: Path, column: str, row: int, value: int | None, message: str
) -> None:
    src = tmp_path / "log"
    collect_slates(_sw(), TopKEpsilon(UniformPolicy(12), 3, 1.0), out=src, n_slates=20, seed=0)
    if value is None:  # show slot 0's item again in slot 1
        value = int(
            pc.take(pq.read_table(src / "part-00000.parquet").column("action"), [3]).to_pylist()[0]
        )
    _tamper(src, tmp_path / "bad", column, row, value)
    with pytest.raises(InputError, match=message):
        read_logs(tmp_path / "bad")


def test_check_slate_rows_missing_slot() -> None:
    with pytest.raises(InputError, match=r"slate \(session_id 4, step 0\) has positions \[0, 1\]"):
        check_slate_rows(
            np.array([3, 3, 3, 4, 4]),
            np.zeros(5, np.int64),
            np.array([0, 1, 2, 0, 1]),
            np.array([0, 1, 2, 0, 1]),
            3,
        )


def test_reading_a_plain_log_as_slates_is_an_error(tmp_path: Path) -> None:
    from offrec.logs.writer import collect

    world = World(WorldConfig(n_items=5, n_users=10), seed=0)
    collect(world, UniformPolicy(5), out=tmp_path / "plain", n_sessions=10)
    with pytest.raises(InputError, match="is not a slate log"):
        read_slate_log(tmp_path / "plain")
