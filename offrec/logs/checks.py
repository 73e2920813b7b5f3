"""The log rules every reader applies, each defined once with one message.

Two families, both used by every door a log comes in through (:func:`offrec.logs.read_logs`,
:func:`offrec.logs.scan.open_log` behind ``train``/``evaluate``, and
:func:`offrec.logs.scan.check_log` behind ``summary``/``query``), so the commands and the
Python readers give one verdict:

- **Types** (:func:`schema_problems`): each column's Arrow type against the log schema
  (:data:`COLUMN_TYPES`), read from the Parquet footer before any value is touched. The
  rule is *same kind, any width*: an integer column may be any integer type (int32 or
  int64 ``action`` alike), a float column any floating type, a flag bool, ``context`` /
  ``logging_dist`` a list of floats; the reader casts to the schema's type (checked: a
  value that does not fit is an error). A string, a float where an integer belongs, an
  integer where a float belongs, a list, a struct, an all-null column are refused with
  the column, the type found and the type expected.
- **Row keys** (:class:`KeyPass`): a row's key is ``(session_id, step, position)``. Exact
  duplicates (a row logged twice; ``repair="drop"`` keeps the first), key collisions
  (same key, different values: never repaired) and, in session logs, the session
  contract (a session's rows together, in one file, steps from 0 without gaps) are
  checked in one streamed pass in file and row order. Logs sorted by key (every log
  offrec writes) need no memory beyond one batch; others fall back to one 64-bit hash a
  row and a sort.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from offrec.logs.schema import PSCORE_GROUP, REQUIRED

COLUMN_TYPES: dict[str, pa.DataType] = {
    **REQUIRED,
    "true_ctr": pa.float32(),
    PSCORE_GROUP: pa.float64(),
}
"""The Arrow type of every scalar column of the log schema (:func:`~offrec.logs.schema.log_schema`)."""

LIST_COLUMNS = ("context", "logging_dist")
"""Columns holding a list of floats per row (``fixed_size_list<float32>`` when written by offrec)."""

REQUIRED_COLUMNS = ("session_id", "step", "context", "action", "reward", "pscore")
"""Columns a log must have (the others have defaults)."""

KEY_VALUE_COLUMNS = ("user_id", "action", "reward", "pscore")
"""Columns compared, beside the key, to tell a duplicated row from a key collision."""


def _kind(t: pa.DataType) -> str:
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t):
        return "floating"
    return "other"


def _type_name(t: pa.DataType) -> str:
    """``float32`` / ``float64`` rather than Arrow's ``float`` / ``double``."""
    names = {pa.float16(): "float16", pa.float32(): "float32", pa.float64(): "float64"}
    if pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t):
        inner = _type_name(t.value_type)
        if pa.types.is_fixed_size_list(t):
            return f"fixed_size_list<{inner}>[{t.list_size}]"
        return f"{'large_' if pa.types.is_large_list(t) else ''}list<{inner}>"
    return names.get(t, str(t))


def expected_type(name: str) -> str:
    """How the rule for column ``name`` reads in a message."""
    if name in LIST_COLUMNS:
        return "a list of floats (fixed_size_list<float32> as offrec writes it)"
    t = COLUMN_TYPES[name]
    widths = {"integer": "any integer type", "floating": "any floating type", "bool": "bool only"}
    return f"{_type_name(t)} ({widths[_kind(t)]})"


def schema_problems(schema: pa.Schema) -> list[str]:
    """Every type rule ``schema`` breaks, one message per column (empty when it passes):
    a required column missing, a column present twice, or a column whose Arrow type is
    not of its kind (see the module docstring). Columns outside the log schema are not
    checked (they are ignored by offrec)."""
    out: list[str] = []
    missing = [c for c in REQUIRED_COLUMNS if c not in schema.names]
    if missing:
        out.append(f"missing required column(s) {missing}; found {schema.names}")
    for name in [*COLUMN_TYPES, *LIST_COLUMNS]:
        idx = schema.get_all_field_indices(name)
        if len(idx) > 1:
            out.append(f"column '{name}' appears {len(idx)} times")
            continue
        if not idx:
            continue
        t = schema.field(idx[0]).type
        if name in LIST_COLUMNS:
            ok = (
                pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t)
            ) and pa.types.is_floating(t.value_type)
        else:
            ok = _kind(t) == _kind(COLUMN_TYPES[name])
        if not ok:
            out.append(f"column '{name}' has type {_type_name(t)}; expected {expected_type(name)}")
    return out


def canonical_table(table: pa.Table, where: str) -> pa.Table:
    """``table`` with every schema column cast to the schema's type (integer and float
    widths, list value types); a value that does not fit the schema's type (an int64
    ``action`` above 2^31) is an ``InputError`` naming the column. Call after
    :func:`schema_problems` passed."""
    from offrec.core.errors import InputError

    cols, names = [], []
    for name in table.column_names:
        col = table.column(name)
        target: pa.DataType | None = None
        if name in COLUMN_TYPES and col.type != COLUMN_TYPES[name]:
            target = COLUMN_TYPES[name]
        elif name in LIST_COLUMNS and col.type.value_type != pa.float32():
            t = col.type
            target = (
                pa.list_(pa.float32(), t.list_size)
                if pa.types.is_fixed_size_list(t)
                else pa.list_(pa.float32())
            )
        if target is not None:
            try:
                col = col.cast(target, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                first = str(exc).splitlines()[0]
                raise InputError(
                    f"{where}: column '{name}' has values that do not fit its schema type "
                    f"{_type_name(target)}: {first}"
                ) from None
        cols.append(col)
        names.append(name)
    return pa.Table.from_arrays(cols, names=names)


# ------------------------------------------------------------------------------ row keys
@dataclass
class KeyReport:
    """What :class:`KeyPass` found: rows (0-based, in the whole log) that repeat an earlier
    row exactly, rows whose key repeats an earlier row's with other values, and the first
    message of each session-contract rule broken (empty when every rule holds)."""

    duplicates: np.ndarray
    collisions: np.ndarray
    collision_example: tuple[int, int] | None = None
    session: list[str] = field(default_factory=list)
    max_step: int = -1

    def messages(self, *, repair_hint: bool = True) -> list[str]:
        """One message per broken rule; the session contract is reported only when the
        keys are clean (a duplicated row also repeats a step)."""
        out: list[str] = []
        if self.duplicates.size:
            hint = "; pass repair='drop' to keep the first of each" if repair_hint else ""
            out.append(duplicates_message(self.duplicates) + hint)
        if self.collisions.size:
            a, b = self.collision_example or (int(self.collisions[0]), -1)
            out.append(
                f"{self.collisions.size} row(s) repeat the key (session_id, step, position) of "
                f"an earlier row with other values (row {a:,} and row {b:,} first); a key "
                "must name one decision: fix the log's session_id/step/position"
            )
        if not out:
            out.extend(self.session)
        return out


def duplicates_message(rows: np.ndarray) -> str:
    """The duplicated-rows rule's message (the first five rows named)."""
    first = ", ".join(str(int(r)) for r in rows[:5]) + (", ..." if rows.size > 5 else "")
    return (
        f"{rows.size} duplicated row(s) (identical to an earlier row in every column); rows {first}"
    )


class KeyPass:
    """The row-key rules over a log fed batch by batch in file and row order.

    Feed each batch's ``session_id``, ``step`` and ``position`` (1-D arrays) with
    :meth:`add`; :meth:`finish` returns a :class:`KeyReport`. While the rows arrive sorted
    by key (offrec's writer sorts them), rows sharing a key are neighbours: the pass keeps
    nothing but their row numbers. A log not sorted by key costs a second pass
    (``rescan``: one 64-bit hash of the key a row, 8 bytes each, and a sort). Either way
    the (rare) rows sharing a key are then read back (``reread``) and compared on
    :data:`KEY_VALUE_COLUMNS`: equal values make a duplicate, others a collision.

    Session contract (``session_log``): a session's rows are one run, in one file,
    starting at step 0, steps increasing by at most one (slots of one step share it).
    """

    def __init__(self, session_log: bool, first_row: int = 0) -> None:
        self.session_log = session_log
        self.sorted = True
        self.first_row = first_row  # row number of the first row fed (in the whole log)
        self.n_rows = 0
        self.max_step = -1
        self._prev: dict[str, np.ndarray] | None = None  # last row of the previous batch
        self._prev_file: str | None = None
        self._cand: list[np.ndarray] = []  # rows sharing a key with their predecessor
        self._run_sids: list[np.ndarray] = []
        self._run_rows: list[np.ndarray] = []
        self._session: dict[str, str] = {}

    def add(self, cols: dict[str, np.ndarray], file: str) -> None:
        n = len(cols["session_id"])
        if n == 0:
            return
        start = self.first_row + self.n_rows
        new_file = file != self._prev_file
        keys = ("session_id", "step", "position")
        prev = self._prev
        full = {
            k: np.concatenate([prev[k], cols[k]]) if prev is not None else cols[k] for k in keys
        }
        off = 1 if prev is not None else 0  # full[off + i] is row start + i
        sid, step, pos = full["session_id"], full["step"], full["position"]
        if len(sid) > 1:
            d = np.diff(sid)
            if self.sorted and (d < 0).any():
                self.sorted = False
            eq = np.flatnonzero(d == 0)  # neighbours in one session: compare step, position
            if eq.size:
                t0, t1, p0, p1 = step[eq], step[eq + 1], pos[eq], pos[eq + 1]
                same_step = t0 == t1
                same = same_step & (p0 == p1)
                if self.sorted and not ((t0 < t1) | (same_step & (p0 <= p1))).all():
                    self.sorted = False
                if same.any():
                    later = eq[same] + 1 - off + start
                    self._cand.append(np.concatenate([later - 1, later]))
        if self.session_log:
            self._sessions(full, off, start, file, new_file)
        self._prev = {k: cols[k][-1:] for k in keys}
        self._prev_file = file
        self.n_rows += n
        self.max_step = max(self.max_step, int(cols["step"].max()))

    def _sessions(
        self, full: dict[str, np.ndarray], off: int, start: int, file: str, new_file: bool
    ) -> None:
        sid, step = full["session_id"], full["step"]
        n = len(sid)
        new = np.ones(n, bool)
        new[1:] = sid[1:] != sid[:-1]
        if new_file:
            new[off] = True  # a session never continues into another file
        diff = np.zeros(n, np.int64)
        diff[1:] = step[1:] - step[:-1]
        rows = np.arange(n) - off + start
        mine = rows >= start  # the carried row was checked with its own batch
        bad_start = mine & new & (step != 0)
        bad_step = mine & ~new & ~((diff == 1) | (diff == 0))
        if bad_start.any() and "start" not in self._session:
            j = int(np.flatnonzero(bad_start)[0])
            where = f" (the first row of log file {file})" if new_file and j == off else ""
            self._session["start"] = (
                f"session {int(sid[j])} does not start at step 0: row {int(rows[j]):,}{where} "
                f"has step {int(step[j])}; a session's rows must be together, in one file, in "
                "step order (sort the log by session_id, step)"
            )
        if bad_step.any() and "order" not in self._session:
            j = int(np.flatnonzero(bad_step)[0])
            self._session["order"] = (
                f"session {int(sid[j])} has steps out of order or a gap: row {int(rows[j]):,} "
                f"has step {int(step[j])} after step {int(step[j - 1])}; steps must count "
                "0, 1, 2, ... within a session"
            )
        starts = np.flatnonzero(new & mine)
        self._run_sids.append(sid[starts])
        self._run_rows.append(rows[starts])

    def finish(
        self,
        reread: Callable[[np.ndarray], dict[str, np.ndarray]],
        rescan: Callable[[], Iterable[dict[str, np.ndarray]]] | None = None,
    ) -> KeyReport:
        """The report. ``reread(rows)`` returns the key and value columns of the given
        rows (sorted row numbers of the whole log); ``rescan()`` yields the key columns
        batch by batch again, in the same order, needed only when the rows were not
        sorted by key (without it, such a log is compared on neighbours only)."""
        cand = np.unique(np.concatenate(self._cand)) if self._cand else np.zeros(0, np.int64)
        if not self.sorted and rescan is not None:
            from offrec.core.hashing import row_keys

            hashes = np.concatenate(
                [row_keys(c["session_id"], c["step"], c["position"]) for c in rescan()]
            )
            order = np.argsort(hashes, kind="stable")
            same = hashes[order][1:] == hashes[order][:-1]
            if same.any():
                more = np.concatenate([order[1:][same], order[:-1][same]]) + self.first_row
                cand = np.unique(np.concatenate([cand, more]))
        dups, coll, example = _classify(cand, reread) if cand.size else (cand, cand, None)
        session: list[str] = []
        if self.session_log and self._run_sids:
            sids = np.concatenate(self._run_sids)
            order = np.argsort(sids, kind="stable")
            again = sids[order][1:] == sids[order][:-1]
            if again.any():
                rows = np.concatenate(self._run_rows)
                i = int(np.flatnonzero(again)[0])
                first, second = rows[order][i], rows[order][i + 1]
                session.append(
                    f"session {int(sids[order][i])}'s rows are split into several runs (row "
                    f"{int(first):,} and again from row {int(second):,}, after other sessions or "
                    "in another file); a session's rows must be together, in one file (sort the "
                    "log by session_id, step)"
                )
        session += list(self._session.values())
        return KeyReport(dups, coll, example, session, self.max_step)


def _classify(
    cand: np.ndarray, reread: Callable[[np.ndarray], dict[str, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray, tuple[int, int] | None]:
    """Duplicates and collisions among the rows ``cand`` (sorted; rows that may share a
    key): read them back, group them by exact key (row order kept within a key) and
    compare each with the row before it on :data:`KEY_VALUE_COLUMNS`."""
    got = reread(cand)
    sub = np.lexsort((cand, got["position"], got["step"], got["session_id"]))
    key_eq = np.ones(sub.size - 1, bool)
    for c in ("session_id", "step", "position"):
        v = got[c][sub]
        key_eq &= v[1:] == v[:-1]
    val_eq = key_eq.copy()
    for c in KEY_VALUE_COLUMNS:
        if c in got:
            v = got[c][sub]
            val_eq &= v[1:] == v[:-1]
    later = cand[sub[1:]]
    coll_mask = key_eq & ~val_eq
    example = None
    if coll_mask.any():
        i = int(np.flatnonzero(coll_mask)[0])
        example = (int(cand[sub[i]]), int(cand[sub[i + 1]]))
    return np.unique(later[val_eq]), np.unique(later[coll_mask]), example
