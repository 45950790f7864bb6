"""A worker refuses to start on an events topic whose partition count is not RECO_PARTITIONS."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from stream_app.kafka_admin import ensure_topics, partition_counts
from tests.integration.test_redis_outage import exit_code

pytestmark = pytest.mark.integration


def test_a_worker_refuses_an_events_topic_with_another_partition_count(stack, settings, start_worker):
    """Users are placed by the partition count (their events, their state's changelog): a topic with
    another count would dead-letter most events as wrong_partition, so the worker says so and stops."""
    two = replace(settings, events_topic=f"{settings.events_topic}-two",
                  item_touches_topic=f"{settings.item_touches_topic}-new")
    asyncio.run(ensure_topics(stack.bootstrap, [two.events_topic], 2))
    worker = start_worker(two)
    code = asyncio.run(exit_code(worker.process, 60.0))
    assert code == 2, worker.log()[-3000:]
    assert f"topic '{two.events_topic}' has 2 partitions" in worker.log()
    assert f"RECO_PARTITIONS is {two.partitions}" in worker.log()
    # the topics it would have used and that did not exist were created with RECO_PARTITIONS
    assert asyncio.run(partition_counts(stack.bootstrap, [two.item_touches_topic])) == {
        two.item_touches_topic: two.partitions}
