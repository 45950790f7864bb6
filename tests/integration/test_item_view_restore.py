"""Redis loses its data under a running worker (restarted without persistence): the popularity and
co-visitation readers need come back from the item-stats table, not only for items touched again."""

from __future__ import annotations

import asyncio
import time

import pytest

from models.data.eventlog import read_events
from stream_app.agents.items import ITEM_VIEW_CHECK_S
from stream_app.replay.producer import order_for_replay, replay
from stream_app.sinks.redis import RedisStore
from stream_app.worker_process import wait_for_events
from tests.integration.conftest import SAMPLE, halves_by_user, redis_store

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def item_view(store: RedisStore) -> tuple[set[bytes], set[bytes]]:
    """The items with a popularity, and the co-visitation keys, in this test's Redis prefix."""
    popular = set(await store.client.zrange(store.keys.popularity, 0, -1))
    covis = {key async for key in store.client.scan_iter(match=store.keys.covis("*"), count=1000)}
    return popular, covis


async def settled_view(store: RedisStore, quiet_s: float = 2.0, timeout_s: float = 30.0) -> tuple[set, set]:
    """The item view once it stopped changing for ``quiet_s`` (the item-stats agent follows the events one)."""
    deadline = time.monotonic() + timeout_s
    last, since = await item_view(store), time.monotonic()
    while time.monotonic() - since < quiet_s and time.monotonic() < deadline:
        await asyncio.sleep(0.3)
        now = await item_view(store)
        if now != last:
            last, since = now, time.monotonic()
    return last


def test_a_redis_that_lost_everything_gets_the_item_view_back_from_the_table(stack, settings, start_worker):
    """The real Taobao sample: the first half of every user's events, then every key of this test's prefix
    is deleted (what a Redis restarted empty holds), then the second half. Items touched only in the first
    half must be readable again."""
    events = order_for_replay(read_events(SAMPLE / "taobao_user_behavior.csv", "taobao"))
    first, second, _ = halves_by_user(events)
    replay_kw = dict(bootstrap=stack.bootstrap, topic=settings.events_topic, progress=False)

    async def scenario() -> tuple[tuple[set, set], tuple[set, set], set[bytes], str]:
        worker = start_worker(settings)
        async with redis_store(settings) as store:
            await replay(first, **replay_kw)
            await wait_for_events(store, len(first), worker, counted=("processed",))
            before = await settled_view(store)
            keys = [key async for key in store.client.scan_iter(match=f"{settings.redis_prefix}:*", count=1000)]
            await store.client.delete(*keys)
            assert await item_view(store) == (set(), set())
            await asyncio.sleep(ITEM_VIEW_CHECK_S + 0.5)  # the worker's next item batch checks the view
            await replay(second, **replay_kw)
            await wait_for_events(store, len(second), worker, counted=("processed",))
            after = await settled_view(store)
            only_second = {e.item_id.encode() for e in second} - {e.item_id.encode() for e in first}
            return before, after, only_second, worker.log()

    (pop_before, covis_before), (pop_after, covis_after), only_second, log = asyncio.run(scenario())
    assert len(pop_before) > 1000 and len(covis_before) > 1000  # the first half's items were readable
    assert pop_before <= pop_after, f"{len(pop_before - pop_after)} items lost their popularity\n{log[-3000:]}"
    assert covis_before <= covis_after, f"{len(covis_before - covis_after)} co-visitation keys lost\n{log[-3000:]}"
    assert "published again from the table" in log
    assert only_second & pop_after  # and the second half went on as usual
