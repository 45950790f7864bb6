"""Fraud alerts from the stream: an injected (synthetic) bot gets exactly one alert and trains nothing."""

from __future__ import annotations

import asyncio
import json

import pytest

from models.data.eventlog import read_events
from models.data.events import Event
from stream_app.replay.producer import order_for_replay, replay
from stream_app.worker_process import wait_for_events
from tests.integration.conftest import SAMPLE, consume, redis_store

pytestmark = pytest.mark.integration
BOT = "synthetic-bot-1"


def bot_events(real: list[Event]) -> list[Event]:
    """Synthetic: a bot viewing 5 real items every 10.000 s, 30 times, inside one 10-minute window."""
    t0 = (int(min(e.ts for e in real)) // 600 + 10) * 600 + 5
    items = sorted({e.item_id for e in real})[:5]
    return [Event(BOT, items[i % 5], "view", t0 + 10.0 * i) for i in range(30)]


def test_a_bot_gets_one_alert_and_no_training_samples(stack, settings, start_worker):
    real = order_for_replay(read_events(SAMPLE / "taobao_user_behavior.csv", "taobao"))
    bot = bot_events(real)
    worker = start_worker(settings)

    async def scenario():
        async with redis_store(settings) as store:
            await replay(real, bootstrap=stack.bootstrap, topic=settings.events_topic, progress=False)
            await wait_for_events(store, len(real), worker)
            await replay(bot, bootstrap=stack.bootstrap, topic=settings.events_topic, progress=False)
            counters = await wait_for_events(store, len(real) + len(bot), worker)
            alerts = await consume(stack.bootstrap, settings.alerts_topic, 1, timeout_s=10)
            await asyncio.sleep(2 * settings.sample_holdback_s)  # held samples leave (or are dropped)
            counters = await store.counters()
            samples = await consume(stack.bootstrap, settings.training_samples_topic, len(real))  # + any extra
            return counters, alerts, samples, await store.recommendations(BOT)

    counters, alerts, samples, bot_recs = asyncio.run(scenario())
    assert counters["processed"] == len(real) + len(bot)
    assert len(alerts) == 1  # one alert for the bot, none for the 43 real shoppers
    alert = json.loads(alerts[0].value)
    assert (alert["entity_type"], alert["entity_id"], alert["detector"]) == ("user", BOT, "regular_timing")
    assert alert["evidence"] and alert["expires_ts"] > alert["event_ts"]
    # the bot's events after the alert's batch are quarantined at once; earlier ones are dropped when released
    assert counters["quarantined"] + counters.get("samples_dropped", 0) == len(bot)
    users = [json.loads(m.value)["user_id"] for m in samples]
    assert BOT not in users and len(users) == len(real)  # every real event trains, no bot event does
    assert bot_recs is not None and len(bot_recs["items"]) > 0  # quarantined users still get recommendations
