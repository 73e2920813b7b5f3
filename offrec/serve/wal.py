r"""The write-ahead log: append-only segment files, group commit, torn-tail recovery.

Every decision the service answers, and every reward that comes back, is appended here
and made durable (``fsync``) *before* the client gets its answer. Later, compaction
(:mod:`offrec.serve.compact`) turns sealed segments into Parquet part files of the log
schema and deletes them.

File layout (``LOG_DIR/_wal/``; Parquet readers skip names starting with ``_``)::

    wal-0000000001.log   sealed segment (closed; waits for compaction)
    wal-0000000002.log   active segment (appended to)

A segment is a sequence of records, each framed as::

    magic u16 (0x0FEC) | length u32 | crc32(payload) u32 | payload (length bytes, JSON)

all little-endian. Reading stops at the first frame whose magic, length or checksum is
wrong, or that runs past the end of the file: that is a *torn tail* (a write cut by a
crash or a full disk), never an acknowledged record, because a record is acknowledged
only after the ``fsync`` that covers it returned. :meth:`WriteAheadLog.recover`
truncates such tails, so later appends never follow garbage.

Group commit: callers hand records to :meth:`WriteAheadLog.submit` from any thread (or
:meth:`WriteAheadLog.append` from an asyncio loop); one writer thread takes *every*
record waiting at that moment, writes them with one ``write`` and one ``fsync``, then
resolves all their futures. Under load a batch holds all the requests that arrived
during the previous fsync, so the fsync cost is shared and throughput holds.

A failed write (``ENOSPC``: disk full) fails only the records of that batch: the file is
truncated back to the end of the last good batch and later batches may succeed once
space is freed. A failed ``fsync`` or a failed truncation leaves the file's state
unknown (the page cache may have dropped the data), so the log then refuses every
further record (:class:`WALUnavailable`) until the process restarts and recovers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAGIC = 0x0FEC
HEADER = struct.Struct("<HII")
"""Frame header: magic, payload length, crc32 of the payload."""
MAX_RECORD = 16 * 1024 * 1024
"""A frame announcing a longer payload is corrupt (requests are far smaller)."""
WAL_DIR = "_wal"


class WALUnavailable(OSError):
    """The write-ahead log cannot make a record durable (disk full, I/O error)."""


def frame(payload: bytes) -> bytes:
    """``payload`` with its header (see the module docstring)."""
    return HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def segment_name(seq: int) -> str:
    return f"wal-{seq:010d}.log"


def segment_seq(path: Path) -> int:
    return int(path.stem.split("-")[1])


def list_segments(folder: Path) -> list[Path]:
    """The segment files in ``folder``, oldest first."""
    return sorted(folder.glob("wal-*.log"), key=segment_seq)


@dataclass(frozen=True)
class SegmentRead:
    """What :func:`read_segment` found: the good records and where they end."""

    records: list[bytes]
    good_bytes: int
    file_bytes: int

    @property
    def torn_bytes(self) -> int:
        return self.file_bytes - self.good_bytes


def read_segment(path: Path, limit: int | None = None) -> SegmentRead:
    """The records of one segment, up to the first torn or corrupt frame (or ``limit`` bytes)."""
    data = path.read_bytes()
    if limit is not None:
        data = data[:limit]
    records, off, n = [], 0, len(data)
    while off + HEADER.size <= n:
        magic, length, crc = HEADER.unpack_from(data, off)
        end = off + HEADER.size + length
        if magic != MAGIC or length == 0 or length > MAX_RECORD or end > n:
            break
        payload = data[off + HEADER.size : end]
        if zlib.crc32(payload) != crc:
            break
        records.append(payload)
        off = end
    return SegmentRead(records, off, n)


@dataclass(frozen=True)
class Recovery:
    """What :meth:`WriteAheadLog.recover` did: segments read, records kept, torn bytes cut."""

    segments: int
    records: int
    torn_bytes: int
    torn_segments: tuple[str, ...]


class WriteAheadLog:
    """Append-only, group-committed segments in ``folder`` (module docstring).

    Args:
        folder: where the segments live (created).
        fsync: ``False`` skips the fsync (tests of throughput only; never for real logs).
        segment_bytes: the active segment is sealed when it grows past this size.

    Use :meth:`recover` (once, before anything else), then :meth:`start`; stop with
    :meth:`close`.
    """

    def __init__(
        self, folder: str | Path, *, fsync: bool = True, segment_bytes: int = 64 << 20
    ) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self.segment_bytes = segment_bytes
        self._cond = threading.Condition()
        self._pending: list[tuple[bytes, Any, int]] = []  # framed bytes, waiter, records
        self._io = threading.Lock()  # held while a batch is written and while rotating
        self._fd: int | None = None
        self._seq = 0
        self._offset = 0
        self._records_in_segment = 0
        self._thread: threading.Thread | None = None
        self._closing = False
        self.broken: str | None = None
        self.batches = 0
        self.records = 0
        self.failed_batches = 0

    # ------------------------------------------------------------------ lifecycle

    def recover(self) -> Recovery:
        """Check every segment; cut torn tails (module docstring). Call before :meth:`start`."""
        segs = list_segments(self.folder)
        records = torn = 0
        torn_names = []
        for path in segs:
            read = read_segment(path)
            records += len(read.records)
            if read.torn_bytes:
                torn += read.torn_bytes
                torn_names.append(path.name)
                log.warning("%s: dropped a torn tail of %d bytes", path, read.torn_bytes)
                with open(path, "r+b") as f:
                    f.truncate(read.good_bytes)
                    f.flush()
                    os.fsync(f.fileno())
        self._seq = segment_seq(segs[-1]) if segs else 0
        return Recovery(len(segs), records, torn, tuple(torn_names))

    def start(self) -> None:
        """Open a fresh active segment and start the writer thread."""
        self._open_segment(self._seq + 1)
        self._thread = threading.Thread(target=self._run, name="offrec-wal", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Write what is pending, then stop the writer and close the active segment."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()
        with self._io:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def _open_segment(self, seq: int) -> None:
        path = self.folder / segment_name(seq)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._seq, self._offset, self._records_in_segment = seq, os.fstat(self._fd).st_size, 0
        fsync_dir(self.folder)

    # ------------------------------------------------------------------ appending

    def submit(self, payload: bytes, waiter: Any = None) -> Future[None]:
        """Queue ``payload``; the returned future resolves once it is durable (or fails
        with :class:`WALUnavailable`). ``waiter`` (internal) is an asyncio future instead."""
        return self._enqueue(frame(payload), 1, Future() if waiter is None else waiter)

    def append(self, payload: bytes) -> asyncio.Future[None]:
        """:meth:`submit` for asyncio: ``await wal.append(payload)`` returns once durable."""
        return self.append_many([payload])

    def append_many(self, payloads: list[bytes]) -> asyncio.Future[None]:
        """Several records with one future (asyncio): they go into the same group commit,
        in order, and the future resolves once all of them are durable."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        return self._enqueue(b"".join([frame(p) for p in payloads]), len(payloads), fut)

    def _enqueue(self, blob: bytes, count: int, fut: Any) -> Any:
        if self.broken is not None:
            fut.set_exception(WALUnavailable(f"write-ahead log unavailable: {self.broken}"))
            return fut
        with self._cond:
            self._pending.append((blob, fut, count))
            self._cond.notify()
        return fut

    def write_sync(self, payload: bytes) -> None:
        """Append and wait (tests, tools)."""
        self.submit(payload).result()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                batch, self._pending = self._pending, []
                if not batch and self._closing:
                    return
            self._commit(batch)

    def _commit(self, batch: list[tuple[bytes, Any, int]]) -> None:
        exc: BaseException | None = None
        with self._io:
            if self.broken is not None:
                exc = WALUnavailable(f"write-ahead log unavailable: {self.broken}")
            else:
                exc = self._write(b"".join([b for b, _, _ in batch]))
            if exc is None:
                n = sum(c for _, _, c in batch)
                self.batches += 1
                self.records += n
                self._records_in_segment += n
                if self._offset >= self.segment_bytes:
                    self._rotate_locked()
            else:
                self.failed_batches += 1
        _resolve([w for _, w, _ in batch], exc)

    def _write(self, blob: bytes) -> BaseException | None:
        assert self._fd is not None
        start = self._offset
        try:
            view = memoryview(blob)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError as err:
            try:  # drop the partial batch so later records never follow garbage
                os.ftruncate(self._fd, start)
            except OSError as err2:
                self.broken = f"cannot truncate after a failed write ({err2})"
            return WALUnavailable(f"write-ahead log write failed: {err.strerror or err}")
        if self.fsync:
            try:
                os.fsync(self._fd)
            except OSError as err:
                self.broken = f"fsync failed ({err.strerror or err}); restart to recover"
                return WALUnavailable(f"write-ahead log fsync failed: {err.strerror or err}")
        self._offset = start + len(blob)
        return None

    # ------------------------------------------------------------------ segments

    def rotate(self) -> int | None:
        """Seal the active segment (if it holds any record) and open the next one; return
        the sealed segment's number, or None when there was nothing to seal."""
        with self._io:
            if self._records_in_segment == 0 or self.broken is not None:
                return None
            return self._rotate_locked()

    def _rotate_locked(self) -> int:
        sealed = self._seq
        if self._fd is not None:
            os.close(self._fd)
        self._open_segment(sealed + 1)
        return sealed

    @property
    def active_seq(self) -> int:
        return self._seq

    def sealed_segments(self) -> list[Path]:
        """Segments other than the active one, oldest first."""
        return [p for p in list_segments(self.folder) if segment_seq(p) < self._seq]

    def segments(self) -> Iterator[Path]:
        yield from list_segments(self.folder)

    def stats(self) -> dict[str, Any]:
        return {
            "active_segment": self._seq,
            "batches": self.batches,
            "records": self.records,
            "records_per_batch": self.records / max(self.batches, 1),
            "failed_batches": self.failed_batches,
            "broken": self.broken,
        }


def _resolve(waiters: list[Any], exc: BaseException | None) -> None:
    """Resolve concurrent futures here and asyncio futures on their loops (one call per loop)."""
    by_loop: dict[Any, list[Any]] = {}
    for w in waiters:
        if isinstance(w, Future):
            if exc is None:
                w.set_result(None)
            else:
                w.set_exception(exc)
        else:
            by_loop.setdefault(w.get_loop(), []).append(w)
    for loop, futs in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(_set_all, futs, exc)


def _set_all(futs: list[asyncio.Future[None]], exc: BaseException | None) -> None:
    for f in futs:
        if f.done():
            continue
        if exc is None:
            f.set_result(None)
        else:
            f.set_exception(exc)


def fsync_dir(folder: Path) -> None:
    """Make a create/rename/delete in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DecisionIds:
    """Decision ids: ``(unix time in ms) << 20 | counter``, strictly increasing.

    The id tells when the decision was made (``id >> 20`` ms), so the feedback window
    needs no lookup; ids stay increasing across restarts (:meth:`observe` the recovered
    ones) and unique within a log (up to 2^20 decisions per millisecond).
    """

    SHIFT = 20

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def observe(self, decision_id: int) -> None:
        with self._lock:
            self._last = max(self._last, decision_id)

    def next(self) -> int:
        return self.next_many(1)

    def next_many(self, n: int) -> int:
        """Reserve ``n`` consecutive ids; return the first."""
        with self._lock:
            nid = max(int(time.time() * 1000) << self.SHIFT, self._last + 1)
            self._last = nid + n - 1
            return nid

    @classmethod
    def time_ms(cls, decision_id: int) -> int:
        return decision_id >> cls.SHIFT


__all__ = [
    "HEADER",
    "MAGIC",
    "WAL_DIR",
    "DecisionIds",
    "Recovery",
    "SegmentRead",
    "WALUnavailable",
    "WriteAheadLog",
    "frame",
    "fsync_dir",
    "list_segments",
    "read_segment",
    "segment_name",
    "segment_seq",
]
