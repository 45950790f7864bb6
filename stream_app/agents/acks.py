"""At-least-once micro-batches on top of ``stream.take_events``.

Faust's ``take_events`` acks a batch in a ``finally`` around its ``yield``,
which also runs when the agent is cancelled half-way through the batch (a
worker stopping on SIGTERM), so the offsets of events that were never
processed can be committed. Holding one extra reference on each message until
the batch is fully processed keeps an interrupted batch uncommitted, so it is
delivered again; the user state's source offset then recognises what was
already applied. (Events Faust dropped on its own after a restart were a
different defect: see ``stream_app.faust_fixes``.)
"""

from __future__ import annotations

from collections.abc import Sequence

import faust
from faust.types import EventT


def hold(events: Sequence[EventT]) -> None:
    """Take a reference on each event's message: not committable until ``release``."""
    for event in events:
        event.message.incref()


async def release(stream: faust.StreamT, events: Sequence[EventT]) -> None:
    """Drop the reference: the batch is done, its offsets may be committed."""
    for event in events:
        await stream.ack(event)
