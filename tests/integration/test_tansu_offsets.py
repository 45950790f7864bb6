"""The embedded broker's end offsets are wrong; the work-around reads the Fetch high watermark."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from stream_app.kafka_admin import ensure_topics
from stream_app.tansu_compat import fetch_high_watermarks

pytestmark = pytest.mark.integration


def test_high_watermark_corrects_tansu_end_offsets(stack):
    topic = f"offsets-{uuid.uuid4().hex[:8]}"
    tp = TopicPartition(topic, 0)

    async def scenario():
        await ensure_topics(stack.bootstrap, [topic], partitions=1)
        producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, linger_ms=50)
        await producer.start()
        try:
            futures = [await producer.send(topic, b"v%d" % i, partition=0) for i in range(10)]
            await producer.flush()
            await asyncio.gather(*futures)  # one batch of 10 records
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=stack.bootstrap, group_id=None)
        await consumer.start()
        try:
            reported = await consumer.end_offsets([tp])
        finally:
            await consumer.stop()
        return reported[tp], (await fetch_high_watermarks(stack.bootstrap, reported))[tp]

    reported, corrected = asyncio.run(scenario())
    # tansu: base offset of the last batch + 1. If this starts failing, tansu was fixed and
    # stream_app/tansu_compat.py can go.
    assert reported == 1
    assert corrected == 10
