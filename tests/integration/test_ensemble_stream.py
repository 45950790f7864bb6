"""The trained ensemble scores the stream: model version, contributions, exclusions, HTTP."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections import defaultdict
from dataclasses import replace

import pytest

from models.data.eventlog import read_events
from stream_app.model_scoring import model_version
from stream_app.replay.producer import replay_file
from stream_app.worker_process import wait_for_events
from tests.integration.conftest import SAMPLE, SCORERS, redis_store

pytestmark = pytest.mark.integration


def test_ensemble_recommendations_reach_redis(stack, settings, start_worker, checkpoint):
    settings = replace(settings, model_path=str(checkpoint))
    version = model_version(json.loads((checkpoint / "meta.json").read_text()))
    events = read_events(SAMPLE / "taobao_user_behavior.csv", "taobao")
    bought = defaultdict(set)
    for e in events:
        if e.event_type == "purchase":
            bought[e.user_id].add(e.item_id)
    worker = start_worker(settings)

    async def scenario():
        async with redis_store(settings) as store:
            sent = await replay_file(str(SAMPLE / "taobao_user_behavior.csv"), "taobao",
                                     bootstrap=stack.bootstrap, topic=settings.events_topic, progress=False)
            counters = await wait_for_events(store, sent.sent, worker)
            return counters, {u: await store.recommendations(u) for u in {e.user_id for e in events}}

    counters, records = asyncio.run(scenario())
    assert counters["processed"] == len(events)
    for user, rec in records.items():
        assert rec["model_version"] == version
        assert len(rec["items"]) == 10
        assert all(set(i["contributions"]) == set(SCORERS) for i in rec["items"])
        assert not bought[user] & {i["item_id"] for i in rec["items"]}, user  # already bought: excluded
    assert sum(bool(b) for b in bought.values()) >= 10  # the exclusion was really exercised

    url = f"http://127.0.0.1:{settings.web_port}/recommendations/{next(iter(records))}/"
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert json.loads(resp.read())["model_version"] == version
    # a shopper the stream has not seen gets the serving model's list for an empty history
    with urllib.request.urlopen(url.replace(next(iter(records)), "nobody"), timeout=5) as resp:
        cold = json.loads(resp.read())
    assert cold["fallback"] == "no_history" and cold["model_version"] == version and len(cold["items"]) == 10
