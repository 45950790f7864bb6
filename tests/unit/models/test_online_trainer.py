"""The trainer's decisions on synthetic samples: hold-out, promotion cadence, probation rollback, store follow."""

from __future__ import annotations

from models.model_store import ModelStore
from models.online.learner import OnlineConfig
from models.online.samples import TrainingSample
from models.online.trainer import OnlineTrainer, TrainerConfig, ensure_base
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
    return OnlineTrainer(store, OnlineConfig(train_sequence=False), config)


def test_promotes_after_enough_samples_with_newest_held_out(tmp_path) -> None:
    trainer = make_trainer(tmp_path)
    assert trainer.on_samples(samples(40)) == []  # 30 learnt, 10 held out: not yet due
    entries = trainer.on_samples(samples(40, start=40))
    assert [e["action"] for e in entries] == ["promote"] and entries[0]["version"] == "v0002"
    assert trainer.learner.seen == 70 and len(trainer.holdout) == 10
    assert entries[0]["newest_sample_ms"] == 1_700_000_000_069  # the newest learnt, not a held-out one
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


def test_follows_a_rollback_made_by_hand(tmp_path) -> None:
    trainer = make_trainer(tmp_path, rollback_window=10**6)
    trainer.on_samples(samples(80))
    trainer.store.rollback(reason="by hand")
    trainer.on_samples([])
    assert trainer.serving_version == "v0001" and trainer.learner.seen == 0
    assert trainer.learner.replay_count == 70  # learning restarts from the old weights, the past samples stay


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


def test_without_positions_nothing_is_recorded(tmp_path) -> None:
    trainer = make_trainer(tmp_path)
    entries = trainer.on_samples(samples(80))
    assert entries[0]["sample_offsets"] == {} and trainer.resume_offsets() == {}
