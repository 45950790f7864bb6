"""A shopper without a stored list gets the serving model's list for an empty history."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref

from models.data.events import Event
from models.ensemble import Ensemble
from models.pipeline import replay_counts
from models.scorers import CovisitationScorer, PopularityScorer
from models.vocab import ItemVocab
from stream_app.cold_start import ColdStartList
from stream_app.model_scoring import EnsembleRecommender
from stream_app.model_updates import ModelSlot
from stream_app.scoring import HeuristicRecommender
from stream_app.settings import Settings
from stream_app.sinks.memory import MemoryStore

SETTINGS = Settings(top_k=3, partitions=1)


def popular_store(pops: dict[str, float]) -> MemoryStore:
    store = MemoryStore()
    asyncio.run(store.publish_item_stats({item: {"pop": p, "nbrs": {}} for item, p in pops.items()}))
    return store


def ids(record) -> list[str]:
    return [i["item_id"] for i in record["items"]]


def test_a_user_without_a_list_gets_the_most_popular_items_marked_as_a_fallback() -> None:
    store = popular_store({"a": 5.0, "b": 9.0, "c": 7.0, "d": 1.0})
    record = asyncio.run(ColdStartList(ModelSlot(HeuristicRecommender(store, SETTINGS))).record("new-user"))
    assert ids(record) == ["b", "c", "a"]
    assert record["user_id"] == "new-user" and record["fallback"] == "no_history"
    assert record["model_version"] == "popcovis-1" and record["events_seen"] is None and record["event_ts"] is None
    assert all(i["contributions"]["popularity"] > 0 and not i["contributions"]["covisitation"]
               for i in record["items"])  # an empty history has nothing co-visited


def test_nothing_to_recommend_yet_is_none() -> None:
    assert asyncio.run(ColdStartList(ModelSlot(HeuristicRecommender(MemoryStore(), SETTINGS))).record("u")) is None


def test_the_list_is_scored_once_per_interval_and_again_after_a_swap() -> None:
    store = popular_store({"a": 5.0, "b": 9.0, "c": 7.0})
    slot = ModelSlot(HeuristicRecommender(store, SETTINGS))
    cold = ColdStartList(slot, ttl_s=60.0)
    first = asyncio.run(cold.record("u1"))
    asyncio.run(store.publish_item_stats({"z": {"pop": 20.0, "nbrs": {}}}))
    assert ids(asyncio.run(cold.record("u2"))) == ids(first) == ["b", "c", "a"]  # within the interval
    slot.stage(HeuristicRecommender(store, SETTINGS, version=2), {"version": "popcovis-2"})
    swapped = asyncio.run(cold.record("u3"))
    assert ids(swapped) == ["z", "b", "c"] and swapped["model_version"] == "popcovis-2"
    asyncio.run(store.publish_item_stats({"y": {"pop": 30.0, "nbrs": {}}}))
    assert ids(asyncio.run(ColdStartList(slot, ttl_s=0.0).record("u4")))[0] == "y"


def test_a_version_swapped_out_is_freed_without_waiting_for_the_next_new_shopper() -> None:
    """The list held its version's recommender (a whole ensemble, for a trained model) until a new shopper
    asked after the swap; a worker that serves few new shoppers kept two versions in memory."""
    store = popular_store({"a": 5.0, "b": 9.0})
    slot = ModelSlot(HeuristicRecommender(store, SETTINGS))
    cold = ColdStartList(slot, ttl_s=60.0)
    assert ids(asyncio.run(cold.record("u1"))) == ["b", "a"]
    old = weakref.ref(slot.serving)
    slot.stage(HeuristicRecommender(store, SETTINGS, version=2), {"version": "popcovis-2"})
    gc.collect()
    assert old() is None
    assert asyncio.run(cold.record("u2"))["model_version"] == "popcovis-2"


def test_the_trained_ensemble_answers_with_its_own_popularity_and_version() -> None:
    items = [f"synthetic-item-{i}" for i in range(6)]
    # synthetic: item i bought by i + 1 shoppers, so the higher the number the more popular
    events = [Event(f"synthetic-user-{u}", items[i], "purchase", 1_700_000_000.0 + u)
              for i in range(6) for u in range(i + 1)]
    vocab = ItemVocab(items)
    scorers = {"covisitation": CovisitationScorer(vocab), "popularity": PopularityScorer(vocab)}
    replay_counts(list(scorers.values()), events, holdout=0)
    ensemble = Ensemble(vocab, scorers, {"covisitation": 0.5, "popularity": 0.5})
    recommender = EnsembleRecommender(ensemble, version="v-test", k=3)
    try:
        record = asyncio.run(ColdStartList(ModelSlot(recommender)).record("new-user"))
    finally:
        recommender.close()
    assert ids(record) == ["synthetic-item-5", "synthetic-item-4", "synthetic-item-3"]
    assert record["model_version"] == "v-test" and record["fallback"] == "no_history"


class SlowBaseline(HeuristicRecommender):
    """The baseline taking ``delay_s`` to score, as the ensemble does behind a batch; counts its scorings."""

    def __init__(self, store: MemoryStore, delay_s: float) -> None:
        super().__init__(store, SETTINGS)
        self.delay_s, self.calls = delay_s, 0

    async def recommend(self, users, fresh):
        self.calls += 1
        await asyncio.sleep(self.delay_s)
        return await super().recommend(users, fresh)


def test_new_shoppers_arriving_together_share_one_scoring() -> None:
    """With the ensemble each scoring queues on the stream's scoring thread: 200 new shoppers at once scored
    the empty history 200 times ahead of the stream's next batch (a review helper's script)."""
    recommender = SlowBaseline(popular_store({"a": 5.0, "b": 9.0}), delay_s=0.01)
    cold = ColdStartList(ModelSlot(recommender))

    async def burst():
        return await asyncio.gather(*(cold.record(f"new-{n}") for n in range(200)))

    records = asyncio.run(burst())
    assert recommender.calls == 1 and all(ids(r) == ["b", "a"] for r in records)
    assert {r["user_id"] for r in records} == {f"new-{n}" for n in range(200)}


def test_a_scoring_slower_than_the_interval_is_still_the_only_one() -> None:
    """Behind a long batch on the scoring thread the scoring can take longer than its interval: requests
    meanwhile wait for it rather than queue more (a review helper's script queued 16 at once)."""
    recommender = SlowBaseline(popular_store({"a": 5.0}), delay_s=0.3)
    cold = ColdStartList(ModelSlot(recommender), ttl_s=0.05)

    async def stream_of_requests():
        pending = []
        for n in range(20):
            pending.append(asyncio.ensure_future(cold.record(f"new-{n}")))
            await asyncio.sleep(0.01)
        return await asyncio.gather(*pending)

    assert len(asyncio.run(stream_of_requests())) == 20 and recommender.calls == 1


def test_a_slow_scoring_serves_for_its_interval_after_it_finished() -> None:
    """Counted from when it was asked for, a scoring slower than the interval was stale on arrival, and each
    request after it waited for a new one (a review helper's script: none of 30 answered from a finished one)."""
    recommender = SlowBaseline(popular_store({"a": 5.0}), delay_s=0.2)
    cold = ColdStartList(ModelSlot(recommender), ttl_s=0.1)

    async def after_the_first():
        await cold.record("first")
        started = time.monotonic()
        await cold.record("second")  # right after: the finished scoring answers at once
        return time.monotonic() - started

    assert asyncio.run(after_the_first()) < 0.05 and recommender.calls == 1
