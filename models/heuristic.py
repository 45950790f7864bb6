"""The baseline scorer: time-decayed popularity blended with co-visitation.

It explains itself: every recommended item carries the share of its score
that came from each signal, and for co-visitation the user's item that led
to it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from models.topk import top_k

MODEL_NAME = "popcovis"


@dataclass(frozen=True)
class HeuristicConfig:
    """Blend weights and candidate limits of the baseline scorer."""

    covis_weight: float = 1.0
    popularity_weight: float = 0.3
    recent_items: int = 5  # how many of the user's latest distinct items seed co-visitation


@dataclass(frozen=True)
class Scored:
    """One recommended item with its score and why it was chosen."""

    item_id: str
    score: float
    contributions: Mapping[str, float] = field(default_factory=dict)
    because_of: str | None = None


def recent_distinct(items: Sequence[str], n: int) -> list[str]:
    """The user's ``n`` latest distinct items, newest first."""
    out: list[str] = []
    for item in reversed(items):
        if item not in out:
            out.append(item)
            if len(out) == n:
                break
    return out


def score_user(
    history: Sequence[str],
    popular: Sequence[tuple[str, float]],
    neighbors: Mapping[str, Mapping[str, float]],
    *,
    k: int,
    exclude: set[str] | frozenset[str] = frozenset(),
    config: HeuristicConfig = HeuristicConfig(),
) -> list[Scored]:
    """Top-k items for one user.

    ``history``: the user's item ids, oldest first. ``popular``: (item, log2
    forward-decay popularity), any order. ``neighbors``: item -> {neighbour:
    log2 co-visitation weight}. Both signals are scaled to [0, 1] (by their
    maximum) before blending; a user's more recent items weigh more (1/rank).
    """
    covis: dict[str, float] = {}
    source: dict[str, tuple[float, str]] = {}
    for rank, seed in enumerate(recent_distinct(history, config.recent_items), start=1):
        nbrs = neighbors.get(seed)
        if not nbrs:
            continue
        top = max(nbrs.values())
        for item, log_w in nbrs.items():
            part = 2.0 ** (log_w - top) / rank
            covis[item] = covis.get(item, 0.0) + part
            if part > source.get(item, (0.0, ""))[0]:
                source[item] = (part, seed)
    covis_max = max(covis.values(), default=0.0)
    pop_max = max((s for _, s in popular), default=0.0)
    pop = {item: 2.0 ** (s - pop_max) for item, s in popular}

    scores: dict[str, tuple[float, float]] = {}
    for item in covis.keys() | pop.keys():
        if item in exclude:
            continue
        c = config.covis_weight * covis.get(item, 0.0) / covis_max if covis_max else 0.0
        p = config.popularity_weight * pop.get(item, 0.0)
        scores[item] = (c, p)

    best = top_k({item: c + p for item, (c, p) in scores.items()}, k)
    return [
        Scored(
            item_id=item,
            score=score,
            contributions={"covisitation": scores[item][0], "popularity": scores[item][1]},
            because_of=source[item][1] if item in source else None,
        )
        for item, score in best
    ]
