"""The Redis store's counted offsets: raised with the counters in one step, never lowered."""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.conftest import redis_store

pytestmark = pytest.mark.integration


def test_counted_offsets_rise_with_the_counters_and_never_fall(settings):
    async def scenario():
        async with redis_store(settings) as store:
            assert await store.counted_offsets([0, 3]) == {0: -1, 3: -1}
            rec = {"user_id": "u1", "items": []}
            await store.write_recommendations([rec], {"events_in": 5, "processed": 5}, {0: 41, 3: 7})
            # a late write for partition 0 from a worker that has since lost it: its counts add, its offset not
            await store.write_recommendations([], {"events_in": 1, "processed": 1}, {0: 30, 3: 9})
            return (await store.counted_offsets([0, 3, 1]), await store.counters(),
                    await store.recommendations("u1"))

    counted, counters, rec = asyncio.run(scenario())
    assert counted == {0: 41, 3: 9, 1: -1}
    assert counters["events_in"] == 6 and counters["processed"] == 6
    assert rec == {"user_id": "u1", "items": []}
