"""A global time order for logs that only know each user's own order (Amazon Beauty sequences).

``read_sequences`` puts position k of every user at the same moment
(``SEQUENCE_EPOCH + k`` days), so a replay runs in rounds: everyone's first
item, then everyone's second... Every user is then active from the first
day, and the late part of the log holds only long histories. ``stagger_users``
makes it a stream over time instead: each user arrives at a random moment
(seeded) within ``horizon_s`` and then touches one item a day (the same step
as ``read_sequences``), so at any time some users are new, some are
mid-history and some have left, and items enter the stream when their first
user reaches them. The order of each user's own items never changes.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

from models.data.eventlog import SEQUENCE_EPOCH, SEQUENCE_STEP_S
from models.data.events import Event

DEFAULT_HORIZON_S = 365 * 86_400.0


def stagger_users(
    events: Sequence[Event], *, horizon_s: float = DEFAULT_HORIZON_S, step_s: float = SEQUENCE_STEP_S, seed: int = 0
) -> list[Event]:
    """``events`` re-timed: user u's i-th event at ``SEQUENCE_EPOCH + start_u + i * step_s``, sorted by time.

    ``start_u`` is uniform in ``[0, horizon_s)``, drawn per user in order of first
    appearance; each user's events keep their order (stable for equal times).
    """
    rng = random.Random(seed)
    start: dict[str, float] = {}
    position: dict[str, int] = {}
    order = sorted(range(len(events)), key=lambda n: (events[n].ts, n))
    retimed: list[tuple[float, int, Event]] = []
    for n in order:
        ev = events[n]
        if ev.user_id not in start:
            start[ev.user_id] = rng.random() * horizon_s
        i = position.get(ev.user_id, 0)
        position[ev.user_id] = i + 1
        ts = SEQUENCE_EPOCH + start[ev.user_id] + i * step_s
        retimed.append((ts, n, replace(ev, ts=ts)))
    retimed.sort(key=lambda r: (r[0], r[1]))
    return [ev for _, _, ev in retimed]


def split_by_time(events: Sequence[Event], fraction: float) -> tuple[list[Event], list[Event]]:
    """The earliest ``fraction`` of events (by time, stable) and the rest."""
    order = sorted(range(len(events)), key=lambda n: (events[n].ts, n))
    cut = round(len(order) * fraction)
    return [events[n] for n in order[:cut]], [events[n] for n in order[cut:]]
