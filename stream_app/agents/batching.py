"""Micro-batches that fill while the previous one is processed (Faust's ``take_events``, pipelined).

Faust's ``stream.take_events(n, within=t)`` stops buffering while its
caller processes a batch, and afterwards always waits ``t`` for the buffer to
fill, even with a backlog waiting. Its stream moves events into the buffer one
at a time in Python, so with a short ``t`` the batches stay small however far
behind the worker is: on this project's 2-core host, with ``t`` = 5 ms, the
worker took 23 events per batch from a backlog of thousands and could not
keep up with 400 events/s.

:func:`take_batches` keeps buffering while a batch is processed (the event
loop is free then: scoring runs on its own thread) and hands over what has
gathered as soon as the caller asks for the next batch. Only when nothing is
waiting does it wait for the first event, and then at most ``within`` for
more. Under a backlog the batches grow to ``max_`` by themselves; a lone event
waits no longer than with Faust's take.

At least once: a batch's events are acked when the caller asks for the next
batch, so only once it is fully processed. Faust's take acks in a ``finally``,
so a worker stopped half-way through a batch (SIGTERM cancels the agent) could
commit events it never processed; here an interrupted batch, and whatever is
still in the buffer, is not acked and is delivered again, and the user state's
source offset recognises what was already applied.

It drives the stream as Faust's own take does, through its internals
(``add_processor``, ``_enable_passive``, ``_processors``); faust-streaming is
pinned in pyproject.toml, and the unit tests run it on Faust's agent test
context.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import faust
from faust.types import EventT

log = logging.getLogger(__name__)


async def take_batches(stream: faust.StreamT, max_: int, within: float) -> AsyncIterator[list[EventT]]:
    """Batches of at most ``max_`` events, in arrival order (see the module docstring)."""
    if max_ < 1:
        raise ValueError(f"max_ must be at least 1, got {max_}")
    buffer: list[EventT] = []
    arrived, full, taken = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def add_to_buffer(value: object) -> object:
        event = stream.current_event
        if event is None:
            raise RuntimeError("take_batches: the stream has no current event")
        while len(buffer) >= max_:  # back-pressure: the stream stops reading until the batch is taken
            taken.clear()
            await stream.wait(taken)
            if stream.should_stop:
                return value
        buffer.append(event)
        arrived.set()
        if len(buffer) >= max_:
            full.set()
        return value

    enable_acks = stream.enable_acks
    stream.enable_acks = False  # acked here, once processed
    stream.add_processor(add_to_buffer)
    stream._enable_passive(aiter(stream.channel))  # the stream drains its channel into the buffer, as in Faust's take
    try:
        while not stream.should_stop:
            if not buffer:
                arrived.clear()
                await stream.wait_for_stopped(arrived)
                if not buffer:
                    continue
                await stream.wait_for_stopped(full, timeout=within)  # company for the first event
            batch = buffer.copy()  # never more than max_: add_to_buffer waits at max_
            buffer.clear()
            full.clear()
            taken.set()
            yield batch
            for event in batch:  # not in a finally: a batch interrupted half-way is not acked
                await stream.ack(event)
    finally:
        stream.enable_acks = enable_acks
        stream._processors.remove(add_to_buffer)


async def each_batch(app: faust.App, stream: faust.StreamT, max_: int, within: float,
                     handle: Callable[[list[EventT]], Awaitable[None]]) -> None:
    """Hand every batch of ``take_batches`` to ``handle``; a batch it fails on stops the worker.

    Faust's default supervisor restarts a failed agent in place and the stream
    carries on with later offsets: the failed batch, never acked, came back
    only at the next restart, by when later events could have moved its users'
    state past it (its events then counted as duplicates, never applied), and
    the group's commits were stuck behind it. So the worker stops instead
    (``app.crash``: it exits non-zero, and docker-compose restarts it), and the batch
    is delivered again from the last committed offset. Meanwhile this agent
    takes no further batch. The Redis client re-sends what failed on a
    connection error or timeout (``RECO_REDIS_RETRIES``, 4.5 to 9 s in all by
    default; every counting write counts once however often it is sent), so
    only a longer Redis outage stops the worker.
    """
    async for batch in take_batches(stream, max_, within):
        try:
            await handle(batch)
        except Exception as exc:  # noqa: BLE001 - any failure: stop rather than skip the batch
            log.critical("a batch of %d failed, the worker stops (a restart takes it again from the last "
                         "committed offset): %r", len(batch), exc, exc_info=exc)
            await app.crash(exc)
            await stream.wait_for_stopped(asyncio.Event())  # no further batch until the worker has stopped
            return
