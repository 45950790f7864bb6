"""take_batches: micro-batches that fill while the previous one is processed (Faust agents' test context, no broker)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable

import faust
import pytest

from stream_app.agents.batching import take_batches

_apps = itertools.count()


def run_agent(max_: int, within: float, handle: Callable[[list], Awaitable[bool]],
              feed: Callable[[object], Awaitable[None]]) -> None:
    """Run an agent that takes batches and calls ``handle`` (True: stop); ``feed`` puts values into it."""
    app = faust.App(f"batching-test-{next(_apps)}", broker="kafka://127.0.0.1:9", store="memory://")

    @app.agent(app.topic("events", value_type=int))
    async def agent(stream: faust.StreamT) -> None:
        async for batch in take_batches(stream, max_, within):
            if await handle(batch):
                break

    async def scenario() -> None:
        async with agent.test_context() as ctx:
            await feed(ctx)

    try:
        asyncio.run(asyncio.wait_for(scenario(), 30))
    finally:
        app.consumer._thread.thread_loop.close()  # the consumer thread's own loop, never started here


def test_events_arriving_during_a_batch_are_the_next_batch_without_waiting_within():
    """Faust's take_events would hold [4, 5] for the full 10 s ``within``."""
    batches: list[tuple[list[int], float]] = []

    async def handle(batch: list) -> bool:
        batches.append(([e.value for e in batch], time.perf_counter()))
        await asyncio.sleep(0.2)  # processing: the event loop is free, as while the worker scores
        return False

    async def feed(ctx) -> None:
        for v in (1, 2, 3):
            await ctx.put(v)
        await asyncio.sleep(0.05)
        for v in (4, 5):
            await ctx.put(v)
        await asyncio.sleep(1.0)

    run_agent(3, 10.0, handle, feed)
    assert [values for values, _ in batches] == [[1, 2, 3], [4, 5]]
    assert batches[1][1] - batches[0][1] < 0.5  # 0.2 s of processing, not 10 s of waiting


def test_a_backlog_comes_in_full_batches_in_order():
    seen: list[list[int]] = []

    async def handle(batch: list) -> bool:
        seen.append([e.value for e in batch])
        await asyncio.sleep(0.1)
        return False

    async def feed(ctx) -> None:
        for v in range(11):
            await ctx.put(v)
        await asyncio.sleep(1.0)

    run_agent(4, 0.01, handle, feed)
    assert all(len(b) <= 4 for b in seen)
    assert [v for b in seen for v in b] == list(range(11))
    assert [len(b) for b in seen] == [4, 4, 3]  # behind, every batch is as full as it can be


@pytest.mark.parametrize("within", [0.05, 0.3])
def test_a_lone_event_waits_within_for_company_then_goes_alone(within):
    arrived: list[float] = []
    seen: list[list[int]] = []

    async def handle(batch: list) -> bool:
        seen.append([e.value for e in batch])
        arrived.append(time.perf_counter())
        return True

    async def feed(ctx) -> None:
        arrived.append(time.perf_counter())
        await ctx.put(7)
        await asyncio.sleep(within + 0.5)

    run_agent(8, within, handle, feed)
    assert seen == [[7]]
    assert within * 0.8 <= arrived[1] - arrived[0] < within + 0.25


def test_a_batch_is_acked_only_once_the_next_is_asked_for_and_never_when_interrupted():
    batches: list[list] = []
    acked_while_processing: list[bool] = []

    async def handle(batch: list) -> bool:
        batches.append(batch)
        acked_while_processing.extend(e.message.acked for e in batch)
        return len(batches) == 2  # stop half-way through the second batch

    async def feed(ctx) -> None:
        for v in (1, 2, 3, 4):
            await ctx.put(v)
        await asyncio.sleep(0.3)

    run_agent(2, 0.01, handle, feed)
    assert not any(acked_while_processing)
    first, second = batches
    assert [e.message.acked for e in first] == [True, True]
    assert [e.message.acked for e in second] == [False, False]  # delivered again after a restart


def test_max_must_be_positive():
    async def consume() -> None:
        async for _ in take_batches(None, 0, 0.01):  # type: ignore[arg-type]
            pass

    with pytest.raises(ValueError, match="at least 1"):
        asyncio.run(consume())
