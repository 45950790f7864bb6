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


class StoreUnavailable(Exception):
    """A read from the store failed or took longer than the read timeout."""


def register(app: faust.App, store: Store, metrics: Metrics, slot: ModelSlot, read_timeout_s: float = 1.0) -> None:
    """``GET /recommendations/{user_id}/``, ``GET /health/``, ``GET /metrics/`` (and ``/metrics``, where
    Prometheus scrapes by default). A read from the store that fails or takes over ``read_timeout_s`` answers
    503 (JSON), logged in one line."""
    cold = ColdStartList(slot)

    async def read(request: Request, what: Awaitable[T]) -> T:
        """``what``, bounded by ``read_timeout_s``: the store's client retries for seconds, for the stream's
        writes; a page answers sooner."""
        try:
            return await asyncio.wait_for(what, read_timeout_s)
        except (RedisError, TimeoutError) as exc:  # redis' TimeoutError is a RedisError; ours is wait_for's
            why = (f"no answer in {read_timeout_s:g} s" if isinstance(exc, TimeoutError)
                   else f"{type(exc).__name__}: {exc}")
            log.warning("%s %s: 503, the store is unavailable (%s)", request.method, request.path, why)
            raise StoreUnavailable(why) from None

    def unavailable(view: View) -> Response:
        """503; the reason is in the log, not for the caller (it would name Redis' address)."""
        return view.json({"error": "the recommendation store is unavailable; try again shortly"}, status=503)

    @app.page("/recommendations/{user_id}/")
    async def recommendations(self: View, request: Request, user_id: str) -> Response:
        """The user's stored list, else the serving model's list for an empty history (``cold_start``);
        404 only while the model has nothing to recommend; 503 while the store does not answer."""
        try:
            record = await read(request, store.recommendations(user_id))
            # the new-shopper list reads the store too (the baseline's popular items), so it is bounded alike;
            # a wait cut short leaves its shared scoring to the other requests (``ColdStartList`` shields it)
            record = record or await read(request, cold.record(user_id))
        except StoreUnavailable:
            return unavailable(self)
        if record is None:
            return self.notfound(f"no recommendations for user {user_id!r}, and none for a new user yet")
        return self.json(record)

    @app.page("/health/")
    async def health(self: View, request: Request) -> Response:
        try:
            counters = await read(request, store.counters())
        except StoreUnavailable:
            return unavailable(self)
        return self.json({"status": "ok", "model_version": slot.model_version,
                          "last_swap": slot.swaps[-1] if slot.swaps else None, "counters": counters})

    async def metrics_page(self: View, request: Request) -> Response:
        return self.bytes(metrics.exposition(), content_type="text/plain; version=0.0.4")

    app.page("/metrics/")(metrics_page)
    app.page("/metrics", name="metrics_page_no_slash")(metrics_page)
