"""The worker's HTTP endpoints when Redis is down or stalls: a prompt 503 in JSON and one log line, not a 500
after the write path's whole retry budget; /metrics answers with and without the trailing slash."""

from __future__ import annotations

import asyncio
import logging
import time
import types

import faust
import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.exceptions import ConnectionError as RedisConnectionError

from stream_app import web
from stream_app.metrics import Metrics
from stream_app.model_updates import ModelSlot
from stream_app.scoring import HeuristicRecommender
from stream_app.settings import Settings


class DownStore:
    """Redis refusing connections (after the client's retries)."""

    async def recommendations(self, user_id: str) -> None:
        raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    async def counters(self) -> dict[str, int]:
        raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")


class StalledStore:
    """Redis that takes connections but does not answer (SIGSTOPped, say)."""

    async def recommendations(self, user_id: str) -> None:
        await asyncio.sleep(30)

    async def counters(self) -> dict[str, int]:
        await asyncio.sleep(30)
        return {}


class ColdStalledStore(StalledStore):
    """Redis that answers a shopper's GET (no list: a new shopper) but then stalls on the popular items the
    baseline's new-shopper list reads."""

    async def recommendations(self, user_id: str) -> None:
        return None

    async def item_features(self, seeds, n_popular):
        await asyncio.sleep(30)


class SlowRecommender:
    """A serving model whose scoring waits behind a long batch on the stream's scoring thread."""

    model_version = "v0002"
    uses_item_activity = False  # the ensemble: it reads nothing from the store to score

    async def recommend(self, states, features):
        await asyncio.sleep(30)


def get_all(store: object, paths: list[str], slot: object = None, headers: list | None = None
            ) -> list[tuple[int, str, dict | str, float]]:
    """(status, content type, body, seconds) of a GET of each path on the worker's endpoints over ``store``;
    each answer's headers are appended to ``headers`` if given."""
    async def scenario():
        app = faust.App("test-web", web_enabled=True, env={})
        nonlocal slot
        slot = slot or types.SimpleNamespace(model_version="v0001", swaps=[], serving=None)
        web.register(app, store, Metrics(), slot, read_timeout_s=0.2)
        out = []
        async with TestClient(TestServer(app.web.web_app)) as client:
            for path in paths:
                started = time.monotonic()
                async with client.get(path) as resp:
                    kind = resp.headers["Content-Type"]
                    body = await (resp.json() if kind.startswith("application/json") else resp.text())
                    out.append((resp.status, kind, body, time.monotonic() - started))
                    if headers is not None:
                        headers.append(dict(resp.headers))
        return out
    return asyncio.run(scenario())


@pytest.mark.parametrize("store", [DownStore(), StalledStore()], ids=["down", "stalled"])
def test_redis_down_or_stalled_answers_503_in_json_promptly_with_one_warning(store, caplog) -> None:
    caplog.set_level(logging.WARNING)
    headers: list[dict[str, str]] = []
    answers = get_all(store, ["/recommendations/1000040/", "/health/"], headers=headers)
    for (status, kind, body, seconds), sent in zip(answers, headers, strict=True):
        assert (status, kind.split(";")[0], sent.get("Retry-After")) == (503, "application/json", "1")
        assert body == {"error": "the recommendation store is unavailable; try again shortly"}
        assert seconds < 2.0  # the read timeout (0.2 s here), not the client's retries
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage().split(":")[0] for r in warnings] == ["GET /recommendations/1000040/", "GET /health/"]
    assert all(r.exc_info is None for r in warnings)  # one line each, no traceback


def test_a_new_shoppers_list_read_from_a_stalled_store_answers_503_promptly() -> None:
    """The stored list's read was bounded, the new-shopper list's (the baseline reads popular items from
    Redis) was not: the page waited out the stall, then answered 404."""
    store = ColdStalledStore()
    slot = ModelSlot(HeuristicRecommender(store, Settings()))
    [(status, _, body, seconds)] = get_all(store, ["/recommendations/new-shopper/"], slot)
    assert (status, body) == (503, {"error": "the recommendation store is unavailable; try again shortly"})
    assert seconds < 2.0


def test_a_new_shoppers_list_scored_too_late_says_so_not_that_the_store_is_down(caplog) -> None:
    """The store answered (no stored list); the serving model's scoring did not finish within the bound."""
    caplog.set_level(logging.WARNING)
    slot = types.SimpleNamespace(model_version="v0002", swaps=[], serving=SlowRecommender())
    [(status, _, body, seconds)] = get_all(ColdStalledStore(), ["/recommendations/new-shopper/"], slot)
    assert (status, body) == (503, {"error": "no list for a new shopper was ready in time; try again shortly"})
    assert seconds < 2.0
    [warning] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "store" not in warning, warning


def test_metrics_answer_with_and_without_the_trailing_slash() -> None:
    answers = get_all(DownStore(), ["/metrics", "/metrics/"])
    assert [(status, kind) for status, kind, _, _ in answers] == [(200, "text/plain; version=0.0.4")] * 2
    assert all("reco_events_total" in body for _, _, body, _ in answers)


def test_the_worker_serves_no_table_data_or_worker_addresses(tmp_path) -> None:
    """Faust's built-in ``/table/<table>/<key>/`` page answers any user's history, and ``/router/`` every worker's
    address, on the worker's port (bound to 0.0.0.0 in a container): both must be off."""
    from stream_app.app import create_app

    async def scenario() -> dict[str, int]:
        app = create_app(Settings(data_dir=str(tmp_path)))
        app.web.init_server()
        async with TestClient(TestServer(app.web.web_app)) as client:
            return {path: (await client.get(path)).status for path in ["/table/", "/table/users/u1/", "/router/"]}

    assert asyncio.run(scenario()) == {"/table/": 404, "/table/users/u1/": 404, "/router/": 404}
