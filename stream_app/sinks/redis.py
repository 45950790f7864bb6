"""The Redis store: what the homepage reads (see ``redis_layout``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis

from stream_app.redis_layout import COUNTER_NAMES, RedisLayout
from stream_app.sinks.base import Store


# raise hash fields to the given values, never lower them (a late write from a worker that lost the partition)
RAISE_OFFSETS = """
for i = 1, #ARGV, 2 do
  local current = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '-1')
  if tonumber(ARGV[i + 1]) > current then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
return 0
"""


class RedisStore(Store):
    """Writes each micro-batch in one pipeline; checks the connection at start."""

    def __init__(self, url: str, *, prefix: str = "reco", ttl_s: int = 7 * 86_400,
                 client: aioredis.Redis | None = None) -> None:
        self.keys = RedisLayout(prefix)
        self.ttl_s = ttl_s
        self._url = url
        self._client = client

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            self._client = aioredis.Redis.from_url(self._url)
        return self._client

    async def start(self) -> None:
        await self.client.ping()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def write_recommendations(
        self, records: Sequence[Mapping[str, Any]], counters: Mapping[str, int],
        counted: Mapping[int, int] | None = None,
    ) -> None:
        async with self.client.pipeline(transaction=bool(counted)) as pipe:  # MULTI/EXEC with offsets
            for rec in records:
                pipe.set(self.keys.recs(rec["user_id"]), orjson.dumps(rec), ex=self.ttl_s)
            self._queue_counters(pipe, counters)
            if counted:
                args = [str(v) for partition, offset in counted.items() for v in (partition, offset)]
                pipe.eval(RAISE_OFFSETS, 1, self.keys.counted, *args)
            await pipe.execute()

    async def counted_offsets(self, partitions: Iterable[int]) -> dict[int, int]:
        wanted = list(partitions)
        if not wanted:
            return {}
        values = await self.client.hmget(self.keys.counted, [str(p) for p in wanted])
        return {p: -1 if v is None else int(v) for p, v in zip(wanted, values)}

    async def add_counters(self, counters: Mapping[str, int]) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            self._queue_counters(pipe, counters)
            await pipe.execute()

    def _queue_counters(self, pipe: Any, counters: Mapping[str, int]) -> None:
        for name, n in counters.items():
            if n:
                pipe.hincrby(self.keys.counters, name, n)

    async def publish_item_stats(self, stats: Mapping[str, Mapping[str, Any]]) -> None:
        pops = {item: s["pop"] for item, s in stats.items() if s.get("pop") is not None}
        async with self.client.pipeline(transaction=False) as pipe:
            if pops:
                pipe.zadd(self.keys.popularity, pops)
            for item, s in stats.items():
                if s.get("nbrs"):
                    pipe.set(self.keys.covis(item), orjson.dumps(s["nbrs"]))
            await pipe.execute()

    async def item_features(
        self, seeds: Iterable[str], n_popular: int
    ) -> tuple[list[tuple[str, float]], dict[str, dict[str, float]]]:
        seeds = list(seeds)
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.zrevrange(self.keys.popularity, 0, n_popular - 1, withscores=True)
            if seeds:
                pipe.mget([self.keys.covis(s) for s in seeds])
            replies = await pipe.execute()
        popular = [(item.decode(), score) for item, score in replies[0]]
        neighbors = {}
        if seeds:
            for seed, raw in zip(seeds, replies[1]):
                if raw is not None:
                    neighbors[seed] = orjson.loads(raw)
        return popular, neighbors

    async def recommendations(self, user_id: str) -> dict[str, Any] | None:
        raw = await self.client.get(self.keys.recs(user_id))
        return None if raw is None else orjson.loads(raw)

    async def counters(self) -> dict[str, int]:
        raw = await self.client.hgetall(self.keys.counters)
        out = {name: 0 for name in COUNTER_NAMES}
        out.update({k.decode(): int(v) for k, v in raw.items()})
        return out
