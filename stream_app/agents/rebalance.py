"""What a worker forgets when a rebalance takes partitions away (its monitors' users and items)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import faust

log = logging.getLogger(__name__)


def forget_on_rebalance(app: faust.App, topic: str, forget: Callable[[set[int]], int], what: str) -> None:
    """After every rebalance, call ``forget`` with the partitions of ``topic`` this worker now holds (it drops
    what it kept of the others and returns how many); the count is logged as ``what`` moved away."""

    @app.on_partitions_assigned.connect
    async def forget_moved_away(_app: faust.App, assigned: set, **_: object) -> None:
        moved = forget({tp.partition for tp in assigned if tp.topic == topic})
        if moved:
            log.info("%d %s moved to another worker forgotten", moved, what)
