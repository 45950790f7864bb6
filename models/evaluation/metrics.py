"""Hit rate and NDCG at k from the 0-based rank of each user's single target."""

from __future__ import annotations

import numpy as np

KS = (5, 10, 20)


def hit_rate(ranks: np.ndarray, k: int) -> float:
    """Share of users whose target ranks in the top ``k`` (rank 0 is the best)."""
    return float(np.mean(ranks < k)) if len(ranks) else 0.0


def ndcg(ranks: np.ndarray, k: int) -> float:
    """Mean NDCG@k with one relevant item: 1 / log2(rank + 2) inside the top ``k``, else 0."""
    if not len(ranks):
        return 0.0
    gains = np.where(ranks < k, 1.0 / np.log2(ranks.astype(np.float64) + 2.0), 0.0)
    return float(np.mean(gains))


def ranking_metrics(ranks: np.ndarray, ks: tuple[int, ...] = KS) -> dict[str, float]:
    """``{"hr@5": ..., "ndcg@5": ..., ...}`` for every k in ``ks``."""
    out: dict[str, float] = {}
    for k in ks:
        out[f"hr@{k}"] = hit_rate(ranks, k)
        out[f"ndcg@{k}"] = ndcg(ranks, k)
    return out
