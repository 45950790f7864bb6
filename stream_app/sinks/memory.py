"""An in-process store for unit tests and offline replay."""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from stream_app.delivery_counts import tally
from stream_app.sinks.base import Store


class MemoryStore(Store):
    """Keeps everything in dicts; same behaviour as the Redis store, no TTL."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.popularity: dict[str, float] = {}
        self.neighbors: dict[str, dict[str, float]] = {}
        self._counters: Counter[str] = Counter()
        self._counted: dict[int, int] = {}
        self._writes: set[str] = set()  # add_counters' write ids already counted
        self.items_published: set[int] = set()  # item-stats partitions whose items were all published

    async def write_recommendations(
        self, records: Sequence[Mapping[str, Any]], counters: Mapping[str, int],
        deliveries: Mapping[int, Sequence[tuple[int, str]]] | None = None,
    ) -> dict[int, int]:
        for rec in records:
            self.records[rec["user_id"]] = dict(rec)
        self._counters.update(counters)
        before = {p: self._counted.get(p, -1) for p in deliveries or {}}
        counts, newest = tally(deliveries or {}, before)
        self._counters.update(counts)
        self._counted.update(newest)
        return before

    async def counted_offsets(self, partitions: Iterable[int]) -> dict[int, int]:
        return {p: self._counted.get(p, -1) for p in partitions}

    async def add_counters(self, counters: Mapping[str, int], write_id: str | None = None) -> None:
        if write_id is not None:
            if write_id in self._writes:
                return
            self._writes.add(write_id)
        self._counters.update(counters)

    async def publish_item_stats(self, stats: Mapping[str, Mapping[str, Any]]) -> None:
        for item, s in stats.items():
            if s.get("pop") is not None:
                self.popularity[item] = s["pop"]
            self.neighbors[item] = dict(s.get("nbrs") or {})

    async def unpublished_item_partitions(self, partitions: Iterable[int]) -> set[int]:
        return set(partitions) - self.items_published

    async def mark_items_published(self, partitions: Iterable[int]) -> None:
        self.items_published.update(partitions)

    async def item_features(
        self, seeds: Iterable[str], n_popular: int
    ) -> tuple[list[tuple[str, float]], dict[str, dict[str, float]]]:
        popular = heapq.nlargest(n_popular, self.popularity.items(), key=lambda kv: kv[1])
        # copies, as Redis's are: a caller adds its batch's fresh pairs to them (``scoring.add_fresh_neighbors``)
        return popular, {s: dict(self.neighbors[s]) for s in seeds if s in self.neighbors}

    async def recommendations(self, user_id: str) -> dict[str, Any] | None:
        return self.records.get(user_id)

    async def counters(self) -> dict[str, int]:
        return dict(self._counters)
