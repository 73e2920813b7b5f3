"""Reading a log in batches: bounded memory at any size, every batch validated.

:func:`open_log` looks at a log's files without reading their rows (row counts, the
longest session and the columns come from the Parquet footers); :func:`iter_batches`
then yields validated :class:`Batch` es of at most ``batch_size`` rows, file by file.
Errors name the file and the row (within the whole log and within the file).

Batches span row groups (``ParquetFile.iter_batches``), so their size is set by
``batch_size`` and not by how the writer grouped rows. Peak memory is about one batch
of the columns asked for, whatever the log's size.

Session contract: offrec's writer keeps each session's rows together, in step order,
in one file. Readers that need whole sessions (:func:`iter_sessions`) rely on it and
report a session that breaks it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from offrec.core.errors import InputError
from offrec.logs.checks import REQUIRED_COLUMNS, KeyPass, KeyReport
from offrec.logs.data import LoggedData, value_problems
from offrec.logs.reader import (
    file_schemas,
    read_metadata,
    table_to_logged,
    validate_logged_data,
)

OPTIONAL_COLUMNS = (
    "position",
    "user_id",
    "terminated",
    "truncated",
    "logging_dist",
    "true_ctr",
    "pscore_group",
)


@dataclass(frozen=True)
class LogSource:
    """A log's files and what their footers say, read without touching the rows.

    Attributes:
        path: the log (a file or a dataset directory).
        files: its Parquet part files, in order. file_rows: rows per file.
        columns: the column names of the first file's schema.
        max_step: the largest ``step`` (from column statistics; -1 when unknown).
        metadata: offrec's decoded metadata (see :func:`~offrec.logs.read_metadata`).
    """

    path: str
    files: tuple[str, ...]
    file_rows: tuple[int, ...]
    columns: tuple[str, ...]
    max_step: int
    metadata: dict[str, Any]
    context_dim: int

    @property
    def n_rows(self) -> int:
        return int(sum(self.file_rows))

    @property
    def n_actions(self) -> int | None:
        n = self.metadata.get("n_actions")
        return None if n is None else int(n)

    @property
    def is_session_log(self) -> bool:
        """Whether some session has more than one step."""
        return self.max_step > 0


def open_log(path: str | Path, *, check_rows: bool = True) -> LogSource:
    """Inspect a log's files and apply the log rules that span rows, so that a log that
    passes is one every reader accepts (the same verdict as
    :func:`~offrec.logs.read_logs` and ``offrec summary``).

    From the footers: readable Parquet, every column's type (:func:`~offrec.logs.reader.
    file_schemas`: the error names the column, the type found and the type expected), the
    same columns, context width and ``n_actions`` in every part file, and the dataset
    sidecar. With ``check_rows`` (default), one streamed pass over the key columns applies
    the row-key rules (:class:`~offrec.logs.checks.KeyPass`: duplicated rows, key
    collisions, the session contract); a log seen clean is remembered (by its files'
    sizes and modification times) so a second open in the same process costs no pass.
    Value rules (pscore range, finite values...) are checked batch by batch by
    :func:`iter_batches`. Every problem is an :class:`~offrec.core.errors.InputError`."""
    files, schemas = file_schemas(path)
    rows, max_step = [], -1
    for f in files:
        try:
            meta = pq.ParquetFile(f).metadata
        except (pa.ArrowInvalid, OSError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(
                f"log file {f} is not readable Parquet (truncated or not Parquet): {first}"
            ) from None
        rows.append(meta.num_rows)
        max_step = max(max_step, _column_max(meta, "step"))
    columns = tuple(schemas[0].names)
    if sum(rows) == 0:
        raise InputError(f"log {path} has no rows")
    source = LogSource(
        str(path),
        tuple(str(f) for f in files),
        tuple(rows),
        columns,
        max_step,
        read_metadata(path),
        _context_dim(files[0]),
    )
    if check_rows:
        stamp = _stamp(files)
        if stamp not in _CLEAN:
            report = key_report(source)
            problems = report.messages()
            if problems:
                raise InputError(problems[0])
            if len(_CLEAN) > 64:
                _CLEAN.clear()
            _CLEAN[stamp] = report.max_step
        if max_step >= _UNKNOWN:  # no step statistics in the footers: the pass measured it
            source = replace(source, max_step=_CLEAN[stamp])
    return source


_CLEAN: dict[tuple[tuple[str, int, int], ...], int] = {}
"""Logs whose row-key rules passed in this process, by (file, size, mtime) of each file,
with their largest step."""
_UNKNOWN = 1 << 30
"""``max_step`` of a log whose footers have no step statistics (until a pass reads it)."""


def _stamp(files: list[Path]) -> tuple[tuple[str, int, int], ...]:
    out = []
    for f in files:
        st = f.stat()
        out.append((str(f.resolve()), st.st_size, st.st_mtime_ns))
    return tuple(out)


KEY_COLUMNS = ("session_id", "step", "position")
"""The columns the row-key pass reads."""
VALUE_COLUMNS = ("user_id", "action", "reward", "pscore")
"""The columns read back for rows that share a key (a duplicate repeats them all; the
context is not compared: a row logged twice has the same context too)."""


def key_report(source: LogSource, batch_size: int = 1 << 20) -> KeyReport:
    """The row-key rules over a log on disk, streamed (:class:`~offrec.logs.checks.KeyPass`):
    one pass over ``session_id``, ``step`` and ``position`` (16 bytes a row per batch) for a
    log sorted by key; a second pass and 8 bytes a row otherwise."""
    kp = KeyPass(session_log=source.is_session_log)
    for name, cols in _key_batches(source, batch_size):
        kp.add(cols, name)
    return kp.finish(_rereader(source), lambda: (c for _, c in _key_batches(source, batch_size)))


def _key_batches(source: LogSource, batch_size: int) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    cols = [c for c in KEY_COLUMNS if c in source.columns]
    for f in source.files:
        try:
            for rb in pq.ParquetFile(f).iter_batches(batch_size=batch_size, columns=cols):
                yield Path(f).name, _key_arrays(rb, cols)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"cannot read log file {f}: {exc}") from None


def _key_arrays(rb: pa.RecordBatch | pa.Table, cols: Sequence[str]) -> dict[str, np.ndarray]:
    out = {c: rb.column(c).to_numpy(zero_copy_only=False) for c in cols}
    if "position" not in out:
        out["position"] = np.zeros(rb.num_rows, np.int32)
    return out


def _rereader(source: LogSource) -> Any:
    """``reread(rows)``: the key and value columns of the given rows of the log."""
    cols = [c for c in (*KEY_COLUMNS, *VALUE_COLUMNS) if c in source.columns]
    starts = np.concatenate([[0], np.cumsum(source.file_rows)])

    def reread(rows: np.ndarray) -> dict[str, np.ndarray]:
        from offrec.logs.checks import canonical_table

        parts = []
        for i, f in enumerate(source.files):
            local = rows[(rows >= starts[i]) & (rows < starts[i + 1])] - starts[i]
            if local.size:
                table = pq.read_table(f, columns=cols).take(pa.array(local))
                parts.append(canonical_table(table, source.path))
        return _key_arrays(pa.concat_tables(parts), cols)

    return reread


def _context_dim(file: Path) -> int:
    t = pq.read_schema(file).field("context").type
    if pa.types.is_fixed_size_list(t):
        return int(t.list_size)
    first = pq.ParquetFile(file).read_row_group(0, columns=["context"]).column(0)
    return len(first[0]) if len(first) else 0


def _column_max(meta: pq.FileMetaData, name: str) -> int:
    idx = [i for i in range(meta.num_columns) if meta.schema.column(i).path == name]
    if not idx:
        return -1
    best = -1
    for g in range(meta.num_row_groups):
        stats = meta.row_group(g).column(idx[0]).statistics
        if stats is None or not stats.has_min_max:
            return _UNKNOWN  # unknown: assume sessions (readers check steps anyway)
        best = max(best, int(stats.max))
    return best


def locate(message: str, where: str, file_offset: int, log_offset: int) -> str:
    """``message`` with each batch-local ``row i`` made ``row j of the file (row k of the
    log)``, prefixed by ``where`` (e.g. the file)."""
    import re

    def sub(m: re.Match[str]) -> str:
        i = int(m.group(1))
        if log_offset == 0:  # the first file: its rows are the log's rows
            return f"row {i + file_offset}"
        return f"row {i + file_offset:,} (row {i + file_offset + log_offset:,} of the log)"

    moved = re.sub(r"\brow (\d+)", sub, message)
    return f"{where}: {moved}" if where else moved


@dataclass
class Batch:
    """A validated slice of a log: ``data`` holds its rows; ``row`` is the first row's
    number in the whole log, ``file_row`` in its file ``file``."""

    data: LoggedData
    file: str
    file_row: int
    row: int


def iter_batches(
    source: LogSource,
    *,
    batch_size: int = 65_536,
    columns: Sequence[str] | None = None,
    files: Sequence[int] | None = None,
) -> Iterator[Batch]:
    """Validated batches of at most ``batch_size`` rows, in file and row order.

    ``columns``: the columns to read (default: the required ones plus the optional
    ones present, except ``true_ctr``); ``files``: indices into ``source.files`` (default
    all; row numbers stay those of the whole log).
    """
    wanted = read_columns(source, columns)
    starts = np.concatenate([[0], np.cumsum(source.file_rows)])
    for i in range(len(source.files)) if files is None else files:
        f = source.files[i]
        offset = 0
        try:
            pf = pq.ParquetFile(f)
            for rb in pf.iter_batches(batch_size=batch_size, columns=wanted):
                table = pa.Table.from_batches([rb])
                where = f"log file {Path(f).name}"
                data = validate_batch(table, source.metadata, where, (offset, int(starts[i])))
                _check_width(data, source, where, offset)
                yield Batch(data, f, offset, int(starts[i]) + offset)
                offset += table.num_rows
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"cannot read log file {f}: {exc}") from None


def _check_width(data: LoggedData, source: LogSource, where: str, offset: int) -> None:
    if data.context_dim != source.context_dim:
        raise InputError(
            f"{where}: rows from row {offset:,} have context width {data.context_dim}, but the "
            f"log's first file has {source.context_dim}; every row must have one context width"
        )


def validate_batch(
    table: pa.Table, metadata: dict[str, Any], where: str, offsets: tuple[int, int] | None
) -> LoggedData:
    """An Arrow batch of a log as a validated ``LoggedData``; errors name ``where`` and,
    given ``offsets`` (the batch's first row in its file, the file's first row in the
    log), the row."""
    try:
        data = table_to_logged(table, metadata, where)
        validate_logged_data(data)
    except InputError as err:
        if offsets is None:
            raise InputError(f"{where}: {err}" if where else str(err)) from None
        raise InputError(locate(str(err), where, *offsets)) from None
    return data


def iter_sessions(
    source: LogSource, *, files: Sequence[int] | None = None, **kwargs: Any
) -> Iterator[Batch]:
    """Like :func:`iter_batches`, but every batch holds whole sessions: the rows of the
    last session of a batch are carried into the next batch of the same file.

    A session whose rows are not together (it continues in another file, or its steps
    do not start at 0 in a batch) is an error naming it.
    """
    for i in range(len(source.files)) if files is None else files:
        carry: Batch | None = None
        for batch in iter_batches(source, files=[i], **kwargs):
            if carry is not None:
                batch = Batch(
                    concat([carry.data, batch.data]), batch.file, carry.file_row, carry.row
                )
            sid = batch.data.session_id
            tail = np.flatnonzero(sid != sid[-1])
            cut = int(tail[-1]) + 1 if tail.size else 0
            if cut == 0:  # one session fills the batch: keep reading
                carry = batch
                continue
            head = batch.data.subset(np.arange(cut))
            _check_sessions(head, batch)
            yield Batch(head, batch.file, batch.file_row, batch.row)
            carry = Batch(
                batch.data.subset(np.arange(cut, batch.data.n_rows)),
                batch.file,
                batch.file_row + cut,
                batch.row + cut,
            )
        if carry is not None:
            _check_sessions(carry.data, carry)
            yield carry


def _check_sessions(data: LoggedData, batch: Batch) -> None:
    """The session contract (:class:`~offrec.logs.checks.KeyPass`) on one batch of whole
    sessions: the same rule and message as every other reader."""
    kp = KeyPass(session_log=True, first_row=batch.row)
    arrays = {"session_id": data.session_id, "step": data.step, "position": data.position}
    kp.add(arrays, Path(batch.file).name)
    problems = kp.finish(lambda rows: {k: v[rows - batch.row] for k, v in arrays.items()}).session
    if problems:
        raise InputError(f"log file {Path(batch.file).name}: {problems[0]}")


def concat(parts: list[LoggedData]) -> LoggedData:
    """Rows of several ``LoggedData`` (one log) as one."""
    first = parts[0]

    def cat(name: str) -> Any:
        arrays = [getattr(p, name) for p in parts]
        return None if arrays[0] is None else np.concatenate(arrays)

    return LoggedData(
        context=cat("context"),
        action=cat("action"),
        reward=cat("reward"),
        pscore=cat("pscore"),
        session_id=cat("session_id"),
        step=cat("step"),
        position=cat("position"),
        user_id=cat("user_id"),
        terminated=cat("terminated"),
        truncated=cat("truncated"),
        n_actions=first.n_actions,
        logging_dist=cat("logging_dist"),
        true_ctr=cat("true_ctr"),
        metadata=first.metadata,
        reward_domain=first.reward_domain,
        pscore_group=cat("pscore_group"),
    )


def read_columns(source: LogSource, columns: Sequence[str] | None = None) -> list[str]:
    """The columns to read: ``columns`` plus the required ones (default: every column a
    kernel may use, present in the log, except ``true_ctr``)."""
    if columns is None:
        want = list(REQUIRED_COLUMNS) + [c for c in OPTIONAL_COLUMNS if c != "true_ctr"]
    else:
        unknown = [c for c in columns if c not in source.columns]
        required = [c for c in columns if c in REQUIRED_COLUMNS]
        if unknown and any(c in REQUIRED_COLUMNS for c in unknown):
            raise InputError(f"log {source.path}: missing column(s) {unknown}")
        want = list(dict.fromkeys(list(REQUIRED_COLUMNS) + required + list(columns)))
    return [c for c in want if c in source.columns]


def log_problems(path: str | Path) -> list[str]:
    """Every problem :func:`~offrec.logs.read_logs` would raise for the log at ``path``
    (unreadable files, missing columns, value rules, duplicated rows), as messages; empty
    when valid. Used by ``offrec summary`` to list them all instead of stopping at the
    first."""
    return check_log(path)[1]


def check_log(path: str | Path, batch_size: int = 65_536) -> tuple[bool, list[str]]:
    """``(readable, problems)``: whether the log's files and columns can be read at all
    (else ``problems`` holds the one reason), and every rule a row breaks (the first
    offending row of each, named by file and row). The rules are those of
    :func:`open_log` + :func:`iter_batches` (what ``train`` and ``evaluate`` apply) and of
    :func:`~offrec.logs.read_logs`, with the same messages: a log with no problem here is
    accepted by all of them. One streamed pass: memory is bounded at any size (plus 8
    bytes a row for a log not sorted by key)."""
    try:
        source = open_log(path, check_rows=False)
    except InputError as exc:
        return False, [str(exc)]
    found: dict[str, str] = {}
    starts = np.concatenate([[0], np.cumsum(source.file_rows)])
    wanted = read_columns(source)
    kp = KeyPass(session_log=source.is_session_log)
    for i, f in enumerate(source.files):
        where = f"log file {Path(f).name}" if len(source.files) > 1 else ""
        offset = 0
        try:
            for rb in pq.ParquetFile(f).iter_batches(batch_size=batch_size, columns=wanted):
                table = pa.Table.from_batches([rb])
                try:
                    data = table_to_logged(table, source.metadata, where)
                    _check_width(data, source, where or f"log file {Path(f).name}", offset)
                except InputError as exc:
                    return False, [locate(str(exc), "", offset, int(starts[i]))]
                for msg in value_problems(data):
                    rule = msg.split(";")[0]  # one message per rule: its first offending row
                    found.setdefault(rule, locate(msg, where, offset, int(starts[i])))
                kp.add(
                    {"session_id": data.session_id, "step": data.step, "position": data.position},
                    Path(f).name,
                )
                offset += table.num_rows
        except (pa.ArrowInvalid, OSError) as exc:
            return False, [f"cannot read log file {f}: {exc}"]
    problems = list(found.values())
    rescan = lambda: (c for _, c in _key_batches(source, 1 << 20))  # noqa: E731
    problems += kp.finish(_rereader(source), rescan).messages(repair_hint=False)
    return True, problems
