"""The skeleton's recommender: popularity + co-visitation from the shared store."""

from __future__ import annotations

from collections.abc import Mapping

from models.item_stats import log2_add
from models.heuristic import MODEL_NAME, HeuristicConfig, Scored, recent_distinct, score_user
from stream_app.settings import Settings
from stream_app.sinks.base import Store
from stream_app.state import ItemActivity, UserState, history_items


class HeuristicRecommender:
    """Scores a micro-batch of users with one store round trip for item features."""

    uses_item_activity = True  # fresh popularity and co-visitation come from the item-stats agent

    def __init__(self, store: Store, settings: Settings, version: int = 1) -> None:
        self.store = store
        self.settings = settings
        self.config = HeuristicConfig(
            covis_weight=settings.covis_weight, popularity_weight=settings.popularity_weight
        )
        self.model_version = f"{MODEL_NAME}-{version}"

    async def recommend(
        self, users: Mapping[str, UserState], fresh: Mapping[str, ItemActivity]
    ) -> dict[str, list[Scored]]:
        histories = {u: history_items(s) for u, s in users.items()}
        seeds = {i for h in histories.values() for i in recent_distinct(h, self.config.recent_items)}
        popular, neighbors = await self.store.item_features(seeds, self.settings.popular_candidates)
        popular = add_fresh_popularity(popular, fresh)
        add_fresh_neighbors(neighbors, fresh, seeds)
        return {u: self._top_k(histories[u], set(users[u]["bought"]), popular, neighbors) for u in users}

    def _top_k(self, history: list[str], bought: set[str], popular: list[tuple[str, float]],
               neighbors: Mapping[str, Mapping[str, float]]) -> list[Scored]:
        """The top-k without the history's items or what was bought (as ``model_scoring.exclusions``); only a
        list that would be short takes history items (not bought ones) after the rest: right after a burst,
        before the item-stats agent has published much popularity, it would otherwise be empty."""
        k = self.settings.top_k
        ranked = score_user(history, popular, neighbors, k=k, exclude=set(history) | bought, config=self.config)
        if len(ranked) < k:
            chosen = {s.item_id for s in ranked}
            again = score_user(history, popular, neighbors, k=k, exclude=bought | chosen, config=self.config)
            ranked += again[: k - len(ranked)]
        return ranked


def add_fresh_popularity(
    popular: list[tuple[str, float]], fresh: Mapping[str, ItemActivity]
) -> list[tuple[str, float]]:
    """Stored popularity plus this batch's increments (not yet in the store)."""
    merged = dict(popular)
    for item, act in fresh.items():
        if act.popularity != float("-inf"):
            merged[item] = log2_add(merged.get(item, float("-inf")), act.popularity)
    return list(merged.items())


def add_fresh_neighbors(
    neighbors: dict[str, dict[str, float]], fresh: Mapping[str, ItemActivity], seeds: set[str]
) -> None:
    """Add this batch's co-visitation (not yet in the store) to the stored neighbours.

    So that a click changes the next list at once, before the item agent's
    update has gone round through the item-activity topic.
    """
    for seed in seeds:
        act = fresh.get(seed)
        if act is None or not act.neighbors:
            continue
        merged = neighbors.setdefault(seed, {})
        for item, log_w in act.neighbors.items():
            merged[item] = log2_add(merged.get(item, float("-inf")), log_w)
