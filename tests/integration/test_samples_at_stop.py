"""A worker stopped (SIGTERM) while it holds training samples sends them first: the trainer misses none."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest

from models.data.eventlog import read_events
from stream_app.replay.producer import order_for_replay, replay
from stream_app.worker_process import wait_for_events
from tests.integration.conftest import SAMPLE, consume, redis_store

pytestmark = pytest.mark.integration


def test_a_stopping_worker_sends_its_held_samples_and_the_sample_counts_add_up(stack, settings, start_worker):
    # samples are held 3 s: when every event has been counted, the newest samples are still in the hold
    settings = replace(settings, sample_holdback_s=3.0, log_level="info")
    events = order_for_replay(read_events(SAMPLE / "taobao_user_behavior.csv", "taobao"))

    async def scenario():
        async with redis_store(settings) as store:
            worker = start_worker(settings)
            await replay(events, bootstrap=stack.bootstrap, topic=settings.events_topic, progress=False)
            await wait_for_events(store, len(events), worker)
            held = await store.counters()
            started = time.monotonic()
            assert worker.stop() == 0, worker.log()[-3000:]
            stop_s = time.monotonic() - started
            counters = await store.counters()
        expected = counters["processed"] - counters.get("quarantined", 0)
        samples = await consume(stack.bootstrap, settings.training_samples_topic, expected, timeout_s=15)
        return held, counters, samples, stop_s, worker.log()

    held, counters, samples, stop_s, log = asyncio.run(scenario())
    expected = counters["processed"] - counters.get("quarantined", 0)
    # the stop came while samples were held (without the drain they were lost: fewer sent than expected)
    assert held.get("samples_sent", 0) < expected, held
    # every trainable event's sample reached the topic (``consume`` reads on past the expected count, so
    # one sent twice shows too), and the counters say so
    assert counters.get("samples_lost", 0) == 0, log[-3000:]
    assert expected == counters.get("samples_sent", 0) + counters.get("samples_dropped", 0), counters
    assert len(samples) == counters.get("samples_sent", 0), counters
    assert "training samples held, sent in" in log
    assert stop_s < 20, stop_s
