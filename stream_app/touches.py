"""Item touches: each event, with its user's anomaly context, re-keyed by item for the item-keyed detectors.

A worker sees only its partitions' users, so it cannot see all of an item's
traffic; the shilling detector needs exactly that. The events agent sends
every observed event's touch (the event and its user's ``UserContext``) to
the item-touches topic, one message per topic partition and micro-batch
(each touch goes where Kafka's default partitioner would put its item id,
so one item's touches always reach the same agent instance), and the
item-anomalies agent runs the item-keyed detectors over them. Its alerts
return to every worker through the alerts topic (``follow_alerts``), whose
monitors then keep the quarantined items and users out of training.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from aiokafka.partitioner import murmur2

from models.anomaly.base import UserContext
from models.data.events import Event

Touch = list[Any]  # [item_id, user_id, event_type, ts, price, first_seen_ts, flagged]


def touch(event: Event, context: UserContext) -> Touch:
    """One event's touch in wire form (compact: a list, not a dict)."""
    return [event.item_id, event.user_id, event.event_type, event.ts, event.price,
            context.first_seen_ts, int(context.flagged)]


def from_touch(row: Touch) -> tuple[Event, UserContext]:
    """The event and user context of a touch; raises ``ValueError``/``TypeError`` on a malformed one."""
    item, user, kind, ts, price, first_seen, flagged = row
    event = Event(user_id=str(user), item_id=str(item), event_type=str(kind), ts=float(ts),
                  price=None if price is None else float(price))
    return event, UserContext(float(first_seen), bool(flagged))


def partition_of(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` (murmur2, as the Java client)."""
    return partition_of_bytes(key.encode(), partitions)


def partition_of_bytes(key: bytes, partitions: int) -> int:
    """``partition_of`` for a key already encoded."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def by_partition(touches: Iterable[Touch], partitions: int) -> dict[int, list[Touch]]:
    """Touches grouped by their item's partition, in order within each."""
    out: dict[int, list[Touch]] = defaultdict(list)
    for row in touches:
        out[partition_of(row[0], partitions)].append(row)
    return out
