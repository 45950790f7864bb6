"""Top-k selection with a deterministic tie-break."""

from __future__ import annotations

import heapq
from collections.abc import Mapping


def top_k(scores: Mapping[str, float], k: int) -> list[tuple[str, float]]:
    """The ``k`` best (item, score) pairs, best first; ties go to the smaller item id."""
    if k <= 0:
        return []
    return heapq.nsmallest(k, scores.items(), key=lambda kv: (-kv[1], kv[0]))
