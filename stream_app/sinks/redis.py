"""The Redis store: what the homepage reads (see ``redis_layout``)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import EqualJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError, TimeoutError as RedisTimeoutError

from stream_app.redis_layout import COUNTER_NAMES, RedisLayout
from stream_app.settings import REDIS_BACKOFF_BASE_S, REDIS_BACKOFF_CAP_S
from stream_app.sinks.base import Store


# Adds counters and counts deliveries (``stream_app.delivery_counts.tally``) in one atomic step, once per write:
# - the check and the count are one step, so no other writer counts in between (a worker that lost its
#   partition mid-batch, finishing while the new owner counts the same events);
# - the write's id (KEYS[3]) marks it done, so a write that redis-py re-sends after a lost reply (it retries
#   on connection errors and timeouts) returns the first run's answer and adds nothing.
# KEYS: counters, counted, this write's marker. ARGV: marker TTL (s), n counters, (name, n) per counter,
# n partitions, then per partition: partition, n events, (offset, kind) per event.
# Returns each partition's counted offset before the write, as the strings Redis holds (exact: cjson would
# round numbers to 14 digits). Offsets are compared as Lua numbers, exact below 2^53 (Kafka's come nowhere
# near). The counters are added before the offsets are raised: a script that fails part-way (a corrupt key)
# then leaves events counted twice at worst, never counted as duplicates without having been counted.
COUNT_ONCE = """
local done = redis.call('GET', KEYS[3])
if done then return cjson.decode(done) end
local add = {processed = 0, rejected = 0, duplicates = 0, quarantined = 0}
local i = 3
for c = 1, tonumber(ARGV[2]) do
  add[ARGV[i]] = (add[ARGV[i]] or 0) + tonumber(ARGV[i + 1])
  i = i + 2
end
local before, raise = {}, {}
local n_parts = tonumber(ARGV[i])
i = i + 1
for p = 1, n_parts do
  local partition, n = ARGV[i], tonumber(ARGV[i + 1])
  i = i + 2
  before[p] = redis.call('HGET', KEYS[2], partition) or '-1'
  local floor = tonumber(before[p])
  local newest, newest_text = floor, nil
  for e = 1, n do
    local offset, kind = tonumber(ARGV[i]), ARGV[i + 1]
    if offset <= floor then
      add.duplicates = add.duplicates + 1
    else
      if kind == 'r' then add.rejected = add.rejected + 1 else add.processed = add.processed + 1 end
      if kind == 'q' then add.quarantined = add.quarantined + 1 end
      if offset > newest then newest, newest_text = offset, ARGV[i] end
    end
    i = i + 2
  end
  if newest_text then raise[#raise + 1] = {partition, newest_text} end
end
for name, n in pairs(add) do
  if n ~= 0 then redis.call('HINCRBY', KEYS[1], name, n) end
end
for _, pair in ipairs(raise) do redis.call('HSET', KEYS[2], pair[1], pair[2]) end
redis.call('SET', KEYS[3], n_parts > 0 and cjson.encode(before) or '[]', 'EX', ARGV[1])
return before
"""
WRITE_MARK_TTL_S = 120  # longer than any re-send of one write: the client's (under 30 s), the sample outlet's (its next
# flush, 0.25 s on; at a stop, its drain); one short key per batch while it lives


class RedisStore(Store):
    """Writes each micro-batch in one pipeline; checks the connection at start; rides out short outages."""

    def __init__(self, url: str, *, prefix: str = "reco", ttl_s: int = 7 * 86_400, retries: int = 8,
                 timeout_s: float = 2.0, client: aioredis.Redis | None = None) -> None:
        if retries < 0 or timeout_s <= 0:
            raise ValueError(f"Redis retries must be 0 or more and its timeout positive, not {retries} and {timeout_s}"
                             " (RECO_REDIS_RETRIES, RECO_REDIS_TIMEOUT_S)")
        self.keys = RedisLayout(prefix)
        self.ttl_s = ttl_s
        self.retries, self.timeout_s = retries, timeout_s
        self._url = url
        self._client = client

    @property
    def client(self) -> aioredis.Redis:
        """The client; it re-sends a command or pipeline that failed on a connection error or a timeout
        (``timeout_s`` to connect, or for a reply) ``retries`` times, backing off (redis-py's ``Retry``).
        Safe for every method here: reads and replacing writes repeat harmlessly, and counting writes
        count once (``COUNT_ONCE``)."""
        if self._client is None:
            retry = Retry(EqualJitterBackoff(base=REDIS_BACKOFF_BASE_S, cap=REDIS_BACKOFF_CAP_S), self.retries,
                          supported_errors=(RedisConnectionError, RedisTimeoutError))
            self._client = aioredis.Redis.from_url(self._url, retry=retry, socket_timeout=self.timeout_s,
                                                   socket_connect_timeout=self.timeout_s)
        return self._client

    async def start(self) -> None:
        await self.client.ping()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def write_recommendations(
        self, records: Sequence[Mapping[str, Any]], counters: Mapping[str, int],
        deliveries: Mapping[int, Sequence[tuple[int, str]]] | None = None,
    ) -> dict[int, int]:
        parts = list((deliveries or {}).items())
        async with self.client.pipeline(transaction=True) as pipe:
            for rec in records:
                pipe.set(self.keys.recs(rec["user_id"]), orjson.dumps(rec), ex=self.ttl_s)
            self._queue_count_once(pipe, counters, parts)
            replies = await pipe.execute()
        return {p: int(v) for (p, _), v in zip(parts, replies[-1])}

    async def counted_offsets(self, partitions: Iterable[int]) -> dict[int, int]:
        wanted = list(partitions)
        if not wanted:
            return {}
        values = await self.client.hmget(self.keys.counted, [str(p) for p in wanted])
        return {p: -1 if v is None else int(v) for p, v in zip(wanted, values)}

    async def add_counters(self, counters: Mapping[str, int], write_id: str | None = None) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            self._queue_count_once(pipe, counters, [], write_id)
            await pipe.execute()

    def _queue_count_once(self, pipe: Any, counters: Mapping[str, int],
                          parts: Sequence[tuple[int, Sequence[tuple[int, str]]]], write_id: str | None = None) -> None:
        """Queue ``COUNT_ONCE`` under ``write_id`` (default: a fresh one); a re-sent pipeline re-sends it."""
        named = [(name, n) for name, n in counters.items() if n]
        args: list[str | int] = [WRITE_MARK_TTL_S, len(named)]
        for name, n in named:
            args += [name, n]
        args.append(len(parts))
        for partition, events in parts:
            args += [partition, len(events)]
            for offset, kind in events:
                args += [offset, kind]
        pipe.eval(COUNT_ONCE, 3, self.keys.counters, self.keys.counted, self.keys.write_mark(write_id or uuid.uuid4().hex),
                  *args)

    async def publish_item_stats(self, stats: Mapping[str, Mapping[str, Any]]) -> None:
        pops = {item: s["pop"] for item, s in stats.items() if s.get("pop") is not None}
        async with self.client.pipeline(transaction=False) as pipe:
            if pops:
                pipe.zadd(self.keys.popularity, pops)
            for item, s in stats.items():
                if s.get("nbrs"):
                    pipe.set(self.keys.covis(item), orjson.dumps(s["nbrs"]))
            await pipe.execute()

    async def unpublished_item_partitions(self, partitions: Iterable[int]) -> set[int]:
        partitions = sorted(set(partitions))
        if not partitions:
            return set()
        marks = await self.client.hmget(self.keys.items_published, [str(p) for p in partitions])
        return {p for p, mark in zip(partitions, marks) if mark is None}

    async def mark_items_published(self, partitions: Iterable[int]) -> None:
        marks = {str(p): f"{time.time():.3f}" for p in partitions}
        if marks:
            await self.client.hset(self.keys.items_published, mapping=marks)

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
