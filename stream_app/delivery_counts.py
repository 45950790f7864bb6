"""Counting each delivered event once, against the highest offset already counted per partition.

Pure code shared by the stores: the memory store runs ``tally`` itself,
the Redis store runs the same rule in the script of its write.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

PROCESSED, QUARANTINED, REJECTED = "p", "q", "r"  # how a delivered event is counted (quarantined: processed, held)
Deliveries = dict[int, list[tuple[int, str]]]  # events partition -> [(offset, kind)] of one batch


def tally(deliveries: Mapping[int, Sequence[tuple[int, str]]],
          counted: Mapping[int, int]) -> tuple[Counter[str], dict[int, int]]:
    """The counts of ``deliveries`` against the counted offsets (partition -> highest offset counted, -1:
    none), and the offsets to raise them to.

    An event above its partition's counted offset is counted now, as
    processed (and quarantined, if held back) or rejected; one at or below
    it was counted on an earlier delivery and is a duplicate. The Redis
    store runs the same rule in its write's script (``stream_app.sinks.redis.COUNT_ONCE``),
    so the check and the counting are one atomic step.
    """
    counts: Counter[str] = Counter(processed=0, rejected=0, duplicates=0)
    newest: dict[int, int] = {}
    for partition, events in deliveries.items():
        floor = counted.get(partition, -1)
        for offset, kind in events:
            if offset <= floor:
                counts["duplicates"] += 1
                continue
            counts["rejected" if kind == REJECTED else "processed"] += 1
            if kind == QUARANTINED:
                counts["quarantined"] += 1
            newest[partition] = max(offset, newest.get(partition, -1))
    return counts, newest
