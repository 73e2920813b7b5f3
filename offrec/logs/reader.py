"""``read_logs``: a Parquet log (file or dataset directory) as a validated ``LoggedData``."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq

from offrec.core.errors import InputError, MissingInputError
from offrec.logs.data import LoggedData, validate_logged_data
from offrec.logs.schema import DATASET_FILE, reward_domain
from offrec.logs.slate_rules import slate_rules_from_metadata

log = logging.getLogger(__name__)

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
    first = log_files(path)[0]
    try:
        raw = pq.read_schema(first).metadata or {}
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"cannot read log file {first}: {_first_line(exc)}") from None
    out: dict[str, Any] = {}
    side = Path(path) / DATASET_FILE
    if side.is_file():  # dataset-level metadata (item topics...), stored once per dataset
        try:
            out.update(json.loads(side.read_text()))
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read {side}: {exc}") from None
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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_table_checked(path: str | Path) -> pa.Table:
    """The rows of every part file of a log as one Arrow table; a file that is not
    readable Parquet (empty, truncated, text) is an ``InputError`` naming the file."""
    tables = []
    for f in log_files(path):
        if f.stat().st_size == 0:
            raise InputError(f"log file {f} is empty (0 bytes): not a Parquet file")
        try:
            tables.append(pq.read_table(f))
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(
                f"log file {f} is not readable Parquet (truncated or not Parquet): {_first_line(exc)}"
            ) from None
    try:
        return pa.concat_tables(tables)
    except pa.ArrowInvalid as exc:
        raise InputError(
            f"log {path}: part files have different schemas: {_first_line(exc)}"
        ) from None


def read_logs(path: str | Path, *, validate: bool = True, repair: str | None = None) -> LoggedData:
    """Read a log into a ``LoggedData``, checking it on the way.

    Checks (each failure is a ``ValueError`` naming the column, the rule and the first
    offending row): readable Parquet; required columns present with the right kinds of
    type; at least one row; no nulls; ``0 < pscore <= 1``; finite rewards, pscores and
    contexts; rewards in the declared reward domain (binary by default, see
    :func:`offrec.logs.schema.reward_domain`); ``action`` in ``[0, n_actions)``; one
    context width; ``logging_dist`` rows summing to 1; no duplicated rows (see
    :func:`duplicate_rows`).

    Args:
        repair: ``None`` (every problem is an error) or ``"drop"``: duplicated rows are
            dropped (the first of each group kept) with a warning; other problems stay
            errors. The same rule as :func:`offrec.logs.importers.import_frame`.
    """
    if repair not in (None, "drop"):
        raise InputError(f"repair must be None or 'drop'; got {repair!r}")
    table = read_table_checked(path)
    data = table_to_logged(table, read_metadata(path), str(path))
    if validate:
        validate_logged_data(data)
        slate_rules_from_metadata(data)  # slate logs: every slot once, no item twice
        dup = duplicate_rows(data)
        if dup.size:
            msg = _dup_message(dup)
            if repair is None:
                raise InputError(f"{msg}; pass repair='drop' to keep the first of each")
            log.warning("%s; dropped (the first of each kept)", msg)
            keep = np.ones(data.n_rows, bool)
            keep[dup] = False
            data = data.subset(keep)
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
        reward_domain=_domain(meta, path),
    )  # fmt: skip
    return data


def _domain(meta: dict[str, Any], path: Any) -> dict[str, Any]:
    raw = meta.get("reward_domain")
    if raw is None:
        return {"kind": "binary"}
    if not isinstance(raw, dict):
        raise InputError(f"log {path}: metadata reward_domain must be an object; got {raw!r}")
    return reward_domain(raw.get("kind", "binary"), raw.get("low"), raw.get("high"))


def duplicate_rows(data: LoggedData) -> np.ndarray:
    """Rows (sorted indices) that repeat an earlier row in every logged field (session,
    step, position, user, action, reward, pscore, context): a log counted twice. The
    first of each group is not listed. One ``lexsort`` on the row key; full rows are
    compared only where keys collide, so a clean log costs one sort."""
    n = data.n_rows
    if n < 2:
        return np.zeros(0, np.int64)
    order = np.lexsort((data.position, data.step, data.session_id))
    s, t, p = data.session_id[order], data.step[order], data.position[order]
    same = (s[1:] == s[:-1]) & (t[1:] == t[:-1]) & (p[1:] == p[:-1])
    if not same.any():
        return np.zeros(0, np.int64)
    a, b = order[1:][same], order[:-1][same]  # candidate pairs with equal keys
    eq = (
        (data.action[a] == data.action[b])
        & (data.user_id[a] == data.user_id[b])
        & (data.reward[a] == data.reward[b])
        & (data.pscore[a] == data.pscore[b])
        & (data.context[a] == data.context[b]).all(axis=1)
    )
    later = np.maximum(a[eq], b[eq])  # the later row of each equal pair is the repeat
    return np.unique(later)


DUP_CHECK_MAX_ROWS = 20_000_000
"""Logs up to this size are checked for duplicated rows by :func:`duplicate_rows_on_disk`
(seven scalar columns, about 45 bytes a row: 0.9 GB at the limit)."""


def duplicate_rows_on_disk(
    path: str | Path, max_rows: int = DUP_CHECK_MAX_ROWS
) -> np.ndarray | None:
    """:func:`duplicate_rows` of a log on disk without loading its contexts: rows equal to
    an earlier row in session, step, position, user, action, reward and pscore (a row
    logged twice has the same context too). Memory: 8 bytes a row (a 64-bit hash of those
    columns, read batch by batch), then only the rows whose hashes collide are read and
    compared exactly. ``None`` (not checked, logged) when the log has more than
    ``max_rows`` rows."""
    files = log_files(path)
    n = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    if n > max_rows:
        log.info("duplicate check skipped: %s has %d rows (> %d)", path, n, max_rows)
        return None
    cols = [c for c in ("session_id", "step", "position", "user_id", "action", "reward", "pscore")
            if c in pq.read_schema(files[0]).names]  # fmt: skip
    # pass 1: one 64-bit hash of the key columns per row, batch by batch (8 bytes a row)
    from offrec.core.hashing import row_keys

    hashes = np.empty(n, np.uint64)
    done = 0
    for f in files:
        for rb in pq.ParquetFile(f).iter_batches(batch_size=65_536, columns=cols):
            values = [rb.column(c).to_numpy(zero_copy_only=False) for c in cols]
            as_int = [v.view(np.int64) if v.dtype == np.float64 else
                      (v.astype(np.float64).view(np.int64) if v.dtype.kind == "f" else v)
                      for v in values]  # fmt: skip
            hashes[done : done + rb.num_rows] = row_keys(*as_int)
            done += rb.num_rows
    order = np.argsort(hashes, kind="stable")
    same = hashes[order][1:] == hashes[order][:-1]
    if not same.any():
        return np.zeros(0, np.int64)
    # pass 2: compare the (rare) rows whose hashes collide on their actual values
    cand = np.unique(np.concatenate([order[1:][same], order[:-1][same]]))
    starts = np.concatenate([[0], np.cumsum([pq.ParquetFile(f).metadata.num_rows for f in files])])
    parts = []
    for i, f in enumerate(files):
        local = cand[(cand >= starts[i]) & (cand < starts[i + 1])] - starts[i]
        if local.size:
            parts.append(pq.read_table(f, columns=cols).take(pa.array(local)))
    table = pa.concat_tables(parts)
    get = {c: table.column(c).to_numpy() for c in cols}
    zeros = np.zeros(table.num_rows, np.int64)
    session, step, pos = get["session_id"], get["step"], get.get("position", zeros)
    sub = np.lexsort((pos, step, session))
    eq = np.ones(sub.size - 1, bool) if sub.size > 1 else np.zeros(0, bool)
    for c in cols:
        v = get[c][sub]
        eq &= v[1:] == v[:-1]
    a, b = cand[sub[1:][eq]], cand[sub[:-1][eq]]
    return np.unique(np.maximum(a, b))


def _dup_message(rows: np.ndarray) -> str:
    first = ", ".join(str(int(r)) for r in rows[:5]) + (", ..." if rows.size > 5 else "")
    return (
        f"{rows.size} duplicated row(s) (identical to an earlier row in every column); rows {first}"
    )


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
