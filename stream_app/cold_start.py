"""The answer for a shopper without a stored list: what the serving model recommends to an empty history.

Such a shopper was never seen, or their list expired (``RECO_REDIS_TTL_S``)
or was lost with Redis; their next event brings a personal list. The list is
scored by the serving recommender, the same call a batch makes, so it carries
that model's version and each item's contributions (popularity, mostly: an
empty history has no co-visitation or sequence to go on).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import Any

from stream_app.model_updates import ModelSlot
from stream_app.pipeline import Recommender, item_json
from stream_app.records import recommendation_record
from stream_app.state import new_state

COLD_USER = "\x00cold"  # the key the empty history is scored under: no real user id holds a NUL


class ColdStartList:
    """The serving model's list for an empty history, scored at most once per ``ttl_s`` and per version:
    requests that come while it is scored wait for that one scoring, however long it takes (with the ensemble
    it queues on the stream's scoring thread, and a burst of new shoppers scoring one each held up the
    stream's next batch). A failed or cancelled scoring is not kept."""

    def __init__(self, slot: ModelSlot, ttl_s: float = 1.0) -> None:
        self.slot = slot
        self.ttl_s = ttl_s
        # (version's recommender, its scoring: (when it finished (monotonic), when (wall time), items)); held
        # weakly, so a version swapped out is freed with its last batch, not kept until a new shopper asks
        self._cached: tuple[weakref.ref[Recommender], asyncio.Task[tuple[float, float, list[dict[str, Any]]]]
                            ] | None = None

    async def record(self, user_id: str) -> dict[str, Any] | None:
        """``user_id``'s record, marked ``"fallback": "no_history"``; None while the model has nothing to
        recommend (the baseline before any item is popular)."""
        serving = self.slot.serving
        cached = self._cached
        if cached is None or cached[0]() is not serving or cached[1].done() and (  # one in flight serves on
                cached[1].cancelled() or cached[1].exception() is not None
                or time.monotonic() - cached[1].result()[0] > self.ttl_s):  # fresh from when it finished
            cached = self._cached = (weakref.ref(serving), asyncio.ensure_future(_score_empty(serving)))
        _, scored_at, items = await asyncio.shield(cached[1])  # a caller that goes away leaves it to the others
        if not items:
            return None
        record = recommendation_record(user_id=user_id, items=items, model_version=serving.model_version,
                                       event_ts=None, scored_at=scored_at, events_seen=None)
        record["fallback"] = "no_history"
        return record


async def _score_empty(serving: Recommender) -> tuple[float, float, list[dict[str, Any]]]:
    """When (monotonic and wall time), and what, ``serving`` recommends to an empty history."""
    ranked = await serving.recommend({COLD_USER: new_state()}, {})
    return time.monotonic(), time.time(), [item_json(s) for s in ranked.get(COLD_USER, [])]
