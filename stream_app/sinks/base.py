"""The store interface the agents write to and read item features from."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


class Store(ABC):
    """Recommendations out, shared item statistics in and out, counters.

    Each method is one round trip per micro-batch, never one per event.
    """

    async def start(self) -> None:
        """Connect and check the connection; raise if the store is unreachable."""

    async def close(self) -> None:
        """Release connections."""

    @abstractmethod
    async def write_recommendations(
        self, records: Sequence[Mapping[str, Any]], counters: Mapping[str, int],
        deliveries: Mapping[int, Sequence[tuple[int, str]]] | None = None,
    ) -> dict[int, int]:
        """Store each user's record (replacing the old one), add ``counters``, and count ``deliveries``
        (``stream_app.pipeline.deliveries_of``) against the counted offsets, raising them, in one atomic
        step (``stream_app.delivery_counts.tally``); returns the counted offsets the deliveries were counted
        against (partition -> offset, -1: none)."""

    @abstractmethod
    async def counted_offsets(self, partitions: Iterable[int]) -> dict[int, int]:
        """The highest offset of each partition the counters include (-1: none)."""

    @abstractmethod
    async def add_counters(self, counters: Mapping[str, int], write_id: str | None = None) -> None:
        """Add to the event counters without writing records; a second call with the same ``write_id``
        (a caller's retry of a write that may have landed) adds nothing."""

    @abstractmethod
    async def publish_item_stats(self, stats: Mapping[str, Mapping[str, Any]]) -> None:
        """Replace the shared view of these items' stats ``{"pop", "nbrs"}``."""

    @abstractmethod
    async def unpublished_item_partitions(self, partitions: Iterable[int]) -> set[int]:
        """Those of ``partitions`` whose items the shared view may lack: never all published (``mark_items_published``),
        or the store lost them (a Redis that restarted empty)."""

    @abstractmethod
    async def mark_items_published(self, partitions: Iterable[int]) -> None:
        """Record that every item of these partitions is in the shared view."""

    @abstractmethod
    async def item_features(
        self, seeds: Iterable[str], n_popular: int
    ) -> tuple[list[tuple[str, float]], dict[str, dict[str, float]]]:
        """The ``n_popular`` most popular items and the neighbours of each seed item."""

    @abstractmethod
    async def recommendations(self, user_id: str) -> dict[str, Any] | None:
        """The stored record of one user, or None."""

    @abstractmethod
    async def counters(self) -> dict[str, int]:
        """The event counters."""
