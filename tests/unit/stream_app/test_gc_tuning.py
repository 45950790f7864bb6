"""The worker's start-up heap is frozen out of the cyclic collector's sight."""

from __future__ import annotations

import gc

from stream_app.gc_tuning import YOUNG_THRESHOLD, settle_heap


def test_settle_heap_freezes_what_is_loaded_and_raises_the_young_threshold() -> None:
    before = gc.get_threshold()
    loaded = [{"a": [1]} for _ in range(1000)]  # stands for the model and modules: alive, never garbage
    try:
        frozen = settle_heap()
        assert frozen >= len(loaded) and gc.get_freeze_count() == frozen
        assert gc.get_threshold() == (YOUNG_THRESHOLD, before[1], before[2])
        oldest = gc.get_objects(generation=2)  # what a full collection walks
        assert not any(obj is loaded[0] for obj in oldest)  # frozen: no longer walked
        gc.collect()
        assert loaded[0] == {"a": [1]}  # and still alive
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
