"""One contract suite run over every scorer (and the ensemble's string interface)."""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import pytest
import torch

from models.checkpoint import load_checkpoint, save_checkpoint
from models.evaluation.protocol import leave_one_out
from models.history import user_histories
from models.pipeline import replay_counts
from models.scorers import CovisitationScorer, PopularityScorer, Scorer, SequenceScorer, TextScorer
from models.vocab import ItemVocab

from models_synthetic import SYNTHETIC_ITEMS, TINY_SEQ, TINY_TRAIN, synthetic_events, synthetic_titles


def fake_encoder(titles: list[str]) -> torch.Tensor:
    """Deterministic bag-of-words vectors (a stand-in for MiniLM in contract tests)."""
    out = torch.zeros((len(titles), 384))
    for n, title in enumerate(titles):
        for word in title.split():
            out[n, sum(map(ord, word)) % 384] += 1.0
    return torch.nn.functional.normalize(out, dim=-1)


def build_popularity(seed: int) -> Scorer:
    vocab = ItemVocab(SYNTHETIC_ITEMS, capacity=8)
    scorer = PopularityScorer(vocab)
    replay_counts([scorer], synthetic_events(seed=seed))
    return scorer


def build_covisitation(seed: int) -> Scorer:
    vocab = ItemVocab(SYNTHETIC_ITEMS, capacity=8)
    scorer = CovisitationScorer(vocab)
    replay_counts([scorer], synthetic_events(seed=seed))
    return scorer


def build_sequence(seed: int) -> Scorer:
    vocab = ItemVocab(SYNTHETIC_ITEMS, capacity=64)
    split = leave_one_out(user_histories(synthetic_events(seed=seed)), vocab)
    scorer = SequenceScorer(vocab, TINY_SEQ, seed=seed)
    scorer.fit(split.fit_items, split.fit_types, TINY_TRAIN, progress=False)
    return scorer


def build_text(seed: int) -> Scorer:
    vocab = ItemVocab(SYNTHETIC_ITEMS, capacity=8)
    scorer = TextScorer(vocab, encoder=fake_encoder)
    scorer.add_titles(synthetic_titles())
    return scorer


BUILDERS: dict[str, Callable[[int], Scorer]] = {
    "popularity": build_popularity,
    "covisitation": build_covisitation,
    "sequence": build_sequence,
    "text": build_text,
}
HISTORIES = [
    ["synthetic-item-1", "synthetic-item-2"],
    [("synthetic-item-7", "view"), ("synthetic-item-8", "add_to_cart")],
    [],
]
CANDIDATES = ["synthetic-item-3", "synthetic-item-9", "synthetic-item-30", "synthetic-item-0"]


@pytest.fixture(params=sorted(BUILDERS), scope="module")
def scorer_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def scorer(scorer_name: str) -> Scorer:
    return BUILDERS[scorer_name](0)


def test_scores_have_one_row_per_user_and_column_per_candidate(scorer: Scorer) -> None:
    scores = scorer.score_batch(HISTORIES, CANDIDATES)
    assert scores.shape == (3, 4)
    assert scores.dtype == np.float32
    assert np.isfinite(scores).all()


def test_deterministic_with_a_seed(scorer_name: str, scorer: Scorer) -> None:
    again = BUILDERS[scorer_name](0)
    np.testing.assert_array_equal(scorer.score_batch(HISTORIES, CANDIDATES), again.score_batch(HISTORIES, CANDIDATES))


def test_input_not_mutated(scorer: Scorer) -> None:
    histories, candidates = copy.deepcopy(HISTORIES), list(CANDIDATES)
    scorer.score_batch(histories, candidates)
    assert histories == HISTORIES
    assert candidates == CANDIDATES


def test_save_load_round_trip(scorer: Scorer, tmp_path: object) -> None:
    path = save_checkpoint(tmp_path, scorer.vocab, {"only": scorer})  # type: ignore[arg-type]
    vocab, loaded, _ = load_checkpoint(path)
    assert type(loaded["only"]) is type(scorer)
    assert vocab.items == scorer.vocab.items
    np.testing.assert_array_equal(loaded["only"].score_batch(HISTORIES, CANDIDATES), scorer.score_batch(HISTORIES, CANDIDATES))


def test_empty_batch(scorer: Scorer) -> None:
    assert scorer.score_batch([], CANDIDATES).shape == (0, 4)
    assert scorer.score_batch(HISTORIES, []).shape == (3, 0)


def test_unknown_items(scorer: Scorer) -> None:
    with_unknown = [["never-seen-item", *HISTORIES[0]]]
    scores = scorer.score_batch(with_unknown, [*CANDIDATES, "never-seen-item"])
    assert scores[0, -1] == -np.inf  # unknown candidate ranks last
    np.testing.assert_array_equal(scores[0, :-1], scorer.score_batch(HISTORIES[:1], CANDIDATES)[0])
    assert "never-seen-item" not in scorer.vocab
