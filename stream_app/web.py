"""HTTP endpoints on the worker's Faust web server."""

from __future__ import annotations

import faust
from faust.web import Request, Response, View

from stream_app.cold_start import ColdStartList
from stream_app.metrics import Metrics
from stream_app.model_updates import ModelSlot
from stream_app.sinks.base import Store


def register(app: faust.App, store: Store, metrics: Metrics, slot: ModelSlot) -> None:
    """``GET /recommendations/{user_id}/``, ``GET /health/``, ``GET /metrics/``."""
    cold = ColdStartList(slot)

    @app.page("/recommendations/{user_id}/")
    async def recommendations(self: View, request: Request, user_id: str) -> Response:
        """The user's stored list, else the serving model's list for an empty history (``cold_start``);
        404 only while the model has nothing to recommend."""
        record = await store.recommendations(user_id) or await cold.record(user_id)
        if record is None:
            return self.notfound(f"no recommendations for user {user_id!r}, and none for a new user yet")
        return self.json(record)

    @app.page("/health/")
    async def health(self: View, request: Request) -> Response:
        return self.json({"status": "ok", "model_version": slot.model_version,
                          "last_swap": slot.swaps[-1] if slot.swaps else None,
                          "counters": await store.counters()})

    @app.page("/metrics/")
    async def metrics_page(self: View, request: Request) -> Response:
        return self.bytes(metrics.exposition(), content_type="text/plain; version=0.0.4")
