"""What keeps the server's latency tail short: :func:`offrec.serve.server.tuned_gc` and
:func:`offrec.serve.compact.newest_decision_ms`."""

from __future__ import annotations

import gc

import orjson

from offrec.serve.compact import newest_decision_ms
from offrec.serve.server import tuned_gc
from offrec.serve.wal import DecisionIds


def test_tuned_gc_freezes_the_heap_while_serving_and_releases_it_after() -> None:
    before = gc.get_freeze_count()
    kept = [object() for _ in range(3)]  # alive when serving starts: frozen
    with tuned_gc():
        assert gc.get_freeze_count() >= before + len(kept)
        young: list[int] = []  # allocated while serving: collectable, not frozen
        assert any(o is young for o in gc.get_objects(0))
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
