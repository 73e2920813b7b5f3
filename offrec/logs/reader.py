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
from offrec.logs.checks import (
    REQUIRED_COLUMNS,
    KeyPass,
    KeyReport,
    canonical_table,
    duplicates_message,
    schema_problems,
)
from offrec.logs.data import LoggedData, validate_logged_data
from offrec.logs.schema import META_N_ACTIONS, read_dataset_meta, reward_domain
from offrec.logs.slate_rules import slate_rules_from_metadata

log = logging.getLogger(__name__)

__all__ = ["REQUIRED_COLUMNS", "file_schemas", "read_logs", "read_metadata", "read_table_checked"]


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
    if Path(path).is_dir():  # dataset-level metadata (item topics...), stored once per dataset
        out.update(read_dataset_meta(path))
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


def file_schemas(path: str | Path) -> tuple[list[Path], list[pa.Schema]]:
    """The part files of a log and their Arrow schemas (from the Parquet footers, no row
    read), after the type gate and the rules across part files (:func:`schema_problems_of`):
    the first problem is an ``InputError`` naming the file, the column, the type found and
    the type expected."""
    files = log_files(path)
    schemas = []
    for f in files:
        if f.stat().st_size == 0:
            raise InputError(f"log file {f} is empty (0 bytes): not a Parquet file")
        try:
            schemas.append(pq.read_schema(f))
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(
                f"log file {f} is not readable Parquet (truncated or not Parquet): {_first_line(exc)}"
            ) from None
    problems = schema_problems_of(files, schemas, path)
    if problems:
        more = f" (+{len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise InputError(problems[0] + more)
    return files, schemas


def schema_problems_of(files: list[Path], schemas: list[pa.Schema], path: str | Path) -> list[str]:
    """Every rule the part files' schemas break: each column's type (the type gate of
    :func:`~offrec.logs.checks.schema_problems`), the same columns in every part file,
    one context width, one ``n_actions``, a ``logging_dist`` of ``n_actions`` entries, and
    the dataset sidecar's item topics matching ``n_actions``."""
    out: list[str] = []
    name = (lambda f: f"log file {f.name}") if len(files) > 1 else (lambda f: f"log {f}")
    for f, schema in zip(files, schemas, strict=True):
        out += [f"{name(f)}: {p}" for p in schema_problems(schema)]
    if out:
        return out
    first, s0 = files[0], schemas[0]
    width0 = _fixed_width(s0, "context")
    n0 = (s0.metadata or {}).get(META_N_ACTIONS.encode())
    for f, schema in zip(files[1:], schemas[1:], strict=True):
        if set(schema.names) != set(s0.names):
            extra = sorted(set(schema.names) - set(s0.names))
            lack = sorted(set(s0.names) - set(schema.names))
            out.append(
                f"log file {f.name} has other columns than {first.name}: "
                f"{'extra ' + str(extra) if extra else ''}{' ' if extra and lack else ''}"
                f"{'missing ' + str(lack) if lack else ''}; every part file must have the same columns"
            )
        width = _fixed_width(schema, "context")
        if width is not None and width0 is not None and width != width0:
            out.append(
                f"log file {f.name} has context width {width} but {first.name} has {width0}; "
                "every part file must have one context width"
            )
        n = (schema.metadata or {}).get(META_N_ACTIONS.encode())
        if n is not None and n0 is not None and n != n0:
            out.append(
                f"log file {f.name} declares n_actions={n.decode()} but {first.name} declares "
                f"{n0.decode()}; every part file must declare the same n_actions"
            )
    n_actions = int(n0) if n0 is not None and n0.decode().isdigit() else None
    for f, schema in zip(files, schemas, strict=True):
        w = _fixed_width(schema, "logging_dist")
        if w is not None and n_actions is not None and w != n_actions:
            out.append(
                f"{name(f)}: column 'logging_dist' has {w} entries per row; expected "
                f"n_actions={n_actions}"
            )
            break
    p = Path(path)
    if p.is_dir() and n_actions is not None:
        side = read_dataset_meta(p)
        topics = side.get("item_topics")
        if topics is not None and (not isinstance(topics, list) or len(topics) != n_actions):
            got = len(topics) if isinstance(topics, list) else type(topics).__name__
            out.append(
                f"log {p}: the dataset metadata's item_topics has {got} entries; expected "
                f"n_actions={n_actions} (one topic per item)"
            )
    return out


def _fixed_width(schema: pa.Schema, name: str) -> int | None:
    if name not in schema.names:
        return None
    t = schema.field(name).type
    return int(t.list_size) if pa.types.is_fixed_size_list(t) else None


def read_table_checked(path: str | Path) -> pa.Table:
    """The rows of every part file of a log as one Arrow table, each column cast to the
    log schema's type. Unreadable files (empty, truncated, text), columns of the wrong
    type and part files that disagree (:func:`file_schemas`) are ``InputError`` s naming
    the file and the column."""
    return _read_tables(path)[0]


def _read_tables(path: str | Path) -> tuple[pa.Table, list[tuple[str, int]]]:
    files, _ = file_schemas(path)
    tables, parts = [], []
    for f in files:
        try:
            table = pq.read_table(f)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(
                f"log file {f} is not readable Parquet (truncated or not Parquet): {_first_line(exc)}"
            ) from None
        tables.append(canonical_table(table, f"log file {f.name}"))
        parts.append((f.name, table.num_rows))
    if len(tables) > 1 and len({t.schema.field("context").type for t in tables}) > 1:
        # fixed-size and variable-size contexts of one width: the variable form for all
        tables = [_var_context(t) for t in tables]
    try:
        return pa.concat_tables(tables, promote_options="none"), parts
    except pa.ArrowInvalid as exc:  # kept as a guard: file_schemas checks the schemas first
        raise InputError(
            f"log {path}: part files have different schemas: {_first_line(exc)}"
        ) from None


def _var_context(table: pa.Table) -> pa.Table:
    i = table.schema.get_field_index("context")
    col = table.column(i).cast(pa.list_(pa.float32()))
    return table.set_column(i, "context", col)


def read_logs(path: str | Path, *, validate: bool = True, repair: str | None = None) -> LoggedData:
    """Read a log into a ``LoggedData``, checking it on the way.

    Checks (each failure is a ``ValueError`` naming the column, the rule and the first
    offending row): readable Parquet; required columns present with the right kinds of
    type; at least one row; no nulls; ``0 < pscore <= 1``; finite rewards, pscores and
    contexts; rewards in the declared reward domain (binary by default, see
    :func:`offrec.logs.schema.reward_domain`); ``action`` in ``[0, n_actions)``; one
    context width; ``logging_dist`` rows summing to 1; and the row-key rules of
    :class:`~offrec.logs.checks.KeyPass` (no duplicated rows, no key collisions, the
    session contract in session logs). Column types are checked first, from the footers
    (:func:`file_schemas`): same kind, any width (int32 or int64 ``action``), cast to the
    schema's types.

    Args:
        repair: ``None`` (every problem is an error) or ``"drop"``: duplicated rows are
            dropped (the first of each group kept) with a warning; other problems stay
            errors. The same rule as :func:`offrec.logs.importers.import_frame`.
    """
    if repair not in (None, "drop"):
        raise InputError(f"repair must be None or 'drop'; got {repair!r}")
    table, parts = _read_tables(path)
    data = table_to_logged(table, read_metadata(path), str(path))
    if validate:
        validate_logged_data(data)
        slate_rules_from_metadata(data)  # slate logs: every slot once, no item twice
        report = key_report(data, parts)
        if report.duplicates.size and repair == "drop":
            log.warning(
                "%s; dropped (the first of each kept)", duplicates_message(report.duplicates)
            )
            keep = np.ones(data.n_rows, bool)
            keep[report.duplicates] = False
            data = data.subset(keep)
            parts = _parts_after(parts, keep)
            report = key_report(data, parts)
        problems = report.messages()
        if problems:
            raise InputError(problems[0])
    return data


def key_report(data: LoggedData, parts: list[tuple[str, int]] | None = None) -> KeyReport:
    """The row-key rules (:class:`~offrec.logs.checks.KeyPass`: duplicates, key collisions,
    session contract) over an in-memory log whose rows came from the part files ``parts``
    (name, rows) in order (one part when not given)."""
    parts = parts or [("", data.n_rows)]
    arrays = {
        "session_id": data.session_id,
        "step": data.step,
        "position": data.position,
        "user_id": data.user_id,
        "action": data.action,
        "reward": data.reward,
        "pscore": data.pscore,
    }
    kp = KeyPass(session_log=bool(data.n_rows and data.step.max() > 0))
    start = 0
    for name, rows in parts:
        kp.add({k: v[start : start + rows] for k, v in arrays.items()}, name)
        start += rows
    return kp.finish(lambda rows: {k: v[rows] for k, v in arrays.items()}, lambda: [arrays])


def _parts_after(parts: list[tuple[str, int]], keep: np.ndarray) -> list[tuple[str, int]]:
    bounds = np.concatenate([[0], np.cumsum([r for _, r in parts])])
    return [(name, int(keep[bounds[i] : bounds[i + 1]].sum())) for i, (name, _) in enumerate(parts)]


def table_to_logged(table: pa.Table, meta: dict[str, Any], where: str) -> LoggedData:
    """Columns of an Arrow table as a ``LoggedData`` (types checked; values not yet)."""
    path = where
    problems = schema_problems(table.schema)
    if problems:
        missing = problems[0].startswith("missing")
        raise InputError(f"log {path}: {problems[0]}" if missing else problems[0])
    if table.num_rows == 0:
        raise InputError(f"log {path} has no rows")
    for name in table.column_names:
        col = table.column(name)
        if col.null_count:
            first = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
            raise InputError(f"column '{name}' must not contain nulls; row {first} is null")
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
        position=_np(table, "position", np.int64)
        if "position" in table.column_names
        else np.zeros(n, np.int64),
        user_id=_np(table, "user_id", np.int64)
        if "user_id" in table.column_names
        else np.full(n, -1, np.int64),
        terminated=_np(table, "terminated", bool)
        if "terminated" in table.column_names
        else np.zeros(n, bool),
        truncated=_np(table, "truncated", bool)
        if "truncated" in table.column_names
        else np.zeros(n, bool),
        n_actions=n_actions,
        logging_dist=logging_dist,
        true_ctr=true_ctr,
        pscore_group=_np(table, "pscore_group", np.float64)
        if "pscore_group" in table.column_names
        else None,
        metadata=meta,
        reward_domain=_domain(meta, path),
    )
    return data


def _domain(meta: dict[str, Any], path: Any) -> dict[str, Any]:
    raw = meta.get("reward_domain")
    if raw is None:
        return {"kind": "binary"}
    if not isinstance(raw, dict):
        raise InputError(f"log {path}: metadata reward_domain must be an object; got {raw!r}")
    return reward_domain(raw.get("kind", "binary"), raw.get("low"), raw.get("high"))


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
