"""Blending: stacking weights favour the informative scorer; contributions add up to the score."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.ensemble import Ensemble, _ndcg10, standardise
from models.evaluation.protocol import leave_one_out
from models.history import user_histories
from models.pipeline import replay_counts
from models.scorers import CovisitationScorer, PopularityScorer
from models.vocab import ItemVocab

from models_synthetic import SYNTHETIC_ITEMS, synthetic_events


@pytest.fixture(scope="module")
def ensemble_and_split() -> tuple[Ensemble, object]:
    events = synthetic_events(n_users=150)
    vocab = ItemVocab(SYNTHETIC_ITEMS)
    scorers = {"popularity": PopularityScorer(vocab), "covisitation": CovisitationScorer(vocab)}
    replay_counts(list(scorers.values()), events)
    return Ensemble(vocab, scorers), leave_one_out(user_histories(events), vocab)


def test_standardise_maps_minus_inf_to_the_row_minimum() -> None:
    z = standardise(torch.tensor([[float("-inf"), 1.0, 2.0, 3.0]]))
    assert torch.isfinite(z).all()
    assert z[0, 0] == z[0, 1] and z[0, 3] > z[0, 2] > z[0, 1]


def test_stacking_weights_the_informative_scorer_higher(ensemble_and_split: tuple[Ensemble, object]) -> None:
    ensemble, split = ensemble_and_split
    weights = ensemble.fit_weights(*split.valid_inputs(), seed=0)  # type: ignore[attr-defined]
    assert weights["covisitation"] > weights["popularity"]


def test_contributions_add_up_to_the_recommended_score(ensemble_and_split: tuple[Ensemble, object]) -> None:
    ensemble, _ = ensemble_and_split
    recs = ensemble.recommend([["synthetic-item-5", "synthetic-item-6"], []], k=5)
    assert [len(r) for r in recs] == [5, 5]
    assert "synthetic-item-7" in [s.item_id for s in recs[0]]
    assert all(s.item_id not in ("synthetic-item-5", "synthetic-item-6") for s in recs[0])
    for s in recs[0]:
        assert set(s.contributions) == {"popularity", "covisitation"}
        assert sum(s.contributions.values()) == pytest.approx(s.score, abs=1e-4)
    assert ensemble.recommend([], k=5) == []


def test_ensemble_round_trips_through_a_checkpoint(ensemble_and_split: tuple[Ensemble, object], tmp_path: object) -> None:
    ensemble, _ = ensemble_and_split
    ensemble.save(tmp_path, extra={"metrics": {"valid": {"hr@10": 0.5}}})  # type: ignore[arg-type]
    loaded, meta = Ensemble.load(tmp_path)  # type: ignore[arg-type]
    assert loaded.weights == ensemble.weights and meta["metrics"]["valid"]["hr@10"] == 0.5
    hist, cands = [["synthetic-item-1"]], SYNTHETIC_ITEMS
    np.testing.assert_array_equal(loaded.score_batch(hist, cands), ensemble.score_batch(hist, cands))


def test_standardise_fast_path_matches_the_general_one() -> None:
    from models.ensemble import _standardise_general

    g = torch.Generator().manual_seed(0)
    scores = torch.randn(8, 500, generator=g) * 3 + 1
    scores[:, 0] = float("-inf")  # padding column only: the fast path
    assert torch.allclose(standardise(scores), _standardise_general(scores), atol=1e-5)
    scores[2, 17] = float("-inf")  # -inf elsewhere: the general path
    assert torch.allclose(standardise(scores), _standardise_general(scores), atol=1e-5)
    scores[2, 17] = float("nan")  # NaN is not finite either: the general path, no NaN out
    z = standardise(scores)
    assert torch.isfinite(z).all() and torch.allclose(z, _standardise_general(scores), atol=1e-5)


def test_a_scorer_alike_for_every_user_is_normalised_once_and_broadcast(
        ensemble_and_split: tuple[Ensemble, object]) -> None:
    ensemble, _ = ensemble_and_split
    items, types = [[1, 2], [3], [4, 5, 6]], [[0, 0], [0], [0, 0, 0]]
    popularity = ensemble.scorers["popularity"]
    calls: list[int] = []
    original = popularity.score_rows
    popularity.score_rows = lambda i, t: calls.append(len(i)) or original(i, t)  # type: ignore[method-assign]
    try:
        part = ensemble.parts(items, types, ["popularity"])["popularity"]
    finally:
        del popularity.score_rows
    assert calls == [1] and part.shape == (3, len(ensemble.vocab))
    assert torch.allclose(part, standardise(original(items, types)), atol=1e-6)


def test_a_zero_weight_scorer_is_not_run_and_changes_no_score(ensemble_and_split: tuple[Ensemble, object]) -> None:
    ensemble, _ = ensemble_and_split
    items, types = [[1, 2], [3]], [[0, 0], [0]]
    zeroed = Ensemble(ensemble.vocab, ensemble.scorers, {"popularity": 0.0, "covisitation": 0.7})
    expected = 0.7 * ensemble.parts(items, types, ["covisitation"])["covisitation"]
    expected[:, 0] = float("-inf")
    calls = []
    popularity = ensemble.scorers["popularity"]
    original = popularity.score_rows
    popularity.score_rows = lambda *a: calls.append(a) or original(*a)  # type: ignore[method-assign]
    try:
        assert torch.equal(zeroed.score_rows(items, types), expected)
        assert calls == []
    finally:
        del popularity.score_rows


def test_a_fit_where_no_scorer_helps_keeps_finite_weights() -> None:
    """Synthetic: every validation target is an item no scorer knows, so no blend ranks it well (until
    2026-12-07 ties by row order beat every blend and the search switched each scorer off); the weights
    must stay a usable, finite blend."""
    vocab = ItemVocab(["X", "A", "B", "C", "D"])
    pop, cov = PopularityScorer(vocab), CovisitationScorer(vocab)
    t = 1e9
    for n, item in enumerate(["A", "B", "C", "D"] * 3):
        pop.observe([], item, "view", t + n)
    cov.observe([("A", "view")], "B", "view", t + 20)
    ens = Ensemble(vocab, {"popularity": pop, "covisitation": cov})
    weights = ens.fit_weights([[vocab.row("A")]] * 20, [[4]] * 20, [vocab.row("X")] * 20)
    assert all(np.isfinite(w) and w >= 0 for w in weights.values()) and sum(weights.values()) == pytest.approx(1.0)


def test_a_blend_that_scores_every_item_alike_earns_no_ndcg_in_the_weight_search() -> None:
    """Synthetic features, all zero: breaking ties by row rewarded the targets on the first rows, so the
    search could favour a blend for the row order of the vocabulary."""
    x = torch.zeros(30, 50, 2)  # (users, n_items, n_scorers)
    y = torch.arange(30)  # targets on rows 1..30 (columns 0..29)
    seen = torch.zeros(30, 50, dtype=torch.bool)
    assert _ndcg10(x, y, seen, torch.tensor([0.5, 0.5])) == 0.0
    x[:, :, 0] = -torch.arange(50.0)  # a scorer that does rank: the first ten targets are hits
    assert _ndcg10(x, y, seen, torch.tensor([1.0, 0.0])) > 0.0
