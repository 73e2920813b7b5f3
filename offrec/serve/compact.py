r"""Compaction: sealed write-ahead segments -> Parquet part files of the log schema.

**Records** (JSON payloads of :mod:`offrec.serve.wal` frames)::

    decision  {"t": "d", "id": int, "v": model version, "u": user id, "x": [context],
               "a": [items], "p": [pscores]}
    feedback  {"t": "f", "id": decision id, "r": reward, "pos": position, "late": bool}

**Attribution window.** A reward counts for a decision if the service *received* it at
most ``window_s`` seconds after the decision was made (the decision id carries its time,
:class:`~offrec.serve.wal.DecisionIds`). A decision row with no reward within the window
gets reward 0; several rewards for one row keep the largest (a click is a click). A reward
received later is acknowledged, stored with ``late: true``, **counted** in the compaction
report and in the part file's ``offrec.serve`` metadata (``late_feedback``), and never
added to the log's rewards (the row was, by definition, a no-click when its window closed).

**When a segment is compacted.** A sealed segment is ready once its newest decision is
older than ``window_s + grace_s`` (``grace_s`` covers the few milliseconds between a
reward's acceptance and its fsync). Ready segments are compacted oldest first, together,
into one part file named after the segment range, ``part-w<first>-<last>.parquet``, with
the rewards found in that range and every later segment (a reward always follows its
decision). The part is written by :mod:`offrec.logs.writer`'s part writer into a hidden
temporary folder, fsynced and renamed into the log folder (atomic), and only then are the
segments deleted. A crash between the rename and the deletion leaves segments whose
number lies in an existing part's range: they are deleted, not compacted again, so
every decision reaches the log **exactly once**.

**Rows.** One row per shown item: ``session_id`` = decision id, ``step`` 0, ``position``
the slot, ``pscore`` as :mod:`offrec.serve.model` defines it, ``terminated`` true (one
decision, nothing follows it), and the optional column ``model_version``
(:data:`offrec.logs.schema.MODEL_VERSION`). Parsing is one ``orjson.loads`` per record; the
rest is vectorized over rows.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa

from offrec.core.version import __version__
from offrec.logs import schema as S
from offrec.logs.writer import PartWriter
from offrec.serve.wal import DecisionIds, fsync_dir, read_segment, segment_seq

log = logging.getLogger(__name__)

PART_RE = re.compile(r"^part-w(\d{10})-(\d{10})\.parquet$")
TMP_PREFIX = ".compact-tmp-"
META_SERVE = "offrec.serve"
"""Part-file metadata key: JSON of the compaction that wrote the part (window, segments, counts)."""


@dataclass
class Counts:
    """What one compaction (or all of them, summed) wrote and saw."""

    decisions: int = 0
    rows: int = 0
    clicked_rows: int = 0
    feedback_joined: int = 0
    late_feedback: int = 0
    segments: int = 0
    parts: int = 0
    skipped_segments: int = 0
    """Segments found already compacted (a crash after the part's rename) and deleted."""

    def add(self, other: Counts) -> None:
        for k, v in asdict(other).items():
            setattr(self, k, getattr(self, k) + v)


@dataclass(frozen=True)
class LogLayout:
    """The shape and metadata every part of one service's log shares."""

    context_dim: int
    n_actions: int
    window_s: float
    metadata: dict[str, str] = field(default_factory=dict)
    dataset: dict[str, Any] | None = None
    """Dataset-level metadata (the sidecar :data:`offrec.logs.schema.DATASET_FILE`: item topics and topic names), if known."""

    def schema(self, model_versions: list[str]) -> pa.Schema:
        meta = {
            S.META_VERSION: __version__,
            S.META_REWARD_DOMAIN: json.dumps(S.BINARY),
            S.META_POLICY: json.dumps({"type": "served", "model_versions": model_versions}),
            **self.metadata,
        }
        base = S.log_schema(self.context_dim, self.n_actions, metadata=meta)
        return base.append(pa.field(S.MODEL_VERSION, pa.string(), nullable=False))


def compacted_ranges(log_dir: Path) -> list[tuple[int, int]]:
    """Segment ranges already in the log, from the part file names."""
    out = []
    for p in log_dir.glob("part-w*.parquet"):
        m = PART_RE.match(p.name)
        if m:
            out.append((int(m.group(1)), int(m.group(2))))
    return sorted(out)


def remove_stale_temps(log_dir: Path) -> int:
    """Delete temporary folders a killed compaction left; return how many."""
    stale = [p for p in log_dir.glob(TMP_PREFIX + "*") if p.is_dir()]
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return len(stale)


def parse(records: list[bytes]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Decision and feedback records of a segment."""
    decisions: list[dict[str, Any]] = []
    feedback: list[dict[str, Any]] = []
    for raw in records:
        rec = orjson.loads(raw)
        (decisions if rec["t"] == "d" else feedback).append(rec)
    return decisions, feedback


def newest_decision_ms(records: list[bytes]) -> int:
    """When the newest decision among a segment's ``records`` was made (ms since the
    epoch; -1 without decisions), parsing from the end only.

    Decision ids increase in the order records are appended (ids are reserved and
    submitted in one step, and the writer keeps submission order), so the last decision
    record is the newest. The service asks this of the oldest waiting segment on every
    compaction tick; parsing the whole segment instead (tens of thousands of JSON records,
    in a thread that holds the GIL) stalled the event loop for hundreds of milliseconds
    every tick under load.
    """
    for raw in reversed(records):
        rec = orjson.loads(raw)
        if rec["t"] == "d":
            return DecisionIds.time_ms(int(rec["id"]))
    return -1


def compact(
    log_dir: str | Path,
    wal_dir: str | Path,
    layout: LogLayout,
    *,
    active_seq: int | None,
    grace_s: float = 2.0,
    now_ms: int | None = None,
    force: bool = False,
) -> Counts:
    """Compact the ready sealed segments of ``wal_dir`` into ``log_dir`` (module docstring).

    Args:
        active_seq: the segment the service is appending to (never compacted; read for
            rewards up to its current size), or None when no service runs.
        force: compact every sealed segment now, windows closed or not (shutdown of a
            closed loop; rewards not yet received are then 0).
    """
    log_dir, wal_dir = Path(log_dir), Path(wal_dir)
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    counts = Counts()
    ranges = compacted_ranges(log_dir)
    segs = sorted(wal_dir.glob("wal-*.log"), key=segment_seq)
    sealed = [p for p in segs if active_seq is None or segment_seq(p) < active_seq]
    pending = []
    for p in sealed:
        if any(a <= segment_seq(p) <= b for a, b in ranges):
            p.unlink()
            counts.skipped_segments += 1
        else:
            pending.append(p)
    if counts.skipped_segments:
        fsync_dir(wal_dir)
    ready: list[Path] = []
    decisions: list[dict[str, Any]] = []
    feedback: list[dict[str, Any]] = []
    late = 0
    cutoff = now_ms - int(1000 * (layout.window_s + grace_s))
    for p in pending:
        records = read_segment(p).records
        if not force and newest_decision_ms(records) > cutoff:
            break
        d, f = parse(records)
        ready.append(p)
        decisions += d
        feedback += [r for r in f if not r.get("late")]
        late += sum(1 for r in f if r.get("late"))
    if not ready:
        return counts
    last = segment_seq(ready[-1])
    for p in segs:  # rewards for these decisions in later segments (sealed or active)
        if segment_seq(p) > last:
            feedback += [r for r in parse(read_segment(p).records)[1] if not r.get("late")]
    counts.segments = len(ready)
    counts.late_feedback = late
    if decisions:
        table, joined = _table(decisions, feedback, layout)
        counts.decisions = len(decisions)
        counts.rows = table.num_rows
        counts.clicked_rows = int(np.count_nonzero(table.column("reward").to_numpy()))
        counts.feedback_joined = joined
        name = f"part-w{segment_seq(ready[0]):010d}-{last:010d}.parquet"
        info = {
            "window_s": layout.window_s,
            "segments": [segment_seq(ready[0]), last],
            "counts": asdict(counts),
        }
        _publish(log_dir, name, table, info, layout)
        counts.parts = 1
    elif late:  # no decision to carry the count: keep it in a side file
        _add_late(log_dir, late)
    for p in ready:
        p.unlink()
    fsync_dir(wal_dir)
    log.info("compacted %d segment(s): %s", len(ready), asdict(counts))
    return counts


LATE_FILE = "_serve_late_feedback.json"


def _add_late(log_dir: Path, n: int) -> None:
    from offrec.core.atomic import atomic_write_text

    path = log_dir / LATE_FILE
    old = json.loads(path.read_text())["late_feedback"] if path.is_file() else 0
    atomic_write_text(path, json.dumps({"late_feedback": old + n}))


def _table(
    decisions: list[dict[str, Any]], feedback: list[dict[str, Any]], layout: LogLayout
) -> tuple[pa.Table, int]:
    """Rows of ``decisions`` with rewards joined from ``feedback``; the number of
    feedback records that matched a row."""
    k = np.array([len(r["a"]) for r in decisions])
    ids = np.repeat(np.array([r["id"] for r in decisions], np.int64), k)
    pos = np.concatenate([np.arange(n) for n in k]).astype(np.int32)
    action = np.concatenate([r["a"] for r in decisions]).astype(np.int32)
    pscore = np.concatenate([r["p"] for r in decisions]).astype(np.float64)
    user = np.repeat(np.array([r.get("u", -1) for r in decisions], np.int64), k)
    ctx = np.repeat(np.asarray([r["x"] for r in decisions], np.float32), k, axis=0)
    version = np.repeat(np.array([r["v"] for r in decisions], dtype=object), k)
    reward = np.zeros(ids.size, np.float32)
    joined = 0
    if feedback:
        fb = pd.DataFrame(
            {
                "id": [r["id"] for r in feedback],
                "pos": [r.get("pos", 0) for r in feedback],
                "r": [r["r"] for r in feedback],
            }
        )
        best = fb.groupby(["id", "pos"], sort=False)["r"].max()
        rows = pd.MultiIndex.from_arrays([ids, pos])
        got = best.reindex(rows)
        hit = got.notna().to_numpy()
        reward[hit] = got.to_numpy()[hit].astype(np.float32)
        joined = int(fb.set_index(["id", "pos"]).index.isin(rows).sum())
    n = ids.size
    order = np.lexsort((pos, ids))
    versions = sorted(set(version.tolist()))
    schema = layout.schema(versions)
    ctx = ctx.reshape(n, layout.context_dim)
    cols = {
        "session_id": pa.array(ids[order], pa.int64()),
        "step": pa.array(np.zeros(n, np.int32)),
        "user_id": pa.array(user[order], pa.int64()),
        "context": pa.FixedSizeListArray.from_arrays(
            pa.array(ctx[order].reshape(-1)), layout.context_dim
        )
        if layout.context_dim
        else pa.array([[]] * n, pa.list_(pa.float32())),
        "action": pa.array(action[order]),
        "position": pa.array(pos[order]),
        "reward": pa.array(reward[order]),
        "pscore": pa.array(pscore[order]),
        "terminated": pa.array(np.ones(n, bool)),
        "truncated": pa.array(np.zeros(n, bool)),
        S.MODEL_VERSION: pa.array(version[order].tolist(), pa.string()),
    }
    return pa.Table.from_arrays([cols[f.name] for f in schema], schema=schema), joined


def _publish(
    log_dir: Path, name: str, table: pa.Table, info: dict[str, Any], layout: LogLayout
) -> None:
    """Write ``table`` through the log writer into a hidden temp folder, fsync, rename."""
    meta = dict(table.schema.metadata or {})
    meta[META_SERVE.encode()] = json.dumps(info).encode()
    table = table.replace_schema_metadata(meta)
    tmp = log_dir / f"{TMP_PREFIX}{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        writer = PartWriter(table.schema, rows_per_file=max(table.num_rows, 1))
        writer.write(tmp, table)
        writer.close()
        src = tmp / "part-00000.parquet"
        fd = os.open(src, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if layout.dataset is not None and not (log_dir / S.DATASET_FILE).is_file():
            from offrec.core.atomic import atomic_write_text

            atomic_write_text(log_dir / S.DATASET_FILE, json.dumps(layout.dataset))
        os.replace(src, log_dir / name)
        fsync_dir(log_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def late_feedback_total(log_dir: str | Path) -> int:
    """Late rewards counted over the whole log (part metadata plus the side file)."""
    import pyarrow.parquet as pq

    log_dir = Path(log_dir)
    total = 0
    for p in log_dir.glob("part-w*.parquet"):
        raw = (pq.read_schema(p).metadata or {}).get(META_SERVE.encode())
        if raw:
            total += int(json.loads(raw)["counts"]["late_feedback"])
    side = log_dir / LATE_FILE
    if side.is_file():
        total += int(json.loads(side.read_text())["late_feedback"])
    return total


__all__ = [
    "LATE_FILE",
    "META_SERVE",
    "Counts",
    "LogLayout",
    "compact",
    "compacted_ranges",
    "late_feedback_total",
    "newest_decision_ms",
    "parse",
    "remove_stale_temps",
]
