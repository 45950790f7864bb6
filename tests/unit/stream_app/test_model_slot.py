"""Hot swaps happen between micro-batches, never inside one."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from unittest.mock import patch

import orjson

from models.model_store import ModelStore
from stream_app import model_updates
from stream_app.metrics import Metrics
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


def test_a_worker_that_swaps_for_months_keeps_only_the_latest_swaps() -> None:
    slot = ModelSlot(rec("v0"))
    for n in range(1, 1_502):
        slot.stage(rec(f"v{n}"), {"version": f"v{n}", "action": "promote"})
    assert len(slot.swaps) == 1_000 and slot.swaps[-1]["version"] == "v1501" and slot.model_version == "v1501"


def test_a_model_staged_while_idle_serves_at_once() -> None:
    slot = ModelSlot(rec("v1"))
    slot.stage(rec("v0"), {"version": "v0", "action": "rollback"})
    assert slot.model_version == "v0" and slot.swaps[-1]["swap_lag_s"] is None


def announcements_seen_by(serving: str, log: list[dict] | str, announced: list[dict | bytes | None], tmp_path,
                          while_loading: list[dict] = ()) -> tuple[list[str], str]:
    """What a worker serving ``serving`` loads, and serves in the end, reading ``announced`` (entries, or raw
    message values) while the store's log holds ``log`` (written directly, entries or raw text; the fake
    loader needs no checkpoints, and appends ``while_loading`` to the log as it loads)."""
    text = log if isinstance(log, str) else "".join(orjson.dumps(e).decode() + "\n" for e in log)
    (tmp_path / "log.jsonl").write_text(text)
    loaded: list[str] = []

    def load(path, version):
        loaded.append(version)
        with open(tmp_path / "log.jsonl", "a") as fh:
            fh.writelines(orjson.dumps(e).decode() + "\n" for e in while_loading)
        return rec(version)

    slot = ModelSlot(rec(serving))
    store = ModelStore(tmp_path)

    async def follow() -> None:
        with ThreadPoolExecutor(1) as loader, patch.object(model_updates, "check_scores", lambda r: None):
            for entry in announced:
                value = orjson.dumps(entry) if isinstance(entry, dict) else entry
                await model_updates._on_announcement(value, store, slot, Metrics(), load, loader)

    asyncio.run(follow())
    return loaded, slot.model_version


def test_a_starting_worker_skips_the_announcements_of_versions_that_no_longer_serve(tmp_path) -> None:
    log = [{"action": "promote", "version": f"v000{n}"} for n in (1, 2, 3)]
    assert announcements_seen_by("v0003", log, log, tmp_path) == ([], "v0003")  # started on the current one
    assert announcements_seen_by("v0001", log, log, tmp_path) == (["v0003"], "v0003")  # not v0002 on the way


def test_a_rollback_announcement_is_followed_and_the_promotion_it_undid_is_not(tmp_path) -> None:
    log = [{"action": "promote", "version": "v0001"}, {"action": "promote", "version": "v0002"},
           {"action": "rollback", "version": "v0001", "from_version": "v0002"}]
    assert announcements_seen_by("v0001", log, log, tmp_path) == ([], "v0001")
    assert announcements_seen_by("v0002", log, log[2:], tmp_path) == (["v0001"], "v0001")


def test_an_announcement_is_refused_while_the_stores_log_is_damaged(tmp_path) -> None:
    damaged = '{"action": "pro\n{"action": "promote", "version": "v0002"}\n'
    assert announcements_seen_by("v0001", damaged, [{"action": "promote", "version": "v0002"}], tmp_path) \
        == ([], "v0001")


def test_unreadable_announcements_and_tombstones_are_refused_and_the_worker_goes_on(tmp_path) -> None:
    """A null value (how a compacted topic's key is cleared), text that is not an entry, and an entry with a
    field of the wrong type: none of them stops the worker, and the next good announcement is followed."""
    log = [{"action": "promote", "version": "v0001"}, {"action": "promote", "version": "v0002"}]
    odd = {"action": "promote", "version": "v0002", "newest_sample_ms": "soon"}
    assert announcements_seen_by("v0001", log, [None, b"not json", b"[1, 2]", odd], tmp_path) == (["v0002"], "v0002")


def test_a_version_rolled_back_while_it_loaded_is_not_staged(tmp_path) -> None:
    log = [{"action": "promote", "version": "v0001"}, {"action": "promote", "version": "v0002"}]
    rollback = {"action": "rollback", "version": "v0001", "from_version": "v0002"}
    assert announcements_seen_by("v0001", log, log[1:], tmp_path, while_loading=[rollback]) == (["v0002"], "v0001")
