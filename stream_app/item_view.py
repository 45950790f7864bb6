"""Bring back the shared item view (Redis) from the item-stats table after Redis lost it.

The table is the durable copy (changelog-backed); Redis holds what readers
read. Each item-stats partition is marked in Redis once all its items are
there (``{prefix}:items:published``). A Redis that restarts empty has lost the
marks with the items, so the worker holding a partition finds it unmarked and
publishes the partition's items again from its table, before its next batch
(``restore_item_view``): popularity and co-visitation come back at once, not
item by item as each is touched again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from stream_app.sinks.base import Store
from stream_app.state import readable_stats
from stream_app.touches import partition_of_bytes

log = logging.getLogger(__name__)
CHUNK = 1_000  # items per write


async def restore_item_view(store: Store, table: Mapping[bytes, Mapping[str, Any] | None], held: set[int],
                            partitions: int, max_neighbors: int) -> int:
    """Publish every item (``table``: item id bytes -> stats) of the ``held`` partitions the store does not have
    marked as published, then mark them; returns how many items were published."""
    missing = await store.unpublished_item_partitions(held)
    if not missing:
        return 0
    keys = list(table.keys())  # in one go: a standby's changelog reader may add keys while this yields
    published = 0
    for start in range(0, len(keys), CHUNK):
        # ~2.5 us of hashing per key: a slice at a time, so the worker's loop (heartbeats, HTTP) runs between
        chunk = {key.decode(): readable_stats(stats, max_neighbors) for key in keys[start:start + CHUNK]
                 if partition_of_bytes(key, partitions) in missing and (stats := table.get(key)) is not None}
        if chunk:
            await store.publish_item_stats(chunk)
            published += len(chunk)
        await asyncio.sleep(0)
    await store.mark_items_published(missing)
    if published:
        log.warning("the shared item view lacked item-stats partitions %s (a Redis that restarted empty?): "
                    "%d items published again from the table", sorted(missing), published)
    return published
