"""Hot swaps happen between micro-batches, never inside one."""

from __future__ import annotations

from types import SimpleNamespace

from stream_app.model_updates import ModelSlot


def rec(version: str) -> SimpleNamespace:
    return SimpleNamespace(model_version=version)


def test_a_model_staged_mid_batch_serves_from_the_next_batch() -> None:
    swapped = []
    slot = ModelSlot(rec("v1"), on_swap=swapped.append)
    scoring = slot.begin_batch()
    slot.stage(rec("v2"), {"version": "v2", "action": "promote", "newest_sample_ms": 1_000})
    assert scoring.model_version == "v1" and slot.model_version == "v1"  # the batch keeps its model
    slot.end_batch()
    assert slot.begin_batch().model_version == "v2"
    assert swapped[0]["version"] == "v2" and swapped[0]["swap_lag_s"] > 0


def test_a_model_staged_while_idle_serves_at_once() -> None:
    slot = ModelSlot(rec("v1"))
    slot.stage(rec("v0"), {"version": "v0", "action": "rollback"})
    assert slot.model_version == "v0" and slot.swaps[-1]["swap_lag_s"] is None
