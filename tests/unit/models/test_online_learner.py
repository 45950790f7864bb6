"""The online learner on a tiny synthetic ensemble: it learns what it is shown, grows with new
items, keeps its replay buffer bounded, and hands out candidates that do not move under it."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from models.ensemble import Ensemble
from models.evaluation.prequential import rank_samples
from models.evaluation.protocol import leave_one_out
from models.history import user_histories
from models.linear_blend import LinearBlend
from models.online.learner import OnlineConfig, OnlineLearner, should_promote
from models.online.samples import TrainingSample, log_samples
from models.pipeline import replay_counts
from models.scorers import CovisitationScorer, PopularityScorer, SequenceScorer
from models.vocab import ItemVocab

from models_synthetic import SYNTHETIC_ITEMS, TINY_SEQ, TINY_TRAIN, synthetic_events

T0 = 1_700_100_000.0
FAST = OnlineConfig(lr=1e-2, batch_size=16, replay_fraction=0.25, seed=0, device="cpu")  # CUDA: test_cuda_training


def synthetic_ensemble(*, sequence_only: bool = False) -> Ensemble:
    """A synthetic ensemble whose vocabulary is full: the next new item makes every table grow."""
    events = synthetic_events(seed=0)
    vocab = ItemVocab(SYNTHETIC_ITEMS, capacity=len(SYNTHETIC_ITEMS) + 1)
    seq = SequenceScorer(vocab, TINY_SEQ, seed=0)
    split = leave_one_out(user_histories(events), vocab)
    seq.fit(split.fit_items, split.fit_types, TINY_TRAIN, progress=False)
    if sequence_only:
        return Ensemble(vocab, {"sequence": seq})
    pop, cov = PopularityScorer(vocab), CovisitationScorer(vocab)
    replay_counts([pop, cov], events)
    return Ensemble(vocab, {"sequence": seq, "covisitation": cov, "popularity": pop})


def sample(items: list[str], target: str, n: int = 0) -> TrainingSample:
    return TrainingSample(f"synthetic-user-{n}", items, ["view"] * len(items), target, "click", 2.0, int(T0 * 1000) + n, "v0")


def test_learning_a_repeated_pattern_raises_its_rank() -> None:
    # on the ring users walk i -> i+1; teach the transformer that 5, 6 leads to 30 instead
    pattern = [sample(["synthetic-item-5", "synthetic-item-6"], "synthetic-item-30", n) for n in range(16)]
    ring = [sample([f"synthetic-item-{i}", f"synthetic-item-{i + 1}"], f"synthetic-item-{i + 2}") for i in range(10, 30)]
    learner = OnlineLearner(synthetic_ensemble(sequence_only=True), FAST)
    learner.remember(log_samples(synthetic_events(seed=0)))  # replay of the pre-training log
    before = int(rank_samples(learner.ensemble, pattern[:1])[0])
    for _ in range(3):
        report = learner.learn(pattern)
    after = int(rank_samples(learner.ensemble, pattern[:1])[0])
    assert before > 5 and after == 0
    assert (rank_samples(learner.ensemble, ring) < 10).mean() >= 0.8  # the ring is not forgotten
    assert report["steps"] == 1 and report["samples"] == 16 and report["loss"] is not None
    assert learner.seen == 3 * 16


def test_new_items_grow_the_vocab_and_every_table() -> None:
    ensemble = synthetic_ensemble()
    rows_before = ensemble.scorers["sequence"].model.n_rows
    learner = OnlineLearner(ensemble, FAST)
    new = [sample(["synthetic-item-3", "synthetic-new-a"], "synthetic-new-b", n) for n in range(8)]
    report = learner.learn(new)
    learner.learn(new)  # the optimizer steps again after the item table was replaced
    vocab = learner.ensemble.vocab
    assert report["new_items"] == 2 and {"synthetic-new-a", "synthetic-new-b"} <= set(vocab.items)
    assert vocab.capacity > len(SYNTHETIC_ITEMS) + 1
    assert learner.ensemble.scorers["sequence"].model.n_rows >= vocab.capacity
    assert learner.ensemble.scorers["popularity"].log_sums.shape[0] >= vocab.capacity
    scores = learner.ensemble.score_batch([["synthetic-item-3", "synthetic-new-a"]], ["synthetic-new-b", "synthetic-item-20"])
    assert scores[0, 0] > scores[0, 1]  # the new item is now recommended after its context
    assert "synthetic-new-a" not in ensemble.vocab and ensemble.scorers["sequence"].model.n_rows == rows_before


def test_replay_buffer_is_bounded_and_spans_the_stream() -> None:
    learner = OnlineLearner(synthetic_ensemble(sequence_only=True), OnlineConfig(replay_size=10, seed=0))
    samples = log_samples(synthetic_events(n_users=60, seed=1))
    learner.remember(samples)
    with_history = [s for s in samples if s.items]
    assert len(with_history) > 100 and learner.replay_count == 10
    late = {id(s) for s in with_history[len(with_history) // 2 :]}
    assert any(id(s) in late for s in learner._replay)  # a reservoir, not the first ten
    assert all(s.items for s in learner._replay)  # empty histories teach the transformer nothing


def test_candidate_is_independent_of_further_learning() -> None:
    learner = OnlineLearner(synthetic_ensemble(), FAST)
    candidate = learner.candidate()
    history = [["synthetic-item-5", "synthetic-item-6"]]
    frozen_scores = candidate.score_batch(history, SYNTHETIC_ITEMS)
    learner.learn([sample(["synthetic-item-5", "synthetic-item-6"], "synthetic-new-z", n) for n in range(32)])
    assert "synthetic-new-z" in learner.ensemble.vocab and "synthetic-new-z" not in candidate.vocab
    assert (candidate.score_batch(history, SYNTHETIC_ITEMS) == frozen_scores).all()
    assert not (learner.ensemble.score_batch(history, SYNTHETIC_ITEMS) == frozen_scores).all()


def test_stats_only_leaves_the_transformer_untouched() -> None:
    learner = OnlineLearner(synthetic_ensemble(), OnlineConfig(train_sequence=False))
    weights = {k: v.clone() for k, v in learner.ensemble.scorers["sequence"].model.state_dict().items()}
    report = learner.learn([sample(["synthetic-item-5"], "synthetic-item-30", n) for n in range(8)])
    assert report["steps"] == 0 and report["loss"] is None
    after = learner.ensemble.scorers["sequence"].model.state_dict()
    assert all(torch.equal(weights[k], after[k]) for k in weights)
    cov = learner.ensemble.score_batch([["synthetic-item-5"]], ["synthetic-item-30"])
    assert cov[0, 0] > 0  # co-visitation learnt the pair


def test_evaluate_scores_only_samples_that_can_be_hits() -> None:
    ensemble = synthetic_ensemble()
    samples = [
        sample(["synthetic-item-5"], "synthetic-item-5"),  # a repeat: excluded from the ranking
        sample(["synthetic-item-5"], "synthetic-item-6"),
        sample(["synthetic-item-5"], "synthetic-never-seen"),  # unknown: a miss
    ]
    result = OnlineLearner.evaluate(ensemble, samples)
    assert result["n"] == 2 and 0.0 <= result["hr@10"] <= 0.5


def test_judge_promotes_only_a_candidate_that_is_not_worse() -> None:
    original = synthetic_ensemble(sequence_only=True)
    pattern = [sample(["synthetic-item-5", "synthetic-item-6"], "synthetic-item-30", n) for n in range(16)]
    learner = OnlineLearner(original, FAST)
    learner.learn(pattern)
    verdict = learner.judge(pattern, original)
    assert verdict["promote"] and verdict["candidate"]["ndcg@10"] > verdict["serving"]["ndcg@10"]
    untrained = OnlineLearner(original, FAST)
    assert not untrained.judge(pattern, learner.candidate())["promote"]


@pytest.mark.parametrize(
    ("candidate", "serving", "tolerance", "expected"),
    [
        ({"ndcg@10": 0.11, "n": 100}, {"ndcg@10": 0.10, "n": 100}, 0.0, True),
        ({"ndcg@10": 0.10, "n": 100}, {"ndcg@10": 0.10, "n": 100}, 0.0, True),
        ({"ndcg@10": 0.099, "n": 100}, {"ndcg@10": 0.10, "n": 100}, 0.02, True),
        ({"ndcg@10": 0.097, "n": 100}, {"ndcg@10": 0.10, "n": 100}, 0.02, False),
        ({"ndcg@10": 0.5, "n": 0}, {"ndcg@10": 0.10, "n": 0}, 0.0, False),  # judged on nothing
    ],
)
def test_should_promote(candidate: dict[str, float], serving: dict[str, float], tolerance: float, expected: bool) -> None:
    assert should_promote(candidate, serving, tolerance) is expected


def test_adam_moments_of_grown_item_rows_are_made_on_the_tables_device_and_dtype() -> None:
    # the "meta" device stands in for a GPU: a moment padded on the CPU cannot join the old rows' moments
    class Items(torch.nn.Module):
        def __init__(self, rows: int) -> None:
            super().__init__()
            self.items = torch.nn.Embedding(rows, 4, device="meta", dtype=torch.float64)

    learner, model = OnlineLearner(synthetic_ensemble(sequence_only=True), FAST), Items(3)
    table = model.items.weight
    learner._optimizer_for(model).state[table] = {"step": torch.tensor(1.0), "exp_avg": torch.ones_like(table),
                                                  "exp_avg_sq": torch.ones_like(table)}
    model.items = torch.nn.Embedding(5, 4, device="meta", dtype=torch.float64)  # the item table grew
    grown = learner._optimizer_for(model).state[model.items.weight]
    for key in ("exp_avg", "exp_avg_sq"):
        assert grown[key].shape == (5, 4) and grown[key].device.type == "meta" and grown[key].dtype == torch.float64


def test_a_step_with_a_non_finite_loss_is_skipped_not_taken() -> None:
    """A NaN loss (here a NaN sample weight) would turn every weight NaN; the step is refused instead."""
    learner = OnlineLearner(synthetic_ensemble(sequence_only=True), replace(FAST, replay_fraction=0.0))
    before = {k: v.clone() for k, v in learner.ensemble.scorers["sequence"].model.state_dict().items()}
    bad = [replace(sample(["synthetic-item-1", "synthetic-item-2"], "synthetic-item-3", n), weight=float("nan"))
           for n in range(16)]
    report = learner.learn(bad)
    assert report["steps"] == 1 and learner.skipped_steps == 1
    after = learner.ensemble.scorers["sequence"].model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    learner.learn([sample(["synthetic-item-1", "synthetic-item-2"], "synthetic-item-3", n) for n in range(16)])
    assert learner.skipped_steps == 1 and all(torch.isfinite(v).all() for v in after.values())


@pytest.mark.parametrize("serving_form", [False, True])
def test_a_model_that_scores_nan_ranks_every_target_a_miss(serving_form: bool) -> None:
    """A diverged model (NaN weights) must not look perfect: nothing compares above NaN, so a rank that
    counts better items put every target first, and the trainer would have promoted it."""
    ensemble = synthetic_ensemble(sequence_only=True)
    with torch.no_grad():
        for p in ensemble.scorers["sequence"].model.trunk.parameters():
            p.fill_(float("nan"))
    samples = [sample([f"synthetic-item-{i}", f"synthetic-item-{i + 1}"], f"synthetic-item-{i + 2}", i)
               for i in range(10)]
    if serving_form:  # the trainer's path: NaN scores, each target a miss
        assert (rank_samples(ensemble, samples, linear=LinearBlend(ensemble)) >= len(ensemble.vocab)).all()
    else:  # the reference path reads non-finite scores as no signal: every item tied, counted against the target
        others = ensemble.vocab.n_items - 1 - 2  # every item but the target and the two in the history
        assert rank_samples(ensemble, samples).tolist() == [others] * 10
