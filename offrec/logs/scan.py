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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from offrec.core.errors import InputError
from offrec.logs.data import LoggedData, value_problems
from offrec.logs.reader import (
    REQUIRED_COLUMNS,
    _dup_message,
    duplicate_rows_on_disk,
    log_files,
    read_metadata,
    table_to_logged,
    validate_logged_data,
)

OPTIONAL_COLUMNS = ("position", "user_id", "terminated", "truncated", "logging_dist", "true_ctr")


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


def open_log(path: str | Path) -> LogSource:
    """Inspect a log's files; an unreadable file (empty, truncated, not Parquet) is an
    :class:`~offrec.core.errors.InputError` naming it."""
    files = log_files(path)
    rows, max_step, columns = [], -1, None
    for f in files:
        if f.stat().st_size == 0:
            raise InputError(f"log file {f} is empty (0 bytes): not a Parquet file")
        try:
            meta = pq.ParquetFile(f).metadata
        except (pa.ArrowInvalid, OSError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(
                f"log file {f} is not readable Parquet (truncated or not Parquet): {first}"
            ) from None
        rows.append(meta.num_rows)
        names = [meta.schema.column(i).path.split(".")[0] for i in range(meta.num_columns)]
        if columns is None:
            columns = tuple(dict.fromkeys(names))
        max_step = max(max_step, _column_max(meta, "step"))
    assert columns is not None  # log_files never returns an empty list
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise InputError(f"log {path}: missing required column(s) {missing}; found {list(columns)}")
    if sum(rows) == 0:
        raise InputError(f"log {path} has no rows")
    return LogSource(
        str(path), tuple(str(f) for f in files), tuple(rows), columns, max_step,
        read_metadata(path), _context_dim(files[0]),
    )  # fmt: skip


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
            return 1 << 30  # unknown: assume sessions (readers check steps anyway)
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
                yield Batch(data, f, offset, int(starts[i]) + offset)
                offset += table.num_rows
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"cannot read log file {f}: {exc}") from None


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
                batch.file, batch.file_row + cut, batch.row + cut,
            )  # fmt: skip
        if carry is not None:
            _check_sessions(carry.data, carry)
            yield carry


def _check_sessions(data: LoggedData, batch: Batch) -> None:
    sid, step = data.session_id, data.step
    new = np.concatenate([[True], sid[1:] != sid[:-1]])
    starts = np.flatnonzero(new)
    if (step[starts] != 0).any():
        j = int(starts[np.flatnonzero(step[starts] != 0)[0]])
        raise InputError(
            f"log file {Path(batch.file).name}: session {int(sid[j])} does not start at step 0 "
            f"(row {batch.row + j:,} has step {int(step[j])}); a session's rows must be together "
            "and in step order (sort the log by session_id, step)"
        )
    expected = np.arange(len(step)) - np.maximum.accumulate(np.where(new, np.arange(len(step)), 0))
    if (step != expected).any():
        j = int(np.flatnonzero(step != expected)[0])
        raise InputError(
            f"log file {Path(batch.file).name}: session {int(sid[j])} has steps out of order or "
            f"repeated (row {batch.row + j:,} has step {int(step[j])}, expected {int(expected[j])})"
        )
    if np.unique(sid[starts]).size != starts.size:
        raise InputError(
            f"log file {Path(batch.file).name}: a session's rows are split into several runs "
            f"(session ids repeat after other sessions, from row {batch.row:,}); sort the log "
            "by session_id, step"
        )


def concat(parts: list[LoggedData]) -> LoggedData:
    """Rows of several ``LoggedData`` (one log) as one."""
    first = parts[0]

    def cat(name: str) -> Any:
        arrays = [getattr(p, name) for p in parts]
        return None if arrays[0] is None else np.concatenate(arrays)

    return LoggedData(
        context=cat("context"), action=cat("action"), reward=cat("reward"),
        pscore=cat("pscore"), session_id=cat("session_id"), step=cat("step"),
        position=cat("position"), user_id=cat("user_id"), terminated=cat("terminated"),
        truncated=cat("truncated"), n_actions=first.n_actions,
        logging_dist=cat("logging_dist"), true_ctr=cat("true_ctr"), metadata=first.metadata,
        reward_domain=first.reward_domain,
    )  # fmt: skip


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
    offending row of each, named by file and row). Streams the log batch by batch, so
    memory is bounded at any size; duplicated rows are checked on the key columns up to
    :data:`~offrec.logs.reader.DUP_CHECK_MAX_ROWS` rows."""
    try:
        source = open_log(path)
    except InputError as exc:
        return False, [str(exc)]
    found: dict[str, str] = {}
    starts = np.concatenate([[0], np.cumsum(source.file_rows)])
    wanted = read_columns(source)
    for i, f in enumerate(source.files):
        where = f"log file {Path(f).name}" if len(source.files) > 1 else ""
        offset = 0
        try:
            for rb in pq.ParquetFile(f).iter_batches(batch_size=batch_size, columns=wanted):
                table = pa.Table.from_batches([rb])
                try:
                    data = table_to_logged(table, source.metadata, where)
                except InputError as exc:
                    return False, [str(exc)]
                for msg in value_problems(data):
                    rule = msg.split(";")[0]  # one message per rule: its first offending row
                    found.setdefault(rule, locate(msg, where, offset, int(starts[i])))
                offset += table.num_rows
        except (pa.ArrowInvalid, OSError) as exc:
            return False, [f"cannot read log file {f}: {exc}"]
    problems = list(found.values())
    dup = duplicate_rows_on_disk(path)
    if dup is not None and dup.size:
        problems.append(_dup_message(dup))
    return True, problems
