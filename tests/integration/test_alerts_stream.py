"""Fraud alerts from the stream: an injected (synthetic) bot gets exactly one alert and trains nothing."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from models.anomaly.alerts import Alert
from models.data.eventlog import read_events
from models.data.events import Event
from stream_app.replay.producer import order_for_replay, replay
from stream_app.worker_process import metric_samples, wait_for_events
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
    assert counters.get("samples_released_before_alert", 0) == 0  # the hold covered the alert
    assert bot_recs is not None and len(bot_recs["items"]) > 0  # quarantined users still get recommendations


def test_samples_that_left_before_their_alert_are_counted(stack, settings, start_worker):
    """With no hold, the synthetic bot's first 8 views (at least) train before its 13th raises the alert:
    every one of them is counted."""
    real = order_for_replay(read_events(SAMPLE / "taobao_user_behavior.csv", "taobao"))
    bot = bot_events(real)
    settings = replace(settings, sample_holdback_s=0.0)
    worker = start_worker(settings)

    async def scenario():
        async with redis_store(settings) as store:
            kw = dict(bootstrap=stack.bootstrap, topic=settings.events_topic, progress=False)
            await replay(real + bot[:8], **kw)
            await wait_for_events(store, len(real) + 8, worker)
            await replay(bot[8:], **kw)
            await wait_for_events(store, len(real) + len(bot), worker)
            await consume(stack.bootstrap, settings.alerts_topic, 1, timeout_s=10)
            samples = await consume(stack.bootstrap, settings.training_samples_topic, len(real) + 8)
            late = metric_samples(settings.web_port, "reco_samples_released_before_alert")
            return await store.counters(), samples, late

    counters, samples, late = asyncio.run(scenario())
    trained = sum(json.loads(m.value)["user_id"] == BOT for m in samples)  # 8, and any of the next 4 in
    assert 8 <= trained < 13 and counters["samples_released_before_alert"] == trained  # batches before the 13th
    assert counters["quarantined"] == len(bot) - trained
    shown = {s.labels["detector"]: s.value for s in late if s.name.endswith("_total")}
    assert {d: v for d, v in shown.items() if v} == {"regular_timing": trained}  # what Prometheus shows, by detector
    assert "rate_burst" in shown  # every detector's series is there from the start, at 0


def test_detection_survives_a_worker_crash(stack, settings, start_worker):
    """8 of a synthetic bot's 14 regular views before SIGKILL, 6 after: only the recovered state sees 13 gaps."""
    real = order_for_replay(read_events(SAMPLE / "taobao_user_behavior.csv", "taobao"))
    # regular_timing decides on 12 gaps; neither part alone has them. The bot comes after the real
    # shoppers in event time: the monitor expires states idle for longer than a window behind the
    # newest event time it has seen, and here the partitions are consumed side by side
    span = (int(max(e.ts for e in real) - min(e.ts for e in real)) // 600 + 1) * 600
    bot = [replace(e, ts=e.ts + span) for e in bot_events(real)[:14]]

    async def scenario():
        async with redis_store(settings) as store:
            kw = dict(bootstrap=stack.bootstrap, topic=settings.events_topic, progress=False)
            worker = start_worker(settings)
            await replay(real + bot[:8], **kw)
            await wait_for_events(store, len(real) + 8, worker, counted=("processed",))
            worker.kill()
            await replay(bot[8:], **kw)
            worker = start_worker(settings)
            await wait_for_events(store, len(real) + len(bot), worker, counted=("processed",))
            alerts = await consume(stack.bootstrap, settings.alerts_topic, 1, timeout_s=10)
            return await store.counters(), alerts

    counters, alerts = asyncio.run(scenario())
    assert counters["processed"] == len(real) + len(bot)
    assert [(a["entity_id"], a["detector"]) for a in map(json.loads, (m.value for m in alerts))] == [
        (BOT, "regular_timing")]


async def wait_committed(bootstrap: str, group: str, topic: str, holds: Callable[[list], bool],
                         timeout_s: float = 30.0) -> None:
    """Wait until ``group`` has committed past the first message of ``topic`` whose JSON value ``holds``."""
    reader = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                              enable_auto_commit=False)
    offsets = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await reader.start()
    await offsets.start()
    try:
        deadline = time.monotonic() + timeout_s
        found = None
        while found is None and time.monotonic() < deadline:
            batches = await reader.getmany(timeout_ms=200)
            found = next((m for msgs in batches.values() for m in msgs if holds(json.loads(m.value))), None)
        assert found is not None, f"no such message in {topic}"
        tp = TopicPartition(topic, found.partition)
        while ((await offsets.committed(tp)) or 0) <= found.offset:
            assert time.monotonic() < deadline, f"{group} never committed {topic} past {found.offset}"
            await asyncio.sleep(0.2)
    finally:
        await reader.stop()
        await offsets.stop()


def test_a_shilling_campaign_survives_a_worker_restart(stack, settings, start_worker):
    """16 synthetic new accounts push one real item, 8 before the worker stops and 8 after: the detector
    alerts at 10, so only the item-anomalies agent's recovered table sees the campaign."""
    real = order_for_replay(read_events(SAMPLE / "taobao_user_behavior.csv", "taobao"))
    target = real[0].item_id
    start = max(e.ts for e in real) + 86_400.0
    shills = [Event(f"synthetic-shill-{n}", target, "add_to_cart", start + 150.0 * n) for n in range(16)]

    async def scenario():
        async with redis_store(settings) as store:
            kw = dict(bootstrap=stack.bootstrap, topic=settings.events_topic, progress=False)
            worker = start_worker(settings)
            await replay(real[:-20] + shills[:8], **kw)
            await wait_for_events(store, len(real) - 20 + 8, worker, counted=("processed",))
            # a batch is acked when the next is taken: later touches let the item agent commit the campaign's,
            # which would otherwise be delivered again after the restart (and seen whole without any table)
            await replay(real[-20:], **kw)
            await wait_committed(stack.bootstrap, settings.app_id, settings.item_touches_topic,
                                 lambda rows: any(row[1] == shills[7].user_id for row in rows))
            assert worker.stop() == 0  # a deploy
            await replay(shills[8:], **kw)
            worker = start_worker(settings)
            await wait_for_events(store, len(real) + len(shills), worker, counted=("processed",))
            alerts = await consume(stack.bootstrap, settings.alerts_topic, 1 + len(shills), timeout_s=15)
            return [(a["entity_type"], a["entity_id"], a["detector"]) for a in (json.loads(m.value) for m in alerts)]

    named = asyncio.run(scenario())
    assert named.count(("item", target, "shilling")) == 1, named
    members = [entity for _, entity, detector in named if detector == "shilling_member"]
    assert sorted(members) == sorted(e.user_id for e in shills)  # each account once, whichever side of the stop
    assert {entity for _, entity, _ in named} == set(members) | {target}  # no real shopper alerted


def test_a_starting_worker_applies_the_alerts_in_force_before_its_first_event(stack, settings, start_worker):
    """A restarted worker re-reads the alerts topic: its events wait until it has, so items quarantined
    before it started train nothing even with no sample hold. The topic holds 50,000 synthetic alerts
    (on synthetic items) before the ones that matter, on the items of the log's first 20 events, so
    reading it takes a while (before, the first batches were processed meanwhile and trained them)."""
    real = order_for_replay(read_events(SAMPLE / "taobao_user_behavior.csv", "taobao"))
    items = {e.item_id for e in real[:20]}
    touches = sum(e.item_id in items for e in real)
    settings = replace(settings, sample_holdback_s=0.0)
    far = max(e.ts for e in real) + 86_400.0

    def alert(item: str) -> bytes:
        return json.dumps(Alert("item", item, "shilling", "high", 9.0, 0.0, 600.0, 0.0, {},
                                expires_ts=far).to_dict()).encode()

    async def fill_alerts() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, linger_ms=20)
        await producer.start()
        try:
            sent = [await producer.send(settings.alerts_topic, alert(f"synthetic-item-{n}")) for n in range(50_000)]
            sent += [await producer.send(settings.alerts_topic, alert(item)) for item in sorted(items)]
            await asyncio.gather(*sent)
        finally:
            await producer.stop()

    async def scenario():
        async with redis_store(settings) as store:
            await fill_alerts()
            await replay(real, bootstrap=stack.bootstrap, topic=settings.events_topic, progress=False)
            worker = start_worker(settings)
            counters = await wait_for_events(store, len(real), worker)
            samples = await consume(stack.bootstrap, settings.training_samples_topic, len(real) - touches)
            return counters, samples

    counters, samples = asyncio.run(scenario())
    assert counters["processed"] == len(real) and touches >= 20
    trained = Counter(json.loads(m.value)["target"] for m in samples)
    assert sum(trained[item] for item in items) == 0 and len(samples) == len(real) - touches  # the others train
    assert counters["quarantined"] == touches
