"""The write-ahead log: framing, torn tails, group commit, failed writes."""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

import pytest

from offrec.serve.wal import (
    HEADER,
    DecisionIds,
    WALUnavailable,
    WriteAheadLog,
    frame,
    list_segments,
    read_segment,
)


def _filled(folder: Path, payloads: list[bytes]) -> Path:
    wal = WriteAheadLog(folder)
    wal.recover()
    wal.start()
    for p in payloads:
        wal.write_sync(p)
    wal.close()
    return list_segments(folder)[-1]


def test_records_round_trip_and_every_torn_tail_is_dropped(tmp_path: Path) -> None:
    payloads = [f'{{"n":{i}}}'.encode() for i in range(5)]
    seg = _filled(tmp_path / "wal", payloads)
    full = seg.read_bytes()
    assert read_segment(seg).records == payloads
    last = len(frame(payloads[-1]))
    # a crash may cut the last write anywhere: every cut keeps exactly the first 4 records
    for cut in range(1, last):
        seg.write_bytes(full[: len(full) - cut])
        got = read_segment(seg)
        assert got.records == payloads[:4], cut
        assert got.good_bytes == len(full) - last and got.torn_bytes == last - cut


def test_a_corrupt_byte_stops_reading_there_and_recovery_truncates(tmp_path: Path) -> None:
    payloads = [b'{"a":1}', b'{"b":2}', b'{"c":3}']
    seg = _filled(tmp_path / "wal", payloads)
    data = bytearray(seg.read_bytes())
    second = len(frame(payloads[0]))
    data[second + HEADER.size] ^= 0xFF  # a flipped payload byte of record 2: crc mismatch
    seg.write_bytes(bytes(data))
    wal = WriteAheadLog(tmp_path / "wal")
    rec = wal.recover()
    assert (rec.records, rec.torn_bytes) == (1, len(data) - second)
    assert seg.stat().st_size == second  # cut, so later appends never follow garbage
    # zeros past the end (a file extended but not written) are not records either
    seg.write_bytes(seg.read_bytes() + bytes(64))
    assert read_segment(seg).records == payloads[:1]


def test_group_commit_batches_concurrent_records(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path / "wal")
    wal.recover()
    wal.start()
    n_threads, per_thread = 8, 50

    def work(t: int) -> None:
        for i in range(per_thread):
            wal.write_sync(f'{{"t":{t},"i":{i}}}'.encode())

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wal.close()
    records = [r for s in list_segments(tmp_path / "wal") for r in read_segment(s).records]
    assert len(records) == len(set(records)) == n_threads * per_thread == wal.records
    # 8 writers waiting on each fsync: batches hold several records
    assert wal.batches < wal.records


def test_a_failed_write_fails_its_batch_only_and_the_file_stays_clean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wal = WriteAheadLog(tmp_path / "wal")
    wal.recover()
    wal.start()
    wal.write_sync(b'{"ok":1}')
    real_write = os.write
    calls = {"n": 0}

    def full_disk(fd: int, data: bytes) -> int:
        calls["n"] += 1
        n = real_write(fd, bytes(data)[:5])  # part of the frame lands, then ENOSPC
        if n:
            raise OSError(errno.ENOSPC, "No space left on device")
        return n

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(WALUnavailable, match="No space left"):
        wal.write_sync(b'{"lost":1}')
    monkeypatch.setattr(os, "write", real_write)
    wal.write_sync(b'{"ok":2}')  # space is back: the log goes on
    wal.close()
    assert calls["n"] == 1 and wal.failed_batches == 1 and wal.broken is None
    seg = list_segments(tmp_path / "wal")[-1]
    assert read_segment(seg).records == [b'{"ok":1}', b'{"ok":2}']
    assert read_segment(seg).torn_bytes == 0


def test_a_failed_fsync_refuses_every_later_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wal = WriteAheadLog(tmp_path / "wal")
    wal.recover()
    wal.start()

    def bad_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", bad_fsync)
    with pytest.raises(WALUnavailable, match="fsync failed"):
        wal.write_sync(b'{"x":1}')
    monkeypatch.undo()
    with pytest.raises(WALUnavailable, match="restart to recover"):
        wal.write_sync(b'{"x":2}')
    wal.close()


def test_rotation_seals_segments_and_restarts_open_a_new_one(tmp_path: Path) -> None:
    folder = tmp_path / "wal"
    wal = WriteAheadLog(folder)
    wal.recover()
    wal.start()
    assert wal.rotate() is None  # nothing to seal
    wal.write_sync(b'{"a":1}')
    assert wal.rotate() == 1 and wal.active_seq == 2
    assert [p.name for p in wal.sealed_segments()] == ["wal-0000000001.log"]
    wal.close()
    again = WriteAheadLog(folder)
    assert again.recover().records == 1
    again.start()
    assert again.active_seq == 3
    again.close()


def test_decision_ids_increase_and_carry_their_time() -> None:
    ids = DecisionIds()
    got = [ids.next() for _ in range(1000)]
    assert got == sorted(got) and len(set(got)) == 1000
    assert abs(DecisionIds.time_ms(got[-1]) - time.time() * 1000) < 5000
    ids.observe(got[-1] + 10)
    assert ids.next() > got[-1] + 10  # never below an id seen before (a restart)
