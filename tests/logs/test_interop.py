"""Every common Parquet reader reads every kind of log offrec writes, with the right row
count and column types: pandas, pyarrow (``read_table`` and ``dataset``), DuckDB (a
``*.parquet`` glob and the directory), Polars and Spark.

The dataset-level sidecar (``_offrec_dataset.json``) starts with ``_`` and the manifest
with ``.``, so readers that list the directory skip both; the old name ``dataset.json``
is still read by offrec (and would make those readers fail, which is why it moved).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from offrec.logs import collect, read_logs, read_metadata
from offrec.logs.importers import ColumnMap, import_logs
from offrec.logs.schema import DATASET_FILE, LEGACY_DATASET_FILE, REQUIRED, read_dataset_meta
from offrec.policies.loggers import logging_policy
from offrec.sim import World, WorldConfig

KINDS = ("bandit", "session", "imported", "trained_from")

# the Arrow type of each scalar column of the log schema
SCALAR_TYPES = REQUIRED


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> dict[str, tuple[Path, int]]:
    """One directory per log kind and its row count (as offrec reads it)."""
    root = tmp_path_factory.mktemp("interop")
    out: dict[str, tuple[Path, int]] = {}
    bandit_world = World(WorldConfig(n_items=20, n_users=500), seed=0)
    collect(
        bandit_world,
        logging_policy(bandit_world, "softmax"),
        out=root / "bandit",
        n_decisions=1500,
        seed=1,
        chunk_rows=600,
        rows_per_file=1000,
    )
    session_world = World(WorldConfig(n_items=20, n_users=500, horizon=4), seed=0)
    collect(
        session_world,
        logging_policy(session_world, "uniform"),
        out=root / "session",
        n_sessions=200,
        seed=2,
        logging_dist=True,
    )
    rng = np.random.default_rng(0)
    n = 300
    pd.DataFrame(
        {
            "item": rng.choice([7, 11, 13], n),
            "click": rng.integers(0, 2, n),
            "prop": np.full(n, 1 / 3),
            "x0": rng.normal(size=n),
            "x1": rng.normal(size=n),
        }
    ).to_csv(root / "src.csv", index=False)
    import_logs(
        root / "src.csv",
        root / "imported",
        ColumnMap(action="item", reward="click", pscore="prop", context=("x0", "x1")),
    )
    from offrec.models import load_model
    from offrec.training import train

    train("linucb", root / "bandit", root / "model")
    trained = load_model(root / "model", n_actions=20, context_dim=bandit_world.context_dim)
    collect(bandit_world, trained, out=root / "trained_from", n_decisions=700, seed=3)
    for kind in KINDS:
        out[kind] = (root / kind, read_logs(root / kind).n_rows)
    return out


def test_sidecar_starts_with_underscore_and_every_folder_has_only_parquet_visible(logs):
    path, _ = logs["session"]
    assert DATASET_FILE.startswith("_") and (path / DATASET_FILE).is_file()
    visible = [p.name for p in path.iterdir() if not p.name.startswith(("_", "."))]
    assert visible and all(n.endswith(".parquet") for n in visible)
    assert len(read_dataset_meta(path)["item_topics"]) == 20


def test_old_sidecar_name_is_still_read(logs, tmp_path):
    path, _ = logs["session"]
    old = tmp_path / "old"
    shutil.copytree(path, old)
    (old / DATASET_FILE).rename(old / LEGACY_DATASET_FILE)
    assert read_metadata(old)["item_topics"] == read_metadata(path)["item_topics"]
    assert read_logs(old).metadata["topics"] == read_logs(path).metadata["topics"]


def test_corrupt_sidecar_is_an_error_naming_the_file(logs, tmp_path):
    from offrec.core.errors import InputError

    bad = tmp_path / "bad"
    shutil.copytree(logs["session"][0], bad)
    (bad / DATASET_FILE).write_bytes(b'{"item_topics": [0, 1')
    with pytest.raises(
        InputError, match=r"cannot read the dataset metadata .*_offrec_dataset\.json"
    ):
        read_metadata(bad)
    (bad / DATASET_FILE).write_text(json.dumps([1, 2]))
    with pytest.raises(InputError, match="must hold a JSON object; got list"):
        read_metadata(bad)


def _check_arrow(schema: pa.Schema, n_rows: int, expected_rows: int) -> None:
    assert n_rows == expected_rows
    for name, t in SCALAR_TYPES.items():
        assert schema.field(name).type == t, name
    ctx = schema.field("context").type
    assert pa.types.is_list(ctx) or pa.types.is_fixed_size_list(ctx)
    assert ctx.value_type == pa.float32()


@pytest.mark.parametrize("kind", KINDS)
def test_pandas_reads_the_folder(logs, kind):
    path, n = logs[kind]
    df = pd.read_parquet(path)
    assert len(df) == n
    assert str(df["session_id"].dtype) == "int64" and str(df["step"].dtype) == "int32"
    assert str(df["action"].dtype) == "int32" and str(df["reward"].dtype) == "float32"
    assert str(df["pscore"].dtype) == "float64" and str(df["terminated"].dtype) == "bool"


@pytest.mark.parametrize("kind", KINDS)
def test_pyarrow_read_table_and_dataset_read_the_folder(logs, kind):
    path, n = logs[kind]
    table = pq.read_table(path)
    _check_arrow(table.schema, table.num_rows, n)
    dataset = pads.dataset(path, format="parquet")
    _check_arrow(dataset.schema, dataset.count_rows(), n)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("form", ["glob", "directory"])
def test_duckdb_reads_the_folder(logs, kind, form):
    import duckdb

    path, n = logs[kind]
    target = f"{path}/*.parquet" if form == "glob" else str(path)
    con = duckdb.connect()
    try:
        rel = con.sql(f"SELECT * FROM read_parquet('{target}')")
        types = dict(zip(rel.columns, [str(t) for t in rel.types], strict=True))
        ((count,),) = con.sql(f"SELECT count(*) FROM read_parquet('{target}')").fetchall()
    finally:
        con.close()
    assert count == n
    assert types["session_id"] == "BIGINT" and types["step"] == "INTEGER"
    assert types["reward"] == "FLOAT" and types["pscore"] == "DOUBLE"
    assert types["terminated"] == "BOOLEAN" and types["context"].startswith("FLOAT[")


@pytest.mark.parametrize("kind", KINDS)
def test_polars_reads_the_folder(logs, kind):
    pl = pytest.importorskip("polars", reason="polars is in the 'interop' extra")
    path, n = logs[kind]
    # Polars 2.1's directory form refuses a folder holding any file that is not Parquet
    # (hidden or ``_`` ones included: the manifest every offrec output carries); its own
    # error message asks for a glob, which reads every offrec log
    df = pl.read_parquet(f"{path}/*.parquet")
    assert df.height == n
    assert df.schema["session_id"] == pl.Int64 and df.schema["step"] == pl.Int32
    assert df.schema["reward"] == pl.Float32 and df.schema["pscore"] == pl.Float64
    assert df.schema["terminated"] == pl.Boolean


def _spark_available() -> str | None:
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "pyspark is not installed (pip install 'pyspark==4.3.0'; it is not in make test's install)"
    if shutil.which("java") is None:
        return "no Java runtime on PATH (Spark needs a JVM 17+)"
    return None


@pytest.mark.slow
@pytest.mark.skipif(_spark_available() is not None, reason=str(_spark_available()))
def test_spark_reads_every_kind_of_log(logs):
    """One Spark session for all kinds (starting the JVM takes ~10 s)."""
    from pyspark.sql import SparkSession
    from pyspark.sql import types as T

    spark = (
        SparkSession.builder.master("local[1]")
        .appName("offrec-interop")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "1")
        .getOrCreate()
    )
    try:
        for kind in KINDS:
            path, n = logs[kind]
            df = spark.read.parquet(str(path))
            assert df.count() == n, kind
            types = {f.name: f.dataType for f in df.schema.fields}
            assert types["session_id"] == T.LongType() and types["step"] == T.IntegerType()
            assert types["reward"] == T.FloatType() and types["pscore"] == T.DoubleType()
            assert types["terminated"] == T.BooleanType()
            ctx = types["context"]
            assert isinstance(ctx, T.ArrayType) and ctx.elementType == T.FloatType()
    finally:
        spark.stop()
