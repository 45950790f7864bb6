"""Time-decayed item popularity and item-to-item co-visitation, in log space.

Forward decay (Cormode et al., ICDE 2009): an interaction at time ``ts`` adds
``w * 2**(ts / half_life)`` to a running sum. Dividing every sum by the same
``2**(now / half_life)`` gives exponentially decayed counts, so the ranking of
the sums never changes with the clock and a sum is only ever increased, never
rewritten for decay. Sums are kept as base-2 logarithms so that years of
Unix time never overflow a float (``log2_add`` adds two sums).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, MutableMapping, Sequence

NEG_INF = float("-inf")

# Default weight of each event type in popularity and co-visitation.
EVENT_WEIGHTS: Mapping[str, float] = {"view": 1.0, "click": 2.0, "add_to_cart": 4.0, "purchase": 8.0}


def log2_add(a: float, b: float) -> float:
    """log2(2**a + 2**b) without overflow."""
    hi, lo = (a, b) if a >= b else (b, a)
    if lo == NEG_INF:
        return hi
    return hi + math.log2(1.0 + 2.0 ** (lo - hi))


def log_weight(ts: float, weight: float, half_life_s: float) -> float:
    """The forward-decayed log2 weight of one interaction."""
    return ts / half_life_s + math.log2(weight)


def decayed(log_sum: float, now: float, half_life_s: float) -> float:
    """The decayed count at time ``now`` of a forward-decay log sum."""
    return 2.0 ** (log_sum - now / half_life_s)


def covisit_pairs(
    previous_items: Sequence[str], item: str, window: int
) -> list[tuple[str, float]]:
    """The ``window`` distinct items the user touched just before ``item`` and their pair weight 1/distance.

    ``previous_items`` is oldest first, read from its end until ``window`` are
    found (however many repeats come between); the same item as ``item`` is
    skipped and each previous item counts once, at its most recent position.
    """
    pairs: list[tuple[str, float]] = []
    seen = {item}
    distance = 0
    for prev in reversed(previous_items):
        distance += 1
        if prev in seen:
            continue
        seen.add(prev)
        pairs.append((prev, 1.0 / distance))
        if len(pairs) >= window:
            break
    return pairs


def strongest(neighbors: Mapping[str, float], n: int) -> dict[str, float]:
    """The ``n`` strongest of ``neighbors`` (all of them when there are no more), strongest first."""
    if len(neighbors) <= n:
        return dict(neighbors)
    return dict(sorted(neighbors.items(), key=lambda kv: kv[1], reverse=True)[:n])


def add_neighbor(
    neighbors: MutableMapping[str, float], item: str, log_w: float, max_neighbors: int
) -> None:
    """Add weight to one neighbour; keep the ``max_neighbors`` strongest.

    Prunes only when the map grows to twice its bound, so the cost is amortised:
    it may hold up to ``2 * max_neighbors - 1`` (``strongest`` for the top ones).
    """
    neighbors[item] = log2_add(neighbors.get(item, NEG_INF), log_w)
    if len(neighbors) >= 2 * max_neighbors:
        keep = sorted(neighbors.items(), key=lambda kv: kv[1], reverse=True)[:max_neighbors]
        neighbors.clear()
        neighbors.update(keep)
