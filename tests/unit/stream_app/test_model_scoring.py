"""The stream's ensemble recommender on a tiny synthetic ensemble (no broker, no Redis)."""

from __future__ import annotations

import asyncio

from models.data.events import Event
from models.ensemble import Ensemble
from models.pipeline import replay_counts
from models.scorers import CovisitationScorer, PopularityScorer
from models.vocab import ItemVocab
from stream_app.model_scoring import EnsembleRecommender, model_version
from stream_app.state import StateConfig, apply_events

ITEMS = [f"synthetic-item-{i}" for i in range(30)]


def _recommender() -> EnsembleRecommender:
    """Synthetic shoppers who always go item i -> item i+1."""
    vocab = ItemVocab(ITEMS)
    events = [Event(f"synthetic-user-{u}", ITEMS[(u + j) % 30], "click", 1_700_000_000.0 + j)
              for u in range(60) for j in range(5)]
    scorers = {"popularity": PopularityScorer(vocab), "covisitation": CovisitationScorer(vocab)}
    replay_counts(list(scorers.values()), events)
    return EnsembleRecommender(Ensemble(vocab, scorers, {"popularity": 0.1, "covisitation": 1.0}),
                               version="test-1", k=5)


def _state(*events: Event):
    state, _, _ = apply_events(None, list(enumerate(events)), {}, StateConfig())
    return state


def test_next_item_comes_first_and_bought_items_are_excluded():
    rec = _recommender()
    users = {
        "a": _state(Event("a", ITEMS[3], "view", 1.0)),
        "b": _state(Event("b", ITEMS[3], "view", 1.0), Event("b", ITEMS[4], "purchase", 2.0)),
    }
    out = asyncio.run(rec.recommend(users, {}))
    assert out["a"][0].item_id == ITEMS[4]
    assert ITEMS[4] not in {s.item_id for s in out["b"]}  # bought: excluded
    assert out["b"][0].item_id == ITEMS[5]
    for items in out.values():
        assert len(items) == 5
        for s in items:
            assert set(s.contributions) == {"popularity", "covisitation"}
            assert abs(sum(s.contributions.values()) - s.score) < 1e-4
    rec.close()


def test_items_the_user_already_touched_are_not_recommended_on_either_path():
    """The model is trained and judged without the history's items, so it serves without them too (until
    2026-12-07 only bought items were left out, and a viewed item could come back as its own recommendation)."""
    rec = _recommender()
    assert rec.blend is not None
    touched = [ITEMS[3], ITEMS[4], ITEMS[6]]
    users = {"a": _state(*[Event("a", item, "view", float(n)) for n, item in enumerate(touched)])}
    fast = asyncio.run(rec.recommend(users, {}))["a"]
    rec.blend = None  # the reference path (an ensemble the serving form cannot express)
    reference = asyncio.run(rec.recommend(users, {}))["a"]
    rec.close()
    for ranked in (fast, reference):
        assert len(ranked) == 5 and not set(touched) & {s.item_id for s in ranked}
    assert [s.item_id for s in fast] == [s.item_id for s in reference]


def test_model_version_names_the_weights():
    assert model_version({"model_version": "v7"}) == "v7"
    assert model_version({"checksum": {"sha256": "abcdef0123456789"}}) == "ensemble-abcdef012345"
