"""The item agent: item activity (re-partitioned by item) -> item stats table -> shared store."""

from __future__ import annotations

import logging
import math
import time

import faust
import orjson

from stream_app.agents.batching import each_batch
from stream_app.item_view import restore_item_view
from stream_app.settings import Settings
from stream_app.sinks.base import Store
from stream_app.state import ItemActivity, apply_item_activity, readable_stats
from stream_app.tables import Tables
from stream_app.topics import Topics

log = logging.getLogger(__name__)
ITEM_VIEW_CHECK_S = 5.0  # how often a batch first checks that the shared item view holds this worker's partitions


def read_activity(value: bytes | None, partition: int, offset: int, key: bytes | None = None
                  ) -> ItemActivity | None:
    """One item-activity message, or None (logged) if it cannot be read: only workers write the topic, so
    that is a bug, and stopping the worker on it would stop it again at every restart. Its key (the item)
    must be UTF-8, and its popularity and weights finite numbers, or applying it would raise later."""
    try:
        if key is None:
            raise ValueError("no key (the item id)")
        key.decode("utf-8")
        act = ItemActivity.from_wire(orjson.loads(value or b""))
        if any(not _finite(w) for w in act.neighbors.values()) or not (
                act.popularity == float("-inf") or _finite(act.popularity)):
            raise ValueError("a popularity or neighbour weight that is not a finite number")
        return act
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError) as exc:  # UnicodeDecodeError too
        log.error("unreadable item activity at partition %d offset %d ignored: %s", partition, offset, exc)
        return None


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def register(app: faust.App, topics: Topics, tables: Tables, store: Store, settings: Settings) -> None:
    """Attach the ``item-stats`` agent to ``app``."""
    activity_topic = topics.item_activity.get_topic_name()

    next_view_check = 0.0

    async def handle(events: list) -> None:
        nonlocal next_view_check
        if time.monotonic() >= next_view_check:  # before this batch's writes, so none is overwritten by older
            next_view_check = time.monotonic() + ITEM_VIEW_CHECK_S
            held = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == activity_topic}
            await restore_item_view(store, tables.items, held, settings.partitions,
                                    settings.covis_max_neighbors)
        touched: dict[bytes, dict] = {}
        for e in events:
            act = read_activity(e.value, e.message.partition, e.message.offset, e.message.key)
            if act is None:
                continue
            key = e.message.key
            current = touched.get(key) or tables.items.get(key)
            touched[key] = apply_item_activity(current, act, settings.covis_max_neighbors)
        for key, stats in touched.items():
            tables.items[key] = stats
        await store.publish_item_stats({k.decode(): readable_stats(v, settings.covis_max_neighbors)
                                        for k, v in touched.items()})

    @app.agent(topics.item_activity, name="item-stats")
    async def item_stats(stream: faust.StreamT) -> None:
        await store.start()
        await each_batch(app, stream, settings.max_batch, settings.max_wait_s, handle)
