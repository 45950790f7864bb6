"""The serving blend must recommend exactly what the reference ``Ensemble.recommend`` does."""

from __future__ import annotations

import copy

import pytest
import torch

from models.ensemble import Ensemble
from models.evaluation.prequential import MISS, rank_samples
from models.linear_blend import LinearBlend, supports
from models.online.samples import TrainingSample
from models.pipeline import replay_counts
from models.scorers import CovisitationScorer, PopularityScorer
from models.scorers.sequence import SequenceScorer
from models.scorers.text import TextScorer
from models.sequence.config import SeqConfig
from models.vocab import ItemVocab

from models_synthetic import SYNTHETIC_ITEMS, synthetic_events


@pytest.fixture(scope="module")
def ensemble() -> Ensemble:
    events = synthetic_events(n_users=120)
    vocab = ItemVocab(SYNTHETIC_ITEMS)
    scorers = {
        "sequence": SequenceScorer(vocab, SeqConfig(hidden=32, layers=1, heads=2, max_len=8, dropout=0.0), seed=1),
        "covisitation": CovisitationScorer(vocab),
        "popularity": PopularityScorer(vocab),
    }
    replay_counts([scorers["covisitation"], scorers["popularity"]], events)
    return Ensemble(vocab, scorers, {"sequence": 0.5, "covisitation": 0.3, "popularity": 0.2})


def _histories() -> list[list[tuple[str, str]]]:
    items = SYNTHETIC_ITEMS
    return [
        [(items[(5 * u + j) % len(items)], "view" if j % 2 else "purchase") for j in range(u % 9)]
        for u in range(24)
    ] + [[("never-seen-item", "view")]]  # unknown items only: no evidence from any scorer


def test_linear_blend_matches_the_reference_ensemble(ensemble: Ensemble) -> None:
    histories = _histories()
    bought = [{h[0][0]} if h else set() for h in histories]
    want = ensemble.recommend(histories, 10, exclude_seen=False, exclude=bought)
    got = LinearBlend(ensemble).recommend(histories, 10, exclude=bought)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert [s.item_id for s in g] == [s.item_id for s in w]
        for gs, ws in zip(g, w):
            assert gs.score == pytest.approx(ws.score, abs=1e-4)
            assert gs.contributions == pytest.approx(ws.contributions, abs=1e-4)
            assert sum(gs.contributions.values()) == pytest.approx(gs.score, abs=1e-4)


def test_excluded_items_never_come_back(ensemble: Ensemble) -> None:
    histories = _histories()[:5]
    first = LinearBlend(ensemble).recommend(histories, 10)
    exclude = [{s.item_id for s in recs[:3]} for recs in first]
    again = LinearBlend(ensemble).recommend(histories, 10, exclude=exclude)
    for ex, recs in zip(exclude, again):
        assert ex.isdisjoint(s.item_id for s in recs) and len(recs) == 10


def test_bf16_weights_rank_like_fp32(ensemble: Ensemble) -> None:
    fp32 = LinearBlend(ensemble).recommend(_histories(), 10)
    seq = ensemble.scorers["sequence"]
    assert isinstance(seq, SequenceScorer)
    original = seq.model
    try:
        seq.model = copy.deepcopy(original).to(dtype=torch.bfloat16)
        bf16 = LinearBlend(ensemble).recommend(_histories(), 10)
    finally:
        seq.model = original
    overlap = sum(len({s.item_id for s in a} & {s.item_id for s in b}) for a, b in zip(fp32, bf16))
    assert overlap / sum(len(a) for a in fp32) >= 0.9


def test_a_text_scorer_is_not_supported(ensemble: Ensemble) -> None:
    assert supports(ensemble)
    with_text = Ensemble(ensemble.vocab, {**ensemble.scorers, "text": TextScorer.__new__(TextScorer)})
    assert not supports(with_text)
    with pytest.raises(ValueError):
        LinearBlend(with_text)


def test_each_item_names_the_recent_item_it_was_co_visited_with_most(ensemble: Ensemble) -> None:
    covis = ensemble.scorers["covisitation"]
    assert isinstance(covis, CovisitationScorer)
    histories = _histories()
    named = 0
    for history, recs in zip(histories, LinearBlend(ensemble).recommend(histories, 10)):
        seeds = list(dict.fromkeys(item for item, _ in reversed(history)))[: covis.config.recent_items]
        for s in recs:
            parts = {}  # the seed's relative co-visitation with the item, weighted 1/recency rank
            for rank, seed in enumerate(seeds, start=1):
                nbrs = covis.neighbors.get(seed, {})
                if s.item_id in nbrs:
                    parts[seed] = 2.0 ** (nbrs[s.item_id] - max(nbrs.values())) / rank
            if not parts:
                assert s.because_of is None, s
                continue
            named += 1
            assert s.because_of in parts and parts[s.because_of] == pytest.approx(max(parts.values()), rel=1e-5)
    assert named > 20  # the check saw real co-visitation, not only empty explanations


@pytest.mark.parametrize("weights", [(0.5, 0.3, 0.2), (0.0, 1.0, 0.0)])  # co-visitation only: ties everywhere
def test_target_ranks_equal_the_reference_ranking(ensemble: Ensemble, weights: tuple[float, ...]) -> None:
    blended = copy.deepcopy(ensemble)
    blended.weights = dict(zip(["sequence", "covisitation", "popularity"], weights))
    items = SYNTHETIC_ITEMS
    histories = _histories()
    samples = [TrainingSample(f"u{u}", [i for i, _ in h], [t for _, t in h], target, "view", 1.0, 0, "v1")
               for u, h in enumerate(histories)
               for target in (items[(7 * u + 3) % len(items)], items[(11 * u + 1) % len(items)], "unknown-target")]
    samples += [TrainingSample("again", [items[4], items[2]], ["view", "view"], items[4], "view", 1.0, 0, "v1")]
    want = rank_samples(blended, samples)
    got = rank_samples(blended, samples, linear=LinearBlend(blended), batch_size=16)
    assert (want == MISS).sum() == len(histories)  # every unknown target is a miss on both paths
    assert got.tolist() == want.tolist()  # ties (equal scores) counted against the target alike
    assert len(set(want[want < MISS].tolist())) > 5  # the targets do rank differently


def test_with_every_item_tied_no_target_is_a_hit_on_either_path(ensemble: Ensemble) -> None:
    """Co-visitation alone and empty histories: every item scores the same, so each target has every
    other item tied with it (breaking ties by row gave the first rows free hits)."""
    blended = copy.deepcopy(ensemble)
    blended.weights = {"sequence": 0.0, "covisitation": 1.0, "popularity": 0.0}
    samples = [TrainingSample(f"u{n}", [], [], item, "view", 1.0, 0, "v1") for n, item in enumerate(SYNTHETIC_ITEMS)]
    others = len(SYNTHETIC_ITEMS) - 1
    assert rank_samples(blended, samples).tolist() == [others] * len(samples)
    assert rank_samples(blended, samples, linear=LinearBlend(blended)).tolist() == [others] * len(samples)


def test_items_the_counting_scorers_added_after_the_sequence_model_last_grew_are_served(tmp_path) -> None:
    """The counting scorers add items (stats-only learning) past the sequence model's table; saved and
    loaded in that state, the serving form must grow the table as the reference path does."""
    vocab = ItemVocab([f"i{k}" for k in range(30)], capacity=32)
    seq = SequenceScorer(vocab, SeqConfig(hidden=8, layers=1, heads=1, max_len=6, dropout=0.0), seed=1)
    seq.model.ensure_rows(vocab.capacity)
    pop, cov = PopularityScorer(vocab), CovisitationScorer(vocab)
    for k in range(5):  # synthetic new items, seen after i1: the vocabulary outgrows the table (capacity 64)
        pop.observe([("i1", "view")], f"new{k}", "view", 2e9 + k)
        cov.observe([("i1", "view")], f"new{k}", "view", 2e9 + k)
    Ensemble(vocab, {"sequence": seq, "popularity": pop, "covisitation": cov}).save(tmp_path / "ckpt")
    loaded, _ = Ensemble.load(tmp_path / "ckpt")
    assert loaded.scorers["sequence"].model.n_rows < len(loaded.vocab)
    got = LinearBlend(loaded).recommend([[("i1", "view")]], 5)
    want = loaded.recommend([[("i1", "view")]], 5, exclude_seen=False)
    assert [s.item_id for s in got[0]] == [s.item_id for s in want[0]]
