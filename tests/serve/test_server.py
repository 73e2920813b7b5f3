"""What keeps the server's latency tail short: :func:`offrec.serve.server.tuned_gc`,
:func:`offrec.serve.compact.newest_decision_ms` and compaction in a child process."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from offrec.serve.compact import newest_decision_ms
from offrec.serve.server import tuned_gc
from offrec.serve.wal import DecisionIds


def test_tuned_gc_freezes_the_heap_while_serving_and_releases_it_after() -> None:
    before = gc.get_freeze_count()
    kept = [object() for _ in range(3)]  # alive when serving starts: frozen
    with tuned_gc():
        assert gc.get_freeze_count() >= before + len(kept)
        frozen = gc.get_freeze_count()
        young = [[] for _ in range(1000)]  # allocated while serving: collectable, not frozen
        assert gc.get_freeze_count() == frozen and len(young) == 1000
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold()[0] > 0  # collection is still on


def test_newest_decision_ms_reads_the_last_decision_record_only() -> None:
    shift = DecisionIds.SHIFT
    recs = [
        orjson.dumps({"t": "d", "id": (1000 << shift) + 1}),
        orjson.dumps({"t": "d", "id": (1700 << shift) + 2}),
        orjson.dumps({"t": "f", "id": (1000 << shift) + 1, "r": 1.0}),
    ]
    assert newest_decision_ms(recs) == 1700
    assert newest_decision_ms(recs[2:]) == -1  # feedback only
    assert newest_decision_ms([]) == -1
    # only the tail is parsed: a record that is not JSON before the last decision is never read
    assert newest_decision_ms([b"not json", *recs]) == 1700


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_compaction_worker_dies_with_a_killed_service(tmp_path: Path) -> None:
    """A SIGKILLed service must not leave its compaction process running (its restart
    recovers the same segments)."""
    script = (
        "import multiprocessing, os, sys, time\n"
        "from concurrent.futures import ProcessPoolExecutor\n"
        "from offrec.serve.service import _die_with_parent\n"
        "if __name__ == '__main__':\n"
        "    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context('spawn'),\n"
        "                               initializer=_die_with_parent, initargs=(os.getpid(),))\n"
        "    print(pool.submit(os.getpid).result(), flush=True)\n"
        "    time.sleep(60)\n"
    )
    (tmp_path / "svc.py").write_text(script)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        [sys.executable, str(tmp_path / "svc.py")], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    worker = int(proc.stdout.readline())
    assert worker != proc.pid and _alive(worker)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(worker)


def _alive(pid: int) -> bool:
    """``pid`` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
