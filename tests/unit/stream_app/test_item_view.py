"""The shared item view comes back from the item-stats table after the store lost it."""

from __future__ import annotations

import asyncio

from stream_app.item_view import CHUNK, restore_item_view
from stream_app.sinks.memory import MemoryStore
from stream_app.touches import partition_of

PARTITIONS = 4


def table(n: int) -> dict[bytes, dict]:
    """Synthetic item stats: item i has popularity i and 60 neighbours (more than the 50 readers get)."""
    return {f"item{i}".encode(): {"pop": float(i), "nbrs": {f"n{j}": float(j) for j in range(60)}} for i in range(n)}


def restore(store: MemoryStore, stats: dict[bytes, dict], held: set[int]) -> int:
    return asyncio.run(restore_item_view(store, stats, held, PARTITIONS, 50))


def test_a_store_that_lost_the_view_gets_the_held_partitions_items_back_once() -> None:
    stats = table(CHUNK + 500)  # more than one write
    store = MemoryStore()
    held = {0, 2}
    expected = {k.decode() for k in stats if partition_of(k.decode(), PARTITIONS) in held}
    assert restore(store, stats, held) == len(expected)
    assert set(store.popularity) == set(store.neighbors) == expected
    assert all(len(nbrs) == 50 and "n59" in nbrs and "n9" not in nbrs for nbrs in store.neighbors.values())
    assert store.items_published == held
    assert restore(store, stats, held) == 0  # marked: nothing published again
    assert restore(store, stats, {0, 1, 2}) == sum(partition_of(k.decode(), PARTITIONS) == 1 for k in stats)

    lost = MemoryStore()  # the store restarted empty: its marks went with its items
    assert restore(lost, stats, held) == len(expected) and set(lost.popularity) == expected


def test_an_empty_table_marks_its_partitions_and_publishes_nothing() -> None:
    store = MemoryStore()
    assert restore(store, {b"gone": None}, {0, 1, 2, 3}) == 0
    assert store.items_published == {0, 1, 2, 3} and store.popularity == {}


def test_the_memory_store_hands_out_copies_of_its_neighbours_as_redis_does() -> None:
    """Scoring adds a batch's fresh pairs to the neighbours it read (``add_fresh_neighbors``); the store's own
    must not change with them, or the unit tests' store would count each batch's pairs again."""
    from stream_app.scoring import add_fresh_neighbors
    from stream_app.state import ItemActivity

    store = MemoryStore()
    asyncio.run(store.publish_item_stats({"a": {"pop": 1.0, "nbrs": {"b": 1.0}}}))
    _, neighbors = asyncio.run(store.item_features(["a"], 10))
    add_fresh_neighbors(neighbors, {"a": ItemActivity(popularity=0.0, neighbors={"c": 2.0})}, {"a"})
    assert neighbors["a"] == {"b": 1.0, "c": 2.0} and store.neighbors["a"] == {"b": 1.0}
