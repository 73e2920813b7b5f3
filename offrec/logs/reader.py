"""``read_logs``: a Parquet log (file or dataset directory) as a validated ``LoggedData``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq

from offrec.core.errors import InputError, MissingInputError
from offrec.logs.data import LoggedData, validate_logged_data

REQUIRED_COLUMNS = ("session_id", "step", "context", "action", "reward", "pscore")


def log_files(path: str | Path) -> list[Path]:
    """The Parquet part files of a log (a single file, or a directory of ``*.parquet``)."""
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise MissingInputError(f"no log at {p}: not a file or directory")
    files = sorted(p.glob("*.parquet"))
    if not files:
        raise MissingInputError(f"no log at {p}: the directory has no .parquet files")
    return files


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Decoded offrec metadata of a log (JSON values parsed; absent keys omitted)."""
    raw = pq.read_schema(log_files(path)[0]).metadata or {}
    out: dict[str, Any] = {}
    for k, v in raw.items():
        key = k.decode()
        if not key.startswith("offrec."):
            continue
        text = v.decode()
        try:
            out[key.removeprefix("offrec.")] = json.loads(text)
        except json.JSONDecodeError:
            out[key.removeprefix("offrec.")] = text
    return out


def read_logs(path: str | Path, *, validate: bool = True) -> LoggedData:
    """Read a log into a ``LoggedData``, checking it on the way.

    Checks (each failure is a ``ValueError`` naming the column, the rule and the first
    offending row): required columns present with the right kinds of type; at least one
    row; no nulls; ``0 < pscore <= 1``; finite rewards, pscores and contexts; ``action``
    in ``[0, n_actions)``; one context width; ``logging_dist`` rows summing to 1.
    """
    files = log_files(path)
    try:
        table = pa.concat_tables([pq.read_table(f) for f in files])
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"cannot read log {path}: {exc}") from exc
    data = table_to_logged(table, read_metadata(path), str(path))
    if validate:
        validate_logged_data(data)
    return data


def table_to_logged(table: pa.Table, meta: dict[str, Any], where: str) -> LoggedData:
    """Columns of an Arrow table as a ``LoggedData`` (types checked; values not yet)."""
    path = where
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise InputError(
            f"log {path}: missing required column(s) {missing}; found {table.column_names}"
        )
    if table.num_rows == 0:
        raise InputError(f"log {path} has no rows")
    for name in table.column_names:
        col = table.column(name)
        if col.null_count:
            first = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
            raise InputError(f"column '{name}' must not contain nulls; row {first} is null")
    ints = ("session_id", "step", "action", "position", "user_id")
    for name in ints:
        if name in table.column_names and not pa.types.is_integer(table.schema.field(name).type):
            raise InputError(
                f"column '{name}' must have an integer type; got {table.schema.field(name).type}"
            )
    for name in ("reward", "pscore", "true_ctr"):
        if name in table.column_names and not _is_number(table.schema.field(name).type):
            raise InputError(
                f"column '{name}' must have a numeric type; got {table.schema.field(name).type}"
            )
    n = table.num_rows
    context = _matrix(table, "context")
    action = _np(table, "action", np.int64)
    reward = _np(table, "reward", np.float64)
    pscore = _np(table, "pscore", np.float64)
    n_actions = int(meta.get("n_actions", int(action.max()) + 1))
    logging_dist = _matrix(table, "logging_dist") if "logging_dist" in table.column_names else None
    true_ctr = _np(table, "true_ctr", np.float64) if "true_ctr" in table.column_names else None
    data = LoggedData(
        context=context,
        action=action,
        reward=reward,
        pscore=pscore,
        session_id=_np(table, "session_id", np.int64),
        step=_np(table, "step", np.int64),
        position=_np(table, "position", np.int64) if "position" in table.column_names else np.zeros(n, np.int64),
        user_id=_np(table, "user_id", np.int64) if "user_id" in table.column_names else np.full(n, -1, np.int64),
        terminated=_np(table, "terminated", bool) if "terminated" in table.column_names else np.zeros(n, bool),
        truncated=_np(table, "truncated", bool) if "truncated" in table.column_names else np.zeros(n, bool),
        n_actions=n_actions,
        logging_dist=logging_dist,
        true_ctr=true_ctr,
        metadata=meta,
    )  # fmt: skip
    return data


def _is_number(t: pa.DataType) -> bool:
    return bool(pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_boolean(t))


def _np(table: pa.Table, name: str, dtype: Any) -> np.ndarray:
    return np.asarray(table.column(name).to_numpy(), dtype=dtype)


def _matrix(table: pa.Table, name: str) -> np.ndarray:
    """A list column as a (n, width) float32 matrix; every row must have one width."""
    col = table.column(name)
    t = col.type
    if pa.types.is_fixed_size_list(t):
        width = t.list_size
    elif pa.types.is_list(t) or pa.types.is_large_list(t):
        lengths = pa.compute.list_value_length(col).to_numpy(zero_copy_only=False)
        width = int(lengths[0])
        bad = lengths != width
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(
                f"column '{name}' rows must all have the same width; row {i} has "
                f"{int(lengths[i])}, row 0 has {width}"
            )
    else:
        raise InputError(f"column '{name}' must be a list of floats; got {t}")
    if not _is_number(t.value_type):
        raise InputError(f"column '{name}' must hold numbers; got {t}")
    flat = pa.concat_arrays([c.flatten() for c in col.chunks]) if col.num_chunks else pa.array([])
    return np.asarray(flat.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(
        len(table), width
    )
