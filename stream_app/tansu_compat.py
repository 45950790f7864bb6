"""Work-arounds for the embedded tansu broker: wrong end offsets, and Fetch waits that do not end early.

tansu answers ListOffsets(LATEST) with the base offset of the partition's last
record batch + 1, not the offset after its last record, so ``end_offsets()``
is too low whenever the last batch holds several records. Faust reads table
changelogs up to that offset on recovery and stops early, losing the newest
state. The high watermark in Fetch responses is right, so for the embedded
broker only we ask a throw-away consumer to fetch each partition once and take
that watermark. Apache Kafka never needs this; it stays off unless
``RECO_EMBEDDED_BROKER`` is set.

A Fetch that finds no data waits ``fetch_max_wait_ms``; Kafka answers it as
soon as a record arrives, tansu only when the wait is over (measured here:
median delivery 384 ms at 1,500 ms, 127 ms at 500, 6 ms at 20). Faust
hard-codes 1,500 ms for its worker consumer; ``set_fetch_max_wait`` makes it
``Settings.fetch_max_wait_ms`` (on either broker).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

log = logging.getLogger(__name__)


async def fetch_high_watermarks(
    bootstrap: str, reported: Mapping[TopicPartition, int], timeout_s: float = 10.0
) -> dict[TopicPartition, int]:
    """The true end offset of each partition, from Fetch high watermarks."""
    if not reported:
        return {}
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=20
    )
    await consumer.start()
    try:
        tps = list(reported)
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, max(reported[tp] or 0, 0))
        deadline = time.monotonic() + timeout_s
        while any(consumer.highwater(tp) is None for tp in tps):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no fetch response for {tps} within {timeout_s} s")
            await consumer.getmany(timeout_ms=50)
        return {tp: max(reported[tp] or 0, consumer.highwater(tp)) for tp in tps}
    finally:
        await consumer.stop()


def install(bootstrap: str) -> None:
    """Make Faust's aiokafka driver use Fetch high watermarks as end offsets."""
    from faust.transport.drivers import aiokafka as driver

    thread_cls = driver.AIOKafkaConsumerThread
    if getattr(thread_cls, "_tansu_compat", False):
        return
    original = thread_cls._highwaters

    async def _highwaters(self: driver.AIOKafkaConsumerThread, partitions: Sequence[TopicPartition]):
        reported = await original(self, partitions)
        if self.consumer.in_transaction:
            return reported
        fixed = await fetch_high_watermarks(bootstrap, reported)
        if fixed != dict(reported):
            log.info("tansu end offsets corrected from Fetch high watermarks: %s",
                     {f"{tp.topic}[{tp.partition}]": (reported[tp], fixed[tp])
                      for tp in fixed if fixed[tp] != reported[tp]})
        return fixed

    thread_cls._highwaters = _highwaters
    thread_cls._tansu_compat = True


def set_fetch_max_wait(fetch_max_wait_ms: int) -> None:
    """Make Faust's worker consumer block at most ``fetch_max_wait_ms`` on a Fetch without data."""
    from faust.transport.drivers import aiokafka as driver

    thread_cls = driver.AIOKafkaConsumerThread
    original = getattr(thread_cls, "_faust_create_worker_consumer", thread_cls._create_worker_consumer)

    def _create_worker_consumer(self: driver.AIOKafkaConsumerThread, transport):  # type: ignore[no-untyped-def]
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = fetch_max_wait_ms  # read by start(), which has not run yet
        return consumer

    thread_cls._faust_create_worker_consumer = original
    thread_cls._create_worker_consumer = _create_worker_consumer


def bootstrap_from_url(kafka_url: str) -> str:
    """``kafka://h:p;kafka://h2:p2`` -> ``h:p,h2:p2``."""
    return ",".join(u.split("://", 1)[-1] for u in kafka_url.replace(";", ",").split(","))



