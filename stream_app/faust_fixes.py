"""Fixes for two Faust races that drop events when a worker resumes after table recovery.

Both are in faust-streaming 0.15.3's consumer and recovery code, which does
not depend on the broker (so Apache Kafka should be affected too; only the
embedded broker was run here). Both lose events for good, because the
consumer's position has already moved past them.

1. **Queued events thrown away.** After restoring tables, Faust
   (``Recovery.on_recovery_completed`` and ``Recovery._resume_streams``)
   resumes the source partitions, *then* awaits the seek to their committed
   offsets, *then* resumes flow control, and resuming flow control empties
   every stream queue (mode's ``FlowControlEvent.resume``). Events fetched
   during the seek and still queued at that moment are thrown away; the
   seek's re-fetch of them arrives later and is dropped as already read.
   Seen here as 1 event lost in 4 of 38 SIGKILL restarts (upstream issue #596
   describes the same clearing). Fix: keep the source partitions paused until
   the consumer's flow resumes, which both code paths do right after the
   queues are emptied, so nothing is fetched before the seek is done.

2. **An empty partition set read as "all partitions".** The fetcher hands
   its *live* set of active partitions to aiokafka's ``fetched_records`` in
   the consumer thread, and aiokafka returns the records of every partition
   when that set is empty. When the set empties during the long poll (table
   recovery pauses the changelogs before the sources resume), the records of
   paused source partitions come back and Faust's ``getmany`` discards them
   as not active. Fix 1 made that window longer (6 failures in 38 restarts,
   mostly whole partitions lost); the fix takes a snapshot of the set and
   fetches nothing when it is empty.

``resume_partitions`` for changelog partitions (table recovery itself) is
unchanged. Found with per-batch offset logs and a log of aiokafka's positions;
see the README ("Faust: events dropped when a worker resumes after recovery").
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP

log = logging.getLogger(__name__)


def install() -> None:
    """Patch Faust's consumer (idempotent)."""
    if getattr(Consumer, "_resume_after_flow", False):
        return
    _resume_sources_after_flow()
    _fetch_only_active_partitions()
    Consumer._resume_after_flow = True


def _resume_sources_after_flow() -> None:
    """Fix 1: hold source partitions resumed before the flow resumes until it does."""
    resume_partitions = Consumer.resume_partitions
    resume_flow = Consumer.resume_flow

    def deferring_resume_partitions(self: Consumer, tps: Iterable[TP]) -> None:
        tps = set(tps)
        sources = {tp for tp in tps if not self._is_changelog_tp(tp)}
        if sources:
            pending = self.__dict__.setdefault("_sources_to_resume", set())
            pending |= sources
            log.info("holding %d source partitions until the flow resumes", len(sources))
        resume_partitions(self, tps - sources)

    def resume_flow_then_sources(self: Consumer) -> None:
        resume_flow(self)
        pending = self.__dict__.pop("_sources_to_resume", None)
        if pending:  # a rebalance in between may have taken some away
            assigned = pending & self.assignment()
            resume_partitions(self, assigned)
            log.info("resumed %d source partitions (%d no longer assigned)", len(assigned), len(pending - assigned))

    Consumer.resume_partitions = deferring_resume_partitions
    Consumer.resume_flow = resume_flow_then_sources


def _fetch_only_active_partitions() -> None:
    """Fix 2: fetch from a snapshot of the active partitions, and nothing when there are none."""
    fetch_records = AIOKafkaConsumerThread._fetch_records

    async def fetch_snapshot(self: AIOKafkaConsumerThread, consumer: Any, active_partitions: Any,
                             timeout: float | None = None, max_records: int | None = None) -> Any:
        if active_partitions is not None:  # None: a client-only app reads everything it subscribed to
            active_partitions = set(active_partitions)
            if not active_partitions:
                return {}
        return await fetch_records(self, consumer, active_partitions, timeout=timeout, max_records=max_records)

    AIOKafkaConsumerThread._fetch_records = fetch_snapshot
