"""The Redis key layout: what the homepage reads and what scorers share.

| key | type | value |
|---|---|---|
| ``{prefix}:recs:{user_id}`` | string, TTL | JSON recommendation record (see ``records.recommendation_record``) |
| ``{prefix}:items:popularity`` | sorted set | item id -> log2 forward-decay popularity |
| ``{prefix}:items:covis:{item_id}`` | string | JSON {neighbour item id: log2 co-visitation weight}, strongest 50 |
| ``{prefix}:items:published`` | hash | item-stats partition -> when all its items were last published (Unix s) |
| ``{prefix}:counters`` | hash | events_in, processed, rejected, duplicates (add up: in = the rest) |
| ``{prefix}:counted`` | hash | events-topic partition -> the highest offset the counters include |
| ``{prefix}:write:{id}`` | string, TTL 120 s | one counting write done: the counted offsets it read (JSON list) |

The counters and ``counted`` change in one script (``sinks.redis.COUNT_ONCE``),
so an event re-delivered after a crash is counted as a duplicate exactly when
its first delivery's counts landed, whatever the user state's changelog kept;
the write's mark makes a write that the client re-sends count once.
"""

from __future__ import annotations

from dataclasses import dataclass

COUNTER_NAMES = ("events_in", "processed", "rejected", "duplicates")


@dataclass(frozen=True)
class RedisLayout:
    prefix: str = "reco"

    def recs(self, user_id: str) -> str:
        return f"{self.prefix}:recs:{user_id}"

    @property
    def popularity(self) -> str:
        return f"{self.prefix}:items:popularity"

    def covis(self, item_id: str) -> str:
        return f"{self.prefix}:items:covis:{item_id}"

    @property
    def items_published(self) -> str:
        return f"{self.prefix}:items:published"

    @property
    def counters(self) -> str:
        return f"{self.prefix}:counters"

    @property
    def counted(self) -> str:
        return f"{self.prefix}:counted"

    def write_mark(self, write_id: str) -> str:
        return f"{self.prefix}:write:{write_id}"
