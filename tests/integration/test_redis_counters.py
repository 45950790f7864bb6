"""The Redis store counts each delivered event once: it checks the counted offsets and counts in one step."""

from __future__ import annotations

import asyncio
import random
from urllib.parse import urlparse

import pytest

from stream_app.delivery_counts import PROCESSED, QUARANTINED, REJECTED
from stream_app.sinks.memory import MemoryStore
from stream_app.sinks.redis import RedisStore
from tests.integration.conftest import redis_store

pytestmark = pytest.mark.integration


def test_counted_offsets_rise_with_the_counters_and_never_fall(settings):
    async def scenario():
        async with redis_store(settings) as store:
            assert await store.counted_offsets([0, 3]) == {0: -1, 3: -1}
            rec = {"user_id": "u1", "items": []}
            first = await store.write_recommendations(
                [rec], {"events_in": 5}, {0: [(40, PROCESSED), (41, REJECTED)], 3: [(6, QUARANTINED), (7, PROCESSED)]})
            # partition 0 again, up to 30 (counted already), partition 3 goes on
            second = await store.write_recommendations(
                [], {"events_in": 2}, {0: [(30, PROCESSED)], 3: [(9, PROCESSED)]})
            return (first, second, await store.counted_offsets([0, 3, 1]), await store.counters(),
                    await store.recommendations("u1"))

    first, second, counted, counters, rec = asyncio.run(scenario())
    assert first == {0: -1, 3: -1} and second == {0: 41, 3: 7}  # what each write was counted against
    assert counted == {0: 41, 3: 9, 1: -1}
    assert {k: counters[k] for k in ("processed", "rejected", "duplicates", "quarantined")} == {
        "processed": 4, "rejected": 1, "duplicates": 1, "quarantined": 1}
    assert rec == {"user_id": "u1", "items": []}


def test_two_workers_finishing_the_same_batch_count_it_once(settings):
    """A worker dropped from its group mid-batch finishes it while the partition's new owner processes the
    same events: both write, neither knew of the other when it started, and the events count once."""
    batch = {0: [(k, PROCESSED) for k in range(100)], 1: [(k, REJECTED if k % 10 == 0 else PROCESSED)
                                                          for k in range(50)]}

    async def scenario():
        async with redis_store(settings) as old_owner, redis_store(settings) as new_owner:
            befores = await asyncio.gather(
                old_owner.write_recommendations([], {"events_in": 150}, batch),
                new_owner.write_recommendations([], {"events_in": 150}, batch))
            return befores, await new_owner.counters()

    befores, counters = asyncio.run(scenario())
    assert sorted(befores, key=lambda b: b[0]) == [{0: -1, 1: -1}, {0: 99, 1: 49}]  # one counted, one saw it counted
    assert counters["events_in"] == 300
    assert (counters["processed"], counters["rejected"], counters["duplicates"]) == (145, 5, 150)
    assert counters["events_in"] == counters["processed"] + counters["rejected"] + counters["duplicates"]


def test_the_redis_script_counts_as_the_memory_store_does(settings):
    """Overlapping, re-delivered and out-of-order batches (synthetic offsets, seeded): the Lua script and
    the Python rule (``tally``) agree on every batch, so replay and tests count as production does."""
    rng = random.Random(7)
    batches = []
    for _ in range(60):
        deliveries = {}
        for partition in rng.sample(range(4), rng.randint(1, 4)):
            start = rng.randint(0, 200)
            offsets = list(range(start, start + rng.randint(1, 30)))
            rng.shuffle(offsets)
            deliveries[partition] = [(o, rng.choice((PROCESSED, PROCESSED, QUARANTINED, REJECTED))) for o in offsets]
        batches.append(deliveries)

    async def scenario():
        memory = MemoryStore()
        async with redis_store(settings) as store:
            for deliveries in batches:
                n = sum(len(v) for v in deliveries.values())
                got = await store.write_recommendations([], {"events_in": n}, deliveries)
                assert got == await memory.write_recommendations([], {"events_in": n}, deliveries)
            return (await store.counters(), await memory.counters(),
                    await store.counted_offsets(range(4)), await memory.counted_offsets(range(4)))

    redis_counts, memory_counts, redis_counted, memory_counted = asyncio.run(scenario())
    assert redis_counted == memory_counted
    for name in ("events_in", "processed", "rejected", "duplicates", "quarantined"):
        assert redis_counts[name] == memory_counts.get(name, 0), name
    assert redis_counts["duplicates"] > 0 and redis_counts["quarantined"] > 0  # the batches did overlap


class DropsOneReply:
    """A TCP proxy to Redis that cuts the first connection that sends ``trigger`` once Redis replies to it:
    the request ran, its reply is lost, as when a network path fails at the wrong moment."""

    def __init__(self, redis_url: str, trigger: bytes) -> None:
        url = urlparse(redis_url)
        self.target = (url.hostname, url.port)
        self.trigger, self.cut, self.connections = trigger, False, 0
        self.server: asyncio.base_events.Server | None = None

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"redis://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        redis_r, redis_w = await asyncio.open_connection(*self.target)
        doomed = False

        async def upstream() -> None:
            nonlocal doomed
            while data := await client_r.read(65536):
                if not self.cut and self.trigger in data:
                    self.cut = doomed = True
                redis_w.write(data)
                await redis_w.drain()

        async def downstream() -> None:
            while data := await redis_r.read(65536):
                if doomed:  # Redis answered the request: drop the answer and the connection
                    return
                client_w.write(data)
                await client_w.drain()

        try:
            await asyncio.wait([asyncio.create_task(upstream()), asyncio.create_task(downstream())],
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            client_w.close()
            redis_w.close()


@pytest.mark.parametrize("write", ["batch", "counters"])
def test_a_write_whose_reply_was_lost_is_counted_once(settings, write):
    """The store's client re-sends a write when its connection fails (``RECO_REDIS_RETRIES``): a batch's
    counting write, or the sample outlet's counters, must not count twice when only the reply was lost."""
    trigger = b"\r\nEXEC\r\n" if write == "batch" else b"\r\nEVAL\r\n"

    async def scenario():
        proxy = DropsOneReply(settings.redis_url, trigger)
        async with proxy as url, redis_store(settings) as direct:
            through = RedisStore(url, prefix=settings.redis_prefix)
            try:
                if write == "batch":
                    before = await through.write_recommendations(
                        [{"user_id": "u1", "items": []}], {"events_in": 3},
                        {0: [(0, PROCESSED), (1, QUARANTINED), (2, REJECTED)]})
                else:
                    before = await through.add_counters({"samples_sent": 7, "samples_lost": 1})
            finally:
                await through.close()
            return before, proxy.cut, proxy.connections, await direct.counters()

    before, cut, connections, counters = asyncio.run(scenario())
    assert cut and connections >= 2  # the reply was lost and the client sent the write again
    if write == "batch":
        assert before == {0: -1}  # the answer of the run that counted, not of the re-sent one
        assert {k: counters[k] for k in ("events_in", "processed", "rejected", "duplicates", "quarantined")} == {
            "events_in": 3, "processed": 2, "rejected": 1, "duplicates": 0, "quarantined": 1}
    else:
        assert (counters["samples_sent"], counters["samples_lost"]) == (7, 1)
