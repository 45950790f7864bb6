"""Replay a historical log into the events topic.

Events are sent in event-time order (a stable sort, so each user's order is
kept) and keyed by user, so every user's events land on one partition in
order. ``speed=None`` sends as fast as possible; ``speed=60`` replays an hour
of event time per minute. Lines a reader cannot parse are sent verbatim
(unkeyed) so that the stream rejects them to the dead-letter topic.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass

import orjson
from aiokafka import AIOKafkaProducer
from tqdm import tqdm

from models.data.eventlog import BadLine, read_log
from models.data.events import Event


@dataclass(frozen=True)
class ReplaySummary:
    sent: int
    events: int
    bad_lines: int
    users: int
    seconds: float
    first_ts: float | None
    last_ts: float | None

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else float("inf")

    def __str__(self) -> str:
        return (f"replayed {self.sent} messages ({self.events} events from {self.users} users, "
                f"{self.bad_lines} unparseable lines) in {self.seconds:.2f} s = {self.rate:,.0f} msg/s")


def order_for_replay(records: Iterable[Event | BadLine]) -> list[Event | BadLine]:
    """Events sorted by event time (stable: ties keep file order); bad lines last."""
    records = list(records)
    events = [r for r in records if isinstance(r, Event)]
    bad = [r for r in records if isinstance(r, BadLine)]
    events.sort(key=lambda e: e.ts)
    return [*events, *bad]


def encode(record: Event | BadLine) -> tuple[bytes | None, bytes]:
    """(key, value) of the Kafka message for one record."""
    if isinstance(record, BadLine):
        return None, record.text.encode("utf-8", "surrogateescape")
    return record.user_id.encode(), orjson.dumps(record.to_dict())


async def replay(
    records: Iterable[Event | BadLine],
    *,
    bootstrap: str,
    topic: str,
    speed: float | None = None,
    progress: bool = True,
    limit: int | None = None,
) -> ReplaySummary:
    """Produce ``records`` to ``topic``; returns counts and timing."""
    ordered = order_for_replay(records)[:limit]
    events = [r for r in ordered if isinstance(r, Event)]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    start = time.monotonic()
    try:
        t0 = events[0].ts if events else 0.0
        pending = []
        for rec in tqdm(ordered, desc="replay", unit="ev", disable=not progress, mininterval=0.5):
            if speed and isinstance(rec, Event):
                delay = (rec.ts - t0) / speed - (time.monotonic() - start)
                if delay > 0:
                    await asyncio.sleep(delay)
            key, value = encode(rec)
            pending.append(await producer.send(topic, value=value, key=key))
        await producer.flush()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return ReplaySummary(
        sent=len(ordered), events=len(events), bad_lines=len(ordered) - len(events),
        users=len({e.user_id for e in events}), seconds=time.monotonic() - start,
        first_ts=events[0].ts if events else None, last_ts=events[-1].ts if events else None,
    )


async def replay_file(path: str, fmt: str, **kwargs) -> ReplaySummary:
    """Read a log in ``fmt`` and replay it (see ``replay``)."""
    return await replay(read_log(path, fmt), **kwargs)
