"""The server's runtime settings (:mod:`offrec.serve.server`)."""

from __future__ import annotations

import gc

from offrec.serve.server import tuned_gc


def test_tuned_gc_freezes_the_heap_while_serving_and_releases_it_after() -> None:
    before = gc.get_freeze_count()
    kept = [object() for _ in range(3)]  # alive when serving starts: frozen
    with tuned_gc():
        assert gc.get_freeze_count() >= before + len(kept)
        young: list[int] = []  # allocated while serving: collectable, not frozen
        assert any(o is young for o in gc.get_objects(0))
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold()[0] > 0  # collection is still on
