"""HTTP endpoints on the worker's Faust web server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TypeVar

import faust
from faust.web import Request, Response, View
from redis.exceptions import RedisError

from stream_app.cold_start import ColdStartList
from stream_app.metrics import Metrics
from stream_app.model_updates import ModelSlot
from stream_app.sinks.base import Store

log = logging.getLogger(__name__)
T = TypeVar("T")


class Unavailable(Exception):
    """A read from the store failed, or an answer took longer than the read timeout; the message is what the
    caller is told."""


STORE_UNAVAILABLE = "the recommendation store is unavailable; try again shortly"
NEW_SHOPPER_LATE = "no list for a new shopper was ready in time; try again shortly"


def register(app: faust.App, store: Store, metrics: Metrics, slot: ModelSlot, read_timeout_s: float = 1.0) -> None:
    """``GET /recommendations/{user_id}/``, ``GET /health/``, ``GET /metrics/`` (and ``/metrics``, where
    Prometheus scrapes by default). An answer that fails on the store or takes over ``read_timeout_s`` is a
    503 (JSON, ``Retry-After: 1``), logged in one line."""
    cold = ColdStartList(slot)

    async def bounded(request: Request, what: Awaitable[T], late: str = STORE_UNAVAILABLE) -> T:
        """``what``, bounded by ``read_timeout_s``: the store's client retries for seconds, for the stream's
        writes; a page answers sooner. ``late`` is what the caller is told when it took too long."""
        try:
            return await asyncio.wait_for(what, read_timeout_s)
        except (RedisError, TimeoutError) as exc:  # redis' TimeoutError is a RedisError; ours is wait_for's
            if isinstance(exc, RedisError):
                error, why = STORE_UNAVAILABLE, f"{type(exc).__name__}: {exc}"
            else:
                error, why = late, f"no answer in {read_timeout_s:g} s"
            log.warning("%s %s: 503, %s (%s)", request.method, request.path, error.split(";")[0], why)
            raise Unavailable(error) from None

    def unavailable(view: View, exc: Unavailable) -> Response:
        """503; the reason is in the log, not for the caller (it would name Redis' address)."""
        return view.json({"error": str(exc)}, status=503, headers={"Retry-After": "1"})

    @app.page("/recommendations/{user_id}/")
    async def recommendations(self: View, request: Request, user_id: str) -> Response:
        """The user's stored list, else the serving model's list for an empty history (``cold_start``);
        404 only while the model has nothing to recommend; 503 while the store does not answer, or the
        ensemble's new-shopper list is not scored within the read timeout (it waits for the stream's scoring
        thread, behind the batch being scored)."""
        try:
            record = await bounded(request, store.recommendations(user_id))
            # a wait cut short leaves its shared scoring to the other requests (``ColdStartList`` shields it);
            # the baseline's list is read from the store (its popular items), the ensemble's is scored
            if not record:
                late = STORE_UNAVAILABLE if slot.serving.uses_item_activity else NEW_SHOPPER_LATE
                record = await bounded(request, cold.record(user_id), late=late)
        except Unavailable as exc:
            return unavailable(self, exc)
        if record is None:
            return self.notfound(f"no recommendations for user {user_id!r}, and none for a new user yet")
        return self.json(record)

    @app.page("/health/")
    async def health(self: View, request: Request) -> Response:
        try:
            counters = await bounded(request, store.counters())
        except Unavailable as exc:
            return unavailable(self, exc)
        return self.json({"status": "ok", "model_version": slot.model_version,
                          "last_swap": slot.swaps[-1] if slot.swaps else None, "counters": counters})

    async def metrics_page(self: View, request: Request) -> Response:
        return self.bytes(metrics.exposition(), content_type="text/plain; version=0.0.4")

    app.page("/metrics/")(metrics_page)
    app.page("/metrics", name="metrics_page_no_slash")(metrics_page)
