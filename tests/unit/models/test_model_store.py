"""The model store: versions written whole, promotions and rollbacks replayed from its log."""

from __future__ import annotations

import pytest

from models.checkpoint import CheckpointError
from models.ensemble import Ensemble
from models.model_store import ModelStore
from models.scorers import PopularityScorer
from models.vocab import ItemVocab


def tiny_ensemble(items=("a", "b", "c")) -> Ensemble:
    """Synthetic: popularity over three items."""
    vocab = ItemVocab(list(items))
    pop = PopularityScorer(vocab)
    pop.observe([], items[0], "purchase", 1_700_000_000.0)
    return Ensemble(vocab, {"popularity": pop})


def test_promote_and_rollback_follow_the_log(tmp_path) -> None:
    store = ModelStore(tmp_path)
    assert store.current() is None
    v1 = store.save(tiny_ensemble())
    v2 = store.save(tiny_ensemble(("a", "b", "c", "d")))
    assert (v1, v2) == ("v0001", "v0002") and store.current() is None  # saved is not serving
    store.promote(v1)
    store.promote(v2)
    assert store.current() == v2
    entry = store.rollback(reason="test")
    assert entry["version"] == v1 and entry["from_version"] == v2 and store.current() == v1
    with pytest.raises(ValueError):
        store.rollback()
    ensemble, meta = store.load(store.current())
    assert meta["model_version"] == v1 and ensemble.vocab.n_items == 3
    assert [e["action"] for e in ModelStore(tmp_path).log()] == ["promote", "promote", "rollback"]


def test_corrupt_or_missing_versions_are_refused(tmp_path) -> None:
    store = ModelStore(tmp_path)
    v1 = store.save(tiny_ensemble())
    (store.path(v1) / "weights.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError):
        store.load(v1)
    with pytest.raises(CheckpointError):
        store.load("v0042")
    with pytest.raises(CheckpointError):
        store.promote("v0042")
    with pytest.raises(CheckpointError):
        store.path("../elsewhere")


def test_a_version_with_truncated_metadata_is_refused(tmp_path) -> None:
    store = ModelStore(tmp_path)
    v1 = store.save(tiny_ensemble())
    (store.path(v1) / "meta.json").write_text('{"format": "streamreco-chec')
    with pytest.raises(CheckpointError, match="meta.json"):
        store.load(v1)


def test_a_log_line_cut_short_at_the_end_is_left_out_and_one_in_the_middle_is_an_error(tmp_path, caplog) -> None:
    store = ModelStore(tmp_path)
    good = '{"action": "promote", "version": "v0001", "ts": 1.0}\n{"action": "promote", "version": "v0002", "ts": 2.0}\n'
    (tmp_path / "log.jsonl").write_text(good + '{"action": "promote", "vers')  # a writer died mid-line
    assert store.current() == "v0002" and "cut short" in caplog.text
    (tmp_path / "log.jsonl").write_text('{"action": "promote", "vers\n' + good)
    with pytest.raises(CheckpointError, match="line 1"):
        store.current()


def test_prune_keeps_the_serving_version_and_those_a_rollback_can_reach(tmp_path) -> None:
    store = ModelStore(tmp_path)
    for _ in range(5):
        store.promote(store.save(tiny_ensemble()))  # v0001..v0005 serve in turn
    store.promote(store.save(tiny_ensemble()))  # v0006, then rolled back: it can never serve again
    store.rollback(reason="test")
    store.promote(store.save(tiny_ensemble()))  # v0007
    assert store.serving_stack() == ["v0001", "v0002", "v0003", "v0004", "v0005", "v0007"]
    assert store.prune(3) == ["v0001", "v0002", "v0003", "v0006"]
    assert sorted(p.name for p in store.versions_dir.iterdir()) == ["v0004", "v0005", "v0007"]
    assert len(store.log()) == 8  # the log keeps every entry
    assert store.rollback()["version"] == "v0005"
    assert store.rollback()["version"] == "v0004"
    with pytest.raises(ValueError, match="v0003, which served before v0004, was pruned"):
        store.rollback()
    assert store.current() == "v0004" and store.load("v0004")[0].vocab.n_items == 3
    assert store.next_version() == "v0008"  # names are never reused


def test_prune_leaves_newer_versions_alone_and_refuses_to_keep_fewer_than_two(tmp_path) -> None:
    store = ModelStore(tmp_path)
    store.promote(store.save(tiny_ensemble()))
    store.promote(store.save(tiny_ensemble()))
    store.save(tiny_ensemble())  # v0003: saved, not promoted yet (a writer between save and promote)
    assert store.prune(2) == [] and store.path("v0003").is_dir()
    with pytest.raises(ValueError, match="at least 2"):
        store.prune(1)
    assert ModelStore(tmp_path / "empty").prune(2) == []
