"""An event near the broker's message limit is dead-lettered (cut, and saying so), and the worker carries on."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from stream_app.records import DEAD_LETTER_MAX_BYTES
from stream_app.worker_process import wait_for_events
from tests.integration.conftest import consume, redis_store

pytestmark = pytest.mark.integration


def test_an_event_too_big_for_a_dead_letter_is_cut_and_the_partition_goes_on(stack, settings, start_worker):
    worker = start_worker()
    # synthetic: a 1,000,010-byte event (Kafka takes messages up to about 1 MiB; Faust's producer sends at most
    # 1,000,000 bytes, so this one, sent back unchanged with headers, would not fit), then a normal one
    huge = orjson.dumps({"user_id": "u-huge", "item_id": "i1", "event_type": "view", "ts": 1.7e9,
                         "note": "x" * 999_927})
    assert len(huge) == 1_000_010
    normal = orjson.dumps({"user_id": "u-huge", "item_id": "i2", "event_type": "click", "ts": 1.7e9 + 1})

    async def scenario():
        producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, max_request_size=2_000_000)
        await producer.start()
        try:
            for value in (huge, normal):
                await producer.send_and_wait(settings.events_topic, value, key=b"u-huge")
        finally:
            await producer.stop()
        async with redis_store(settings) as store:
            counters = await wait_for_events(store, 2, worker, stall_s=30.0)
            record = await store.recommendations("u-huge")
        dead = await consume(stack.bootstrap, settings.dead_letter_topic, expected=1)
        return counters, record, dead

    counters, record, dead = asyncio.run(scenario())
    assert {k: counters.get(k) for k in ("events_in", "processed", "rejected")} == \
        {"events_in": 2, "processed": 1, "rejected": 1}
    assert record is not None and record["events_seen"] == 1  # the event after it was processed
    [letter] = dead
    headers = dict(letter.headers)
    assert headers["dlq-reason"] == b"oversize" and headers["dlq-truncated"] == b"true"
    assert headers["dlq-original-bytes"] == b"1000010" and headers["source-offset"] == b"0"
    assert letter.value == huge[:DEAD_LETTER_MAX_BYTES]
