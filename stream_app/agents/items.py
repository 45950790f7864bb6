"""The item agent: item activity (re-partitioned by item) -> item stats table -> shared store."""

from __future__ import annotations

import faust
import orjson

from stream_app.agents.batching import take_batches
from stream_app.settings import Settings
from stream_app.sinks.base import Store
from stream_app.state import ItemActivity, apply_item_activity
from stream_app.tables import Tables
from stream_app.topics import Topics


def register(app: faust.App, topics: Topics, tables: Tables, store: Store, settings: Settings) -> None:
    """Attach the ``item-stats`` agent to ``app``."""

    @app.agent(topics.item_activity, name="item-stats")
    async def item_stats(stream: faust.StreamT) -> None:
        await store.start()
        async for events in take_batches(stream, settings.max_batch, settings.max_wait_s):
            touched: dict[bytes, dict] = {}
            for e in events:
                key = e.message.key
                current = touched.get(key) or tables.items.get(key)
                act = ItemActivity.from_wire(orjson.loads(e.value))
                touched[key] = apply_item_activity(current, act, settings.covis_max_neighbors)
            for key, stats in touched.items():
                tables.items[key] = stats
            await store.publish_item_stats({k.decode(): v for k, v in touched.items()})
