"""The trainer's decisions on synthetic samples: hold-out, promotion cadence, probation rollback, store follow."""

from __future__ import annotations

import gzip
import json

import pytest
import torch

from models.ensemble import Ensemble
from models.model_store import ModelStore
from models.online.blend import BlendRefitConfig, candidate_features
from models.online.learner import OnlineConfig, OnlineLearner
from models.online.samples import TrainingSample
from models.online.trainer import OnlineTrainer, TrainerConfig, ensure_base
from models.scorers import PopularityScorer, SequenceScorer
from models.sequence.config import SeqConfig
from models.vocab import ItemVocab
from tests.unit.models.test_model_store import tiny_ensemble


def samples(n: int, start: int = 0) -> list[TrainingSample]:
    """Synthetic: user i views "a" then touches "b" (or a new item every 7th sample)."""
    return [TrainingSample(f"u{i}", ["a"], ["view"], "b" if i % 7 else f"new{i}", "purchase", 8.0,
                           1_700_000_000_000 + i, "v0001") for i in range(start, start + n)]


def make_trainer(tmp_path, **cfg) -> OnlineTrainer:
    store = ModelStore(tmp_path / "store")
    tiny_ensemble().save(tmp_path / "base")
    entry = ensure_base(store, str(tmp_path / "base"))
    assert entry["version"] == "v0001" and ensure_base(store, str(tmp_path / "base")) is None
    config = TrainerConfig(**{"eval_slice": 10, "promote_every": 50, "promote_every_s": 1e9, **cfg})
    return OnlineTrainer(store, OnlineConfig(train_sequence=False, batch_size=10), config)  # learns every >=10


def test_promotes_after_enough_samples_with_newest_held_out(tmp_path) -> None:
    trainer = make_trainer(tmp_path)
    assert trainer.on_samples(samples(40)) == []  # 30 learnt, 10 held out: not yet due
    entries = trainer.on_samples(samples(40, start=40))
    assert [e["action"] for e in entries] == ["promote"] and entries[0]["version"] == "v0002"
    assert trainer.learner.seen == 70 and len(trainer.holdout) == 10
    assert entries[0]["newest_sample_ms"] == 1_700_000_000_069  # the newest learnt, not a held-out one
    assert entries[0]["oldest_sample_ms"] == 1_700_000_000_000  # every learnt sample is new to this version
    assert trainer.store.current() == "v0002"
    assert trainer.store.load("v0002")[0].vocab.row("new7")  # new items joined the vocabulary


def test_probation_rolls_back_a_version_worse_than_the_old_one(tmp_path) -> None:
    # a negative margin makes even an equal new version "worse": the mechanics, not the metric, are tested
    trainer = make_trainer(tmp_path, rollback_window=20, rollback_margin=-1.0)
    trainer.on_samples(samples(80))
    assert trainer.store.current() == "v0002"
    entries = trainer.on_samples(samples(30, start=80))
    assert [e["action"] for e in entries] == ["rollback"] and trainer.store.current() == "v0001"
    assert trainer.serving_version == "v0001" and trainer.learner.replay_count == 100


def make_sequence_trainer(tmp_path, **cfg) -> OnlineTrainer:
    """A trainer whose base has a (tiny) sequence model, trained on every step with replay."""
    vocab = ItemVocab(["a", "b", "c"])
    seq = SequenceScorer(vocab, SeqConfig(hidden=8, layers=1, heads=1, max_len=8, dropout=0.0), seed=0)
    Ensemble(vocab, {"sequence": seq, "popularity": PopularityScorer(vocab)}).save(tmp_path / "base")
    store = ModelStore(tmp_path / "store")
    ensure_base(store, str(tmp_path / "base"))
    config = TrainerConfig(**{"eval_slice": 10, "promote_every": 50, "promote_every_s": 1e9, **cfg})
    return OnlineTrainer(store, OnlineConfig(batch_size=10, replay_fraction=0.5), config)


def test_a_candidate_with_nan_weights_is_not_promoted_and_learning_restarts_from_the_serving_version(tmp_path):
    """Steps with a non-finite loss are skipped; should a weight still turn NaN, the candidate is refused
    (workers would refuse it too) and learning starts over, rather than staying stuck on NaN weights."""
    trainer = make_sequence_trainer(tmp_path)
    trainer.on_samples(samples(40))
    with torch.no_grad():
        next(trainer.learner.ensemble.scorers["sequence"].model.trunk.parameters()).fill_(float("nan"))
    assert not trainer.learner.weights_finite()
    assert trainer.on_samples(samples(40, start=40)) == [] and trainer.store.current() == "v0001"
    assert trainer.evaluations[-1]["promoted"] is False and trainer.learner.weights_finite()


def test_nan_weights_are_dropped_at_an_evaluation_even_when_the_candidate_would_not_be_promoted(tmp_path):
    trainer = make_sequence_trainer(tmp_path, promote_tolerance=-1.0)  # nothing is good enough to promote
    trainer.on_samples(samples(40))
    with torch.no_grad():
        next(trainer.learner.ensemble.scorers["sequence"].model.trunk.parameters()).fill_(float("nan"))
    trainer.on_samples(samples(40, start=40))
    assert trainer.evaluations and trainer.learner.weights_finite()


def test_after_a_rollback_replayed_samples_with_newer_items_are_learnt(tmp_path) -> None:
    # the reservoir keeps samples whose targets ("new7", ...) the restored version never saw; learning goes
    # on in the same call (30 samples learnt from v0001's weights, with replay)
    trainer = make_sequence_trainer(tmp_path, rollback_window=20, rollback_margin=-1.0)  # always rolls back
    trainer.on_samples(samples(80))
    assert trainer.store.current() == "v0002"
    entries = trainer.on_samples(samples(30, start=80))
    assert [e["action"] for e in entries] == ["rollback"] and trainer.serving_version == "v0001"
    assert trainer.learner.seen == 30
    restored = trainer.store.load("v0001")[0].vocab
    vocab = trainer.learner.ensemble.vocab
    replayed_new = {s.target for s in trainer.learner._replay[:70]} - set(restored.items)  # learnt by v0002
    assert replayed_new & set(vocab.items)  # those drawn from the reservoir joined the vocabulary
    assert trainer.learner._sequence.model.n_rows >= vocab.capacity


def test_after_a_rollback_by_hand_replayed_samples_with_newer_items_are_learnt(tmp_path) -> None:
    trainer = make_sequence_trainer(tmp_path, rollback_window=0)
    trainer.on_samples(samples(80))
    trainer.store.rollback(reason="by hand")
    trainer.on_samples(samples(30, start=200))
    assert trainer.serving_version == "v0001" and trainer.learner.seen == 30  # 10 held out before, 20 of these


def test_no_candidate_is_promoted_while_a_version_is_on_probation(tmp_path) -> None:
    # promotions would be due every 50 samples; the probation of each promoted version takes 120 fresh ones
    trainer = make_trainer(tmp_path, rollback_window=120, rollback_margin=1.0)  # margin 1: never rolls back
    promoted_at = []
    for start in range(0, 400, 20):
        if trainer.on_samples(samples(20, start=start)):
            promoted_at.append(start + 20)
            assert trainer.probation is not None and trainer.probation.n == 0
    # first at 60 read (50 learnt, 10 held out); then each after a probation of 120 and at least 50 learnt
    assert promoted_at == [60, 180, 300]
    assert trainer.evaluations[-1]["learnt"] == 290


def test_rollback_window_zero_means_no_probation(tmp_path) -> None:
    trainer = make_trainer(tmp_path, rollback_window=0)
    promotions = sum(len(trainer.on_samples(samples(20, start=s))) for s in range(0, 400, 20))
    assert promotions == 6 and trainer.probation is None  # one every 60 read (50 learnt): at 60, 120, ..., 360


def test_follows_a_rollback_made_by_hand(tmp_path) -> None:
    trainer = make_trainer(tmp_path, rollback_window=0)
    trainer.on_samples(samples(80))
    trainer.store.rollback(reason="by hand")
    trainer.on_samples([])
    assert trainer.serving_version == "v0001" and trainer.learner.seen == 0
    assert trainer.learner.replay_count == 70  # learning restarts from the old weights, the past samples stay


def test_a_rollback_by_hand_during_an_evaluation_stands(tmp_path) -> None:
    """``reco rollback`` (another process, its own store object) lands after the trainer read the store and
    before it promotes: the candidate, a child of the rolled-back version, is not promoted over it."""
    trainer = make_trainer(tmp_path, rollback_window=0)
    trainer.on_samples(samples(80))
    operator = ModelStore(trainer.store.root)
    learn = trainer.learner.learn

    def learn_while_the_operator_rolls_back(*args, **kwargs):
        out = learn(*args, **kwargs)
        if operator.current() == "v0002":
            operator.rollback(reason="manual (reco rollback)")
        return out

    trainer.learner.learn = learn_while_the_operator_rolls_back
    assert trainer.on_samples(samples(60, start=80)) == []
    assert operator.serving_stack() == ["v0001"] and trainer.serving_version == "v0001"
    assert trainer.counts["not_promoted"] == 1 and trainer.learner.seen == 0  # learning restarts from v0001
    assert trainer.evaluations[-1]["promoted"] is False
    assert sorted(p.name for p in trainer.store.versions_dir.iterdir()) == ["v0001", "v0002"]  # no candidate left


def test_a_candidate_refused_after_it_was_saved_is_deleted(tmp_path) -> None:
    """The rollback by hand lands while the candidate is being written: nothing serves it, and it does not
    stay on disk (prune only deletes versions older than the serving one)."""
    trainer = make_trainer(tmp_path, rollback_window=0)
    trainer.on_samples(samples(80))
    operator, save = ModelStore(trainer.store.root), trainer.store.save

    def save_while_the_operator_rolls_back(*args, **kwargs):
        version = save(*args, **kwargs)
        operator.rollback(reason="manual (reco rollback)")
        return version

    trainer.store.save = save_while_the_operator_rolls_back
    assert trainer.on_samples(samples(60, start=80)) == []
    assert operator.serving_stack() == ["v0001"] and trainer.serving_version == "v0001"
    assert sorted(p.name for p in trainer.store.versions_dir.iterdir()) == ["v0001", "v0002"]


def test_an_automatic_rollback_after_one_by_hand_rolls_back_nothing_more(tmp_path) -> None:
    """The operator rolled back the version on probation just before its verdict: that stands, and the
    trainer does not pop another version (nor crash on an empty stack)."""
    trainer = make_trainer(tmp_path, rollback_window=20, rollback_margin=-1.0)  # every verdict: roll back
    trainer.on_samples(samples(80))
    operator = ModelStore(trainer.store.root)
    rank = trainer._rank_fresh

    def rank_while_the_operator_rolls_back(batch):
        if operator.current() == "v0002":
            operator.rollback(reason="manual (reco rollback)")
        return rank(batch)

    trainer._rank_fresh = rank_while_the_operator_rolls_back
    assert trainer.on_samples(samples(30, start=80)) == []
    assert operator.serving_stack() == ["v0001"] and trainer.serving_version == "v0001"
    assert trainer.counts["rolled_back"] == 0


def test_a_version_promoted_by_hand_with_corrupt_metadata_is_not_followed(tmp_path) -> None:
    trainer = make_trainer(tmp_path, rollback_window=0)
    version = trainer.store.save(tiny_ensemble())
    (trainer.store.path(version) / "meta.json").write_text('{"format": "streamreco-chec')  # truncated
    trainer.store.promote(version, reason="by hand")
    assert trainer.on_samples(samples(20)) == [] and trainer.serving_version == "v0001"  # learning goes on
    entries = trainer.on_samples(samples(60, start=20))  # and its next candidate replaces the broken version
    assert [(e["action"], e["version"]) for e in entries] == [("promote", "v0003")]
    assert trainer.store.serving_stack() == ["v0001", "v0002", "v0003"] and trainer.serving_version == "v0003"


def test_after_a_rollback_promotions_name_only_samples_the_new_lineage_learnt(tmp_path) -> None:
    trainer = make_trainer(tmp_path, rollback_window=0)
    assert [e["version"] for e in trainer.on_samples(samples(80))] == ["v0002"]
    trainer.on_samples(samples(20, start=80))  # samples 70..89 learnt by v0002's successor, never promoted
    trainer.store.rollback(reason="by hand")
    entries = trainer.on_samples(samples(60, start=100))  # learning restarts from v0001: 90..149 learnt
    assert [e["action"] for e in entries] == ["promote"] and entries[0]["previous"] == "v0001"
    assert entries[0]["oldest_sample_ms"] == 1_700_000_000_090
    assert entries[0]["newest_sample_ms"] == 1_700_000_000_149


def test_promotions_record_sample_offsets_and_a_restart_resumes_there(tmp_path) -> None:
    trainer = make_trainer(tmp_path)
    batch = samples(80)
    # partitions 0 and 1 alternate (offsets 0..39 each); partition 2 only among the newest, held-out samples
    positions = [(i % 2, i // 2) for i in range(75)] + [(2, 100 + i) for i in range(5)]
    entries = trainer.on_samples(batch, positions=positions)
    assert [e["action"] for e in entries] == ["promote"]
    # 70 learnt: offsets 0..34 of each of partitions 0 and 1; partition 2 was only held out, so from its first
    assert entries[0]["sample_offsets"] == {"0": 35, "1": 35, "2": 100}
    restarted = OnlineTrainer(trainer.store, trainer.learner_config, trainer.config)
    assert restarted.serving_version == "v0002"
    assert restarted.resume_offsets() == {0: 35, 1: 35, 2: 100}


def test_samples_a_rebalance_delivers_again_are_neither_learnt_nor_held_out_twice(tmp_path) -> None:
    """A consumer group's rebalance hands over again what came after the last commit: until 2026-12-07 the
    trainer learnt one copy and held the other out, so the next candidate was judged on its training data."""
    trainer = make_trainer(tmp_path)
    batch, positions = samples(30), [(0, i) for i in range(30)]
    trainer.on_samples(batch[:20], positions=positions[:20])
    trainer.on_samples(batch[20:], positions=positions[20:])
    trainer.on_samples(batch[20:], positions=positions[20:])  # from the committed offset 20 again
    assert trainer.learner.seen == 20 and [h.position for h in trainer.holdout] == positions[20:]
    assert trainer.counts["samples_taken"] == 30 and trainer.counts["samples_redelivered"] == 10
    mixed = samples(5, start=28)  # a fetch overlapping what was taken: only the new ones count
    trainer.on_samples(mixed, positions=[(0, 28 + i) for i in range(5)])
    assert [h.position[1] for h in trainer.holdout] == list(range(20, 33))  # learnt in whole steps of 10
    assert trainer.counts["samples_taken"] == 33 and trainer.counts["samples_redelivered"] == 12


def test_a_trainer_restarted_during_a_probation_still_judges_the_version(tmp_path) -> None:
    """Restarted after a promotion, before the verdict: the version is on probation again (against the one
    it replaced) instead of serving unjudged; a version that serves by a rollback is not."""
    trainer = make_trainer(tmp_path, rollback_window=20, rollback_margin=-1.0)  # every verdict: roll back
    trainer.on_samples(samples(80))
    assert trainer.store.current() == "v0002" and trainer.probation is not None
    restarted = OnlineTrainer(trainer.store, trainer.learner_config, trainer.config)
    assert restarted.probation is not None and restarted.probation.previous_version == "v0001"
    entries = restarted.on_samples(samples(30, start=80))
    assert [(e["action"], e["version"]) for e in entries] == [("rollback", "v0001")]
    assert OnlineTrainer(trainer.store, trainer.learner_config, trainer.config).probation is None


def test_a_restarted_trainers_probation_does_not_judge_on_the_slice_the_promotion_was_decided_on(tmp_path):
    """Synthetic: shoppers touch "b", then "a". v0002 is promoted on held-out "b" samples, where it beats the
    base; on the fresh "a" samples it does worse. Restarted right after the promotion, the trainer reads the
    hold-out again (from ``sample_offsets``): until 2026-12-07 the verdict began with it and kept v0002."""
    def sample(i: int, target: str) -> TrainingSample:
        return TrainingSample(f"u{i}", ["c"], ["view"], target, "purchase", 8.0, 1_700_000_000_000 + i, "v")

    stream = [sample(i, "b") for i in range(50)] + [sample(i, "a") for i in range(50, 80)]
    positions = [(0, i) for i in range(80)]
    verdicts = {}
    for restart in (False, True):
        trainer = make_trainer(tmp_path / str(restart), promote_every=40, rollback_window=20, rollback_margin=0.1)
        entries = trainer.on_samples(stream[:40], positions=positions[:40])
        entries += trainer.on_samples(stream[40:50], positions=positions[40:50])
        assert [e["version"] for e in entries] == ["v0002"] and entries[0]["judged_offsets"] == {"0": 50}
        start = 50
        if restart:
            trainer = OnlineTrainer(trainer.store, trainer.learner_config, trainer.config)
            start = trainer.resume_offsets()[0]
            assert start == 40  # the hold-out is read again
        verdicts[restart] = [(e["action"], e["version"]) for k in range(start, 80, 5)
                             for e in trainer.on_samples(stream[k:k + 5], positions=positions[k:k + 5])]
    assert verdicts[False] == verdicts[True] == [("rollback", "v0001")]


def test_a_trainer_starts_from_the_newest_loadable_version_and_replaces_a_damaged_one(tmp_path) -> None:
    """The serving checkpoint is damaged (zeroed, as after a power loss): until 2026-12-07 the trainer could not
    start, and stopped again at every restart. It learns from the version before, as workers serve it, and its
    next candidate replaces the damaged one, with no probation (a rollback would restore the damaged one)."""
    trainer = make_trainer(tmp_path, rollback_window=10, rollback_margin=-1.0)  # any verdict would roll back
    store = trainer.store
    damaged = store.save(tiny_ensemble(("a", "b", "c", "d")))
    store.promote(damaged, previous="v0001")
    weights = store.path(damaged) / "weights.safetensors"
    weights.write_bytes(b"\0" * weights.stat().st_size)
    started = OnlineTrainer(store, trainer.learner_config, trainer.config)
    assert started.serving_version == "v0001" and started.probation is None
    entries = started.on_samples(samples(60))
    assert [(e["action"], e["version"]) for e in entries] == [("promote", "v0003")]
    assert store.current() == "v0003" and started.probation is None
    assert started.on_samples(samples(30, start=60)) == [] and store.current() == "v0003"


def test_without_positions_nothing_is_recorded(tmp_path) -> None:
    trainer = make_trainer(tmp_path)
    entries = trainer.on_samples(samples(80))
    assert entries[0]["sample_offsets"] == {} and trainer.resume_offsets() == {}


def test_serving_side_of_an_evaluation_equals_ranking_the_hold_out_afresh(tmp_path) -> None:
    # Synthetic: 20 targets "c", then "b" until it overtakes "c" in popularity, so a promotion changes the
    # serving ranks; promote_every < eval_slice makes samples ranked by an earlier version outlive it.
    # Probations of 3 samples (margin 1: never a rollback) rank samples on arrival.
    trainer = make_trainer(tmp_path, eval_slice=10, promote_every=4, rollback_window=3, rollback_margin=1.0)
    checked: list[tuple[dict, int]] = []
    evaluate = trainer._evaluate

    def checked_evaluate():
        held = [h.sample for h in trainer.holdout]
        expected = OnlineLearner.evaluate(trainer.serving, held)
        stale = sum(h.ranked_by not in ("", trainer.serving_version) for h in trainer.holdout)
        entries = evaluate()
        checked.append((expected, stale))
        assert trainer.evaluations[-1]["serving"] == expected
        return entries

    trainer._evaluate = checked_evaluate
    stream = [TrainingSample(f"u{i}", ["a"], ["view"], "c" if i < 20 else "b", "purchase", 8.0,
                             1_700_000_000_000 + i, "v0001") for i in range(120)]
    for i in range(0, len(stream), 3):
        trainer.on_samples(stream[i:i + 3])
    assert len(checked) > 10 and sum(e["promoted"] for e in trainer.evaluations) >= 2
    assert any(stale for _, stale in checked)  # samples an older version ranked on arrival were re-ranked
    assert len({e["ndcg@10"] for e, _ in checked}) > 1  # the serving ranks did change over the stream


def test_during_a_probation_the_blend_refit_gets_the_serving_scores_on_arrival(tmp_path) -> None:
    store = ModelStore(tmp_path / "store")
    tiny_ensemble().save(tmp_path / "base")
    ensure_base(store, str(tmp_path / "base"))
    learner_cfg = OnlineConfig(train_sequence=False, batch_size=10,
                               blend=BlendRefitConfig(every=10**6, per_batch=4, keep_of=20))  # 4 of every 20
    trainer = OnlineTrainer(store, learner_cfg, TrainerConfig(eval_slice=10, promote_every=50,
                                                              promote_every_s=1e9, rollback_window=10**6))
    observed: list[int] = []
    trainer.on_samples(samples(60))  # promotes: a probation starts
    assert trainer.probation is not None
    observe = trainer.learner.blend.observe
    trainer.learner.blend.observe = lambda e, s: observed.append(len(s)) or observe(e, s)  # type: ignore[method-assign]
    kept = trainer.learner.blend.kept
    before = len(kept)
    batch = samples(20, start=60)
    usable = trainer.learner.blend.usable(trainer.serving, batch, 4)
    want_x, want_mask = candidate_features(trainer.serving, usable, trainer.learner.blend.config.per_scorer)
    trainer.on_samples(batch)
    # of the 20 learnt now, the 10 held out before the probation are scored when learnt (2 of those 10 kept);
    # the batch was scored on arrival (4 of its 20), but its latest 10 are held out: not in the window yet
    [learnt] = list(kept)[before:]
    assert observed == [10] and len(learnt[0]) == 2
    trainer.on_samples(samples(20, start=80))  # the batch leaves the hold-out: its arrival scores join
    [_, (x, mask)] = list(kept)[before:]
    assert len(usable) == 4 and torch.equal(x, want_x) and torch.equal(mask, want_mask)
    assert observed[-1] == 0  # all 20 learnt now came in batches scored on arrival


def test_no_candidate_is_judged_on_samples_its_blend_weights_were_fitted_on(tmp_path) -> None:
    """Synthetic stream with a probation after each promotion and frequent re-fits: at every evaluation,
    none of the held-out samples is among those of any fit so far."""
    store = ModelStore(tmp_path / "store")
    tiny_ensemble().save(tmp_path / "base")
    ensure_base(store, str(tmp_path / "base"))
    trainer = OnlineTrainer(store, OnlineConfig(train_sequence=False, batch_size=10,
                                                blend=BlendRefitConfig(every=16, per_batch=64, keep_of=256)),
                            TrainerConfig(eval_slice=40, promote_every=50, promote_every_s=1e9, rollback_window=60,
                                          rollback_margin=1.0, promote_tolerance=1.0))
    rows_of: dict[int, list[int]] = {}  # id of a kept features tensor -> ids of the samples it scores
    fitted: set[int] = set()
    clashes: list[int] = []

    def watch(learner: OnlineLearner) -> None:
        blend = learner.blend
        features, refit = blend.features, blend.maybe_refit

        def recording_features(ensemble, batch):
            out = features(ensemble, batch)
            if out is not None:
                rows_of[id(out[0])] = [id(s) for s in blend.usable(ensemble, batch, len(out[0]))]
            return out

        def recording_refit(ensemble):
            if blend.config.every and blend.since >= blend.config.every:
                fitted.update(i for x, _ in blend.kept for i in rows_of.get(id(x), ()))
            return refit(ensemble)

        blend.features, blend.maybe_refit = recording_features, recording_refit  # type: ignore[method-assign]

    evaluate = trainer._evaluate

    def checked_evaluate():
        clashes.append(sum(id(h.sample) in fitted for h in trainer.holdout))
        out = evaluate()
        watch(trainer.learner)
        return out

    trainer._evaluate = checked_evaluate  # type: ignore[method-assign]
    watch(trainer.learner)
    stream = [TrainingSample(f"u{i}", ["abc"[i % 3]], ["view"], "abc"[(i + 1 + i // 50) % 3], "click", 2.0,
                             1_700_000_000_000 + i, "v0001") for i in range(600)]
    for i in range(0, len(stream), 20):
        trainer.on_samples(stream[i:i + 20])
    assert len(clashes) >= 3 and fitted and clashes == [0] * len(clashes)


def test_learns_in_whole_steps_and_everything_before_an_evaluation(tmp_path) -> None:
    # batches of 3 (a consumer's small fetches): nothing is learnt until 10 are ready, then all that are
    trainer = make_trainer(tmp_path, eval_slice=10, promote_every=25)
    seen = []
    for start in range(0, 36, 3):
        trainer.on_samples(samples(3, start=start))
        seen.append(trainer.learner.seen)
    # 21 read: 11 past the hold-out, a step's worth; 33 read: 12 more; 36 read: 26 past it, an evaluation is
    # due (25), so the 3 not yet a step are learnt first
    assert seen == [0, 0, 0, 0, 0, 0, 11, 11, 11, 11, 23, 26]
    assert len(trainer.evaluations) == 1 and trainer.evaluations[0]["learnt"] == 26


def test_the_blend_refit_keeps_the_same_share_of_small_batches_as_of_large_ones() -> None:
    from models.online.blend import BlendRefitter
    from tests.unit.models.test_model_store import tiny_ensemble as make

    ensemble, stream = make(), samples(512)
    kept = {}
    for size in (256, 32):
        refit = BlendRefitter(BlendRefitConfig(every=10**6))  # 64 of every 256
        for start in range(0, len(stream), size):
            refit.observe(ensemble, stream[start:start + size])
        kept[size] = refit.n_kept
    usable = len(BlendRefitter.usable(ensemble, stream, len(stream)))
    assert usable > 256 and kept[256] == kept[32] == 128  # not 32 of each batch of 32 (up to 512)


def test_after_a_rollback_the_next_candidate_waits_until_the_new_lineage_learnt_enough(tmp_path) -> None:
    trainer = make_trainer(tmp_path, rollback_window=0)  # evaluations every 50 learnt samples
    assert [e["version"] for e in trainer.on_samples(samples(80))] == ["v0002"]
    trainer.on_samples(samples(30, start=80))  # 30 learnt towards the next evaluation
    trainer.store.rollback(reason="by hand")
    evaluations = len(trainer.evaluations)
    assert trainer.on_samples(samples(25, start=110)) == [] and len(trainer.evaluations) == evaluations
    assert [e["action"] for e in trainer.on_samples(samples(25, start=135))] == ["promote"]


def test_each_promotion_prunes_the_store_to_the_versions_a_rollback_can_reach(tmp_path) -> None:
    trainer = make_trainer(tmp_path, rollback_window=0, keep_versions=3)
    for start in range(0, 400, 20):
        trainer.on_samples(samples(20, start=start))
    store = trainer.store
    assert store.current() == "v0007"  # six promotions after the base
    assert sorted(p.name for p in store.versions_dir.iterdir()) == ["v0005", "v0006", "v0007"]
    assert store.rollback()["version"] == "v0006"


def test_a_long_store_log_is_archived_and_a_restart_still_resumes_at_the_serving_versions_offsets(tmp_path) -> None:
    trainer = make_trainer(tmp_path, rollback_window=0, keep_versions=3, log_max_lines=7)
    for start in range(0, 460, 20):
        trainer.on_samples(samples(20, start=start), positions=[(0, start + i) for i in range(20)])
    store = trainer.store
    assert store.current() == "v0008"  # seven promotions after the base: eight lines without archiving
    lines = (store.root / "log.jsonl").read_text().splitlines()
    assert len(lines) <= 7 and store.archives(), lines
    assert store.serving_stack()[-3:] == ["v0006", "v0007", "v0008"] and store.rollback()["version"] == "v0007"
    store.rollback()
    restarted = OnlineTrainer(store, trainer.learner_config, trainer.config)
    archived = [json.loads(line) for a in store.archives() for line in gzip.decompress(a.read_bytes()).splitlines()]
    as_promoted = next(e for e in archived if e["action"] == "promote" and e["version"] == "v0006")
    assert restarted.serving_version == "v0006" and as_promoted["sample_offsets"] == {"0": 290}
    assert restarted.resume_offsets() == {0: 290}


def test_an_archive_limit_the_kept_versions_already_fill_is_refused() -> None:
    with pytest.raises(ValueError, match="RECO_MODEL_STORE_LOG_LINES"):
        TrainerConfig(keep_versions=20, log_max_lines=23)  # 20 promotions, the rotate entry and a rollback's two
    TrainerConfig(keep_versions=20, log_max_lines=24)
    with pytest.raises(ValueError, match="keeps every version"):  # nothing could ever be archived
        TrainerConfig(keep_versions=0, log_max_lines=2_000)
    TrainerConfig(keep_versions=0, log_max_lines=0)


def test_keeping_one_version_is_refused_as_it_leaves_nothing_to_roll_back_to() -> None:
    with pytest.raises(ValueError, match="RECO_MODEL_STORE_KEEP"):
        TrainerConfig(keep_versions=1)


@pytest.mark.parametrize("bad", [{"eval_slice": 0}, {"promote_every": 0}, {"promote_every_s": 0.0},
                                 {"rollback_window": -1}])
def test_settings_that_would_never_promote_or_evaluate_on_every_poll_are_refused(bad) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        TrainerConfig(**bad)
