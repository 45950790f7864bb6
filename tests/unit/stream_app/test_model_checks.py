"""A checkpoint that cannot score is refused at a swap and passed over at start (synthetic tiny ensembles)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from models.data.events import Event
from models.ensemble import Ensemble
from models.model_store import ModelStore
from models.pipeline import replay_counts
from models.scorers import CovisitationScorer, PopularityScorer
from models.scorers.sequence import SequenceScorer
from models.sequence.config import SeqConfig
from models.vocab import ItemVocab
from stream_app.model_scoring import EnsembleRecommender
from stream_app.model_updates import check_scores
from stream_app.settings import Settings
from stream_app.sinks.memory import MemoryStore
from stream_app.worker import make_recommender

TINY = SeqConfig(hidden=32, layers=1, heads=2, max_len=8, dropout=0.0)
ITEMS = [f"synthetic-item-{i}" for i in range(30)]
EVENTS = [Event(f"synthetic-user-{u}", ITEMS[(u + j) % 30], "click", 1_700_000_000.0 + j)  # i -> i+1 walks
          for u in range(60) for j in range(5)]


def tiny_ensemble(config: SeqConfig = TINY) -> Ensemble:
    vocab = ItemVocab(ITEMS)
    scorers = {"sequence": SequenceScorer(vocab, config, seed=1), "covisitation": CovisitationScorer(vocab),
               "popularity": PopularityScorer(vocab)}
    replay_counts([scorers["covisitation"], scorers["popularity"]], EVENTS)
    return Ensemble(vocab, scorers, {"sequence": 0.5, "covisitation": 0.3, "popularity": 0.2})


def diverged() -> Ensemble:
    """What a fine-tuning step gone NaN leaves: a valid checkpoint whose transformer scores NaN."""
    ensemble = tiny_ensemble()
    with torch.no_grad():
        for p in ensemble.scorers["sequence"].model.trunk.parameters():
            p.fill_(float("nan"))
    return ensemble


def test_a_model_that_scores_is_accepted() -> None:
    check_scores(EnsembleRecommender(tiny_ensemble(), version="good"))


@pytest.mark.parametrize("broken", [diverged, lambda: tiny_ensemble(replace(TINY, n_event_types=3))],
                         ids=["nan-transformer", "too-few-event-types"])
def test_a_model_whose_transformer_cannot_score_is_refused(broken) -> None:
    """An empty history never runs the transformer; the check's other histories do, with each event type."""
    recommender = EnsembleRecommender(broken(), version="broken")
    assert recommender.rank([[]], [set()])[0]  # what the check used to look at: fine
    with pytest.raises((ValueError, IndexError)):
        check_scores(recommender)


def test_a_nan_transformer_is_refused_on_the_reference_path_too() -> None:
    """An ensemble the serving blend cannot take (one with the title scorer) scores through the ensemble,
    which standardises each scorer: NaN scores become a constant there, and looked fine."""
    recommender = EnsembleRecommender(diverged(), version="broken")
    recommender.blend = None  # as for an ensemble ``serving_form`` does not support
    assert all(s.score == s.score for s in recommender.rank([[(ITEMS[1], "view")]], [set()])[0])  # finite
    with pytest.raises(ValueError, match="scorer 'sequence' gives non-finite scores"):
        check_scores(recommender)


def test_a_starting_worker_passes_over_a_serving_version_it_cannot_score(tmp_path) -> None:
    store = ModelStore(tmp_path / "store")
    good = store.save(tiny_ensemble())
    store.promote(good)
    bad = store.save(diverged())
    store.promote(bad)
    settings = Settings(model_store=str(store.root), device="cpu")
    recommender = make_recommender(settings, MemoryStore())
    assert isinstance(recommender, EnsembleRecommender)
    version_of = {v: EnsembleRecommender.from_checkpoint(store.path(v)).model_version for v in (good, bad)}
    assert recommender.model_version == version_of[good] != version_of[bad]


def test_a_worker_with_nothing_it_can_serve_says_so(tmp_path) -> None:
    store = ModelStore(tmp_path / "store")
    store.promote(store.save(diverged()))
    with pytest.raises(RuntimeError, match="no checkpoint the worker can serve"):
        make_recommender(Settings(model_store=str(store.root), device="cpu"), MemoryStore())
