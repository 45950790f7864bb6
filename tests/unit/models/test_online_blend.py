"""Online blend re-fitting on a synthetic catalogue where co-visitation knows the next item and popularity
does not: the refit moves weight to co-visitation, only on fresh samples, and only when it gains."""

from __future__ import annotations

import torch

from models.ensemble import Ensemble
from models.history import encode
from models.online.blend import BlendRefitConfig, BlendRefitter, candidate_features, candidate_ndcg10
from models.online.learner import OnlineConfig, OnlineLearner
from models.online.samples import TrainingSample
from models.scorers import CovisitationScorer, PopularityScorer
from models.vocab import ItemVocab

N_ITEMS = 60
TS = 1_700_000_000.0


def chain_sample(user: int, k: int) -> TrainingSample:
    """Synthetic: a user who last touched item k goes on to item k+1 (a chain through the catalogue)."""
    return TrainingSample(f"u{user}", [f"i{k}"], ["view"], f"i{(k + 1) % N_ITEMS}", "view", 1.0,
                          int(TS * 1000) + user, "v1")


def chain_ensemble(weights: dict[str, float]) -> Ensemble:
    """Co-visitation has counted the chain; popularity favours i50..i59, which predict nothing."""
    vocab = ItemVocab([f"i{k}" for k in range(N_ITEMS)])
    covis, pop = CovisitationScorer(vocab), PopularityScorer(vocab)
    for k in range(N_ITEMS):
        covis.observe([(f"i{k}", "view")], f"i{(k + 1) % N_ITEMS}", "view", TS)
    for k in range(50, N_ITEMS):
        for _ in range(20):
            pop.observe([], f"i{k}", "purchase", TS)
    return Ensemble(vocab, {"covisitation": covis, "popularity": pop}, weights)


def test_candidates_hold_the_target_first_and_no_history_or_repeats() -> None:
    ens = chain_ensemble({"covisitation": 0.5, "popularity": 0.5})
    samples = [chain_sample(u, k) for u, k in enumerate((3, 10, 49))]
    x, mask = candidate_features(ens, samples, per_scorer=5)
    assert x.shape == (3, 1 + 2 * 5, 2) and mask.shape == (3, 11)
    assert not mask[:, 0].any()  # the target itself is not its own competitor
    for b, s in enumerate(samples):
        rows, types = encode(ens.vocab, s.history)
        z = ens.parts([rows], [types])
        target_row = ens.vocab.row(s.target)
        assert torch.allclose(x[b, 0], torch.stack([z["covisitation"][0, target_row], z["popularity"][0, target_row]]))
    # every real candidate is distinct and is neither the target nor the history item
    assert int(mask.sum(1).max()) <= 10


def test_refit_moves_weight_to_the_scorer_that_predicts_and_raises_ndcg() -> None:
    ens = chain_ensemble({"covisitation": 0.05, "popularity": 0.95})
    fresh = [chain_sample(u, u % 50) for u in range(200)]
    refit = BlendRefitter(BlendRefitConfig(every=200, window=1000, per_batch=1000, per_scorer=20))
    x, mask = candidate_features(ens, fresh, 20)
    before = candidate_ndcg10(x, mask, torch.tensor([0.05, 0.95]))
    refit.observe(ens, fresh)
    weights = refit.maybe_refit(ens)
    assert weights is not None and ens.weights == weights
    assert weights["covisitation"] > weights["popularity"]
    assert candidate_ndcg10(x, mask, torch.tensor([weights["covisitation"], weights["popularity"]])) > before
    assert refit.fits[-1]["moved"] and refit.fits[-1]["after"] > refit.fits[-1]["before"]


def test_no_move_without_enough_gain_or_samples() -> None:
    ens = chain_ensemble({"covisitation": 1.0, "popularity": 0.0})  # already as good as it gets
    refit = BlendRefitter(BlendRefitConfig(every=100, per_batch=1000, per_scorer=20))  # keeps every sample
    refit.observe(ens, [chain_sample(u, u % 50) for u in range(50)])
    assert refit.maybe_refit(ens) is None and not refit.fits  # not due yet
    refit.observe(ens, [chain_sample(u, u % 50) for u in range(50, 150)])
    assert refit.maybe_refit(ens) is None and ens.weights == {"covisitation": 1.0, "popularity": 0.0}
    assert refit.fits and not refit.fits[-1]["moved"]


def test_learner_keeps_scores_from_before_it_learnt_the_samples() -> None:
    ens = chain_ensemble({"covisitation": 0.05, "popularity": 0.95})
    batch = [chain_sample(u, 10 + u % 5) for u in range(40)]
    config = BlendRefitConfig(every=10**6, per_batch=1000, per_scorer=20)
    learner = OnlineLearner(ens, OnlineConfig(train_sequence=False, blend=config))
    before = candidate_features(learner.ensemble, batch, 20)[0]
    learner.learn(batch)
    after = candidate_features(learner.ensemble, batch, 20)[0]
    kept = learner.blend.kept[0][0]
    assert not torch.allclose(before, after)  # learning the batch changed its scores (popularity counted it)
    assert torch.allclose(kept, before)  # and the refit keeps the scores from before


def test_learner_refits_its_working_copy_only() -> None:
    ens = chain_ensemble({"covisitation": 0.05, "popularity": 0.95})
    config = BlendRefitConfig(every=100, per_batch=1000, per_scorer=20)
    learner = OnlineLearner(ens, OnlineConfig(train_sequence=False, blend=config))
    out = learner.learn([chain_sample(u, u % 40) for u in range(100)])
    assert out["blend_weights"] == learner.ensemble.weights
    assert learner.ensemble.weights["covisitation"] > learner.ensemble.weights["popularity"]
    assert ens.weights == {"covisitation": 0.05, "popularity": 0.95}  # the serving ensemble is not touched
