"""The model store: versions written whole, promotions and rollbacks replayed from its log."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from models.checkpoint import CheckpointError
from models.ensemble import Ensemble
from models.model_store import ModelStore, StoreChanged
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


def test_the_log_is_read_once_and_then_only_what_was_appended(tmp_path) -> None:
    import json
    from unittest import mock

    writer, reader = ModelStore(tmp_path), ModelStore(tmp_path)  # the trainer, and a worker's long-lived store
    lines = "".join(json.dumps({"action": "promote", "version": f"v{n:04d}", "ts": n}) + "\n" for n in range(1, 2001))
    (tmp_path / "log.jsonl").write_text(lines)
    assert reader.current() == writer.current() == "v2000"
    with mock.patch("models.model_store.json.loads", wraps=json.loads) as parsed:
        assert reader.current() == "v2000" and parsed.call_count == 0  # nothing new: nothing parsed
    tiny_ensemble().save(writer.path("v1999"))  # (a rollback needs its version on disk, whole)
    writer.rollback(reason="test")
    with mock.patch("models.model_store.json.loads", wraps=json.loads) as parsed:
        assert reader.current() == "v1999" and parsed.call_count == 1  # only the appended line
    assert reader.log() == ModelStore(tmp_path).log() and len(reader.log()) == 2001


def test_a_log_rewritten_in_place_is_read_again(tmp_path) -> None:
    store = ModelStore(tmp_path)
    log = tmp_path / "log.jsonl"
    log.write_text('{"action": "promote", "version": "v0001"}\n{"action": "promote", "version": "v0002"}\n')
    assert store.current() == "v0002"
    log.write_text('{"action": "promote", "version": "v0007"}\n{"action": "promote", "version": "v0008"}\n'
                   '{"action": "promote", "version": "v0009"}\n')  # same file, other content: not an append
    assert store.serving_stack() == ["v0007", "v0008", "v0009"]


def test_an_append_after_a_line_cut_short_removes_it_so_the_log_stays_readable(tmp_path, caplog) -> None:
    store = ModelStore(tmp_path)
    store.promote(store.save(tiny_ensemble()))
    store.promote(store.save(tiny_ensemble()))
    with open(tmp_path / "log.jsonl", "a") as fh:
        fh.write('{"action": "promote", "vers')  # a writer died mid-line
    assert store.current() == "v0002"
    store.rollback(reason="after the crash")  # before, this line ran into the cut one: a damaged log
    assert store.current() == "v0001" and "cut short" in caplog.text
    assert [e["action"] for e in ModelStore(tmp_path).log()] == ["promote", "promote", "rollback"]


@pytest.mark.parametrize("line", ["null", "[1, 2]", '{"version": "v0002"}', '{"action": "promote"}',
                                  '{"action": "rotate"}'])
@pytest.mark.parametrize("newline", [True, False])
def test_json_that_is_not_a_log_entry_is_a_damaged_log(tmp_path, line: str, newline: bool) -> None:
    """It parses, so it is no line cut short; readers (the worker's model follower) must get the store's own
    error, not a TypeError or KeyError that stops them."""
    (tmp_path / "log.jsonl").write_text('{"action": "promote", "version": "v0001"}\n' + line + ("\n" if newline else ""))
    with pytest.raises(CheckpointError, match="line 2"):
        ModelStore(tmp_path).current()


def test_a_whole_last_entry_still_without_its_newline_counts(tmp_path) -> None:
    lines = [f'{{"action": "promote", "version": "v000{n}"}}' for n in (1, 2, 3)]
    (tmp_path / "log.jsonl").write_text("\n".join(lines) + '\n{"action": "rollback", "version": "v0002"}')
    store = ModelStore(tmp_path)
    assert store.current() == "v0002" and store.serving_stack() == ["v0001", "v0002"] and len(store.log()) == 4
    tiny_ensemble().save(store.path("v0001"))
    store.rollback(reason="test")  # the next append completes that line rather than cutting it off
    assert store.current() == "v0001" and len(ModelStore(tmp_path).log()) == 5


def test_a_rollback_to_a_damaged_version_is_refused_and_the_current_one_serves_on(tmp_path) -> None:
    """Workers could not load it (a starting one would crash-loop): the store refuses the rollback."""
    store = ModelStore(tmp_path)
    for items in (("a", "b", "c"), ("a", "b", "c", "d")):
        store.promote(store.save(tiny_ensemble(items)))
    with open(store.path("v0001") / "weights.safetensors", "r+b") as fh:
        fh.seek(-4, 2)
        fh.write(b"\0\0\0\0")
    with pytest.raises(CheckpointError, match="checksum"):
        store.rollback(reason="test")
    assert store.current() == "v0002" and [e["action"] for e in store.log()] == ["promote", "promote"]


def test_promote_and_rollback_refuse_when_the_store_changed_since_the_caller_looked(tmp_path) -> None:
    store = ModelStore(tmp_path)
    for items in (("a", "b", "c"), ("a", "b", "c", "d"), ("a", "b", "c", "e")):
        store.save(tiny_ensemble(items))
    store.promote("v0001")
    store.promote("v0002", expect_current="v0001")
    with pytest.raises(StoreChanged):
        store.promote("v0003", expect_current="v0001")
    with pytest.raises(StoreChanged):
        store.rollback(expect_current="v0001")
    assert store.serving_stack() == ["v0001", "v0002"]


def test_the_serving_entry_is_the_one_that_made_the_current_version_serve(tmp_path) -> None:
    store = ModelStore(tmp_path)
    assert store.serving_entry() is None
    for items in (("a", "b", "c"), ("a", "b", "c", "d")):
        store.promote(store.save(tiny_ensemble(items)), reason="test")
    assert store.serving_entry()["action"] == "promote" and store.serving_entry()["version"] == "v0002"
    store.rollback(reason="test")
    assert store.serving_entry() == {**store.log()[-1], "version": "v0001", "action": "rollback"}


def test_prune_deletes_what_an_earlier_prune_or_a_dead_save_left(tmp_path) -> None:
    store = ModelStore(tmp_path)
    for items in (("a", "b", "c"), ("a", "b", "c", "d")):
        store.promote(store.save(tiny_ensemble(items)))
    left = [store.versions_dir / ".pruned-v0000-12345", store.versions_dir / ".tmp-v0009-12345"]
    saving_now = store.versions_dir / f".tmp-v0003-{os.getpid()}"  # this process is writing it
    for path in left + [saving_now]:
        path.mkdir()
    assert store.prune(2) == []
    assert not any(p.exists() for p in left) and saving_now.exists()


def test_a_version_is_on_disk_for_good_before_the_log_names_it(tmp_path, monkeypatch) -> None:
    """A power loss cannot leave a log entry naming a version whose files are empty or whose folder was never
    renamed: the files, their folder and ``versions/`` (after the rename) are synced before the append."""
    store = ModelStore(tmp_path)
    store.promote(store.save(tiny_ensemble()))
    events: list[tuple[str, Path, bool]] = []  # (what, path, whether v0002 is in place yet)
    real_fsync, real_append = os.fsync, ModelStore._append

    def fsync(fd: int) -> None:
        events.append(("fsync", Path(os.readlink(f"/proc/self/fd/{fd}")), store.path("v0002").is_dir()))
        real_fsync(fd)

    def append(self: ModelStore, entry: dict) -> dict:
        events.append(("append", Path(), False))
        return real_append(self, entry)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(ModelStore, "_append", append)
    store.promote(store.save(tiny_ensemble(("a", "b", "c", "d"))))

    before = [(path, renamed) for what, path, renamed in events[:[e[0] for e in events].index("append")]]
    folders = {f".tmp-v0002-{os.getpid()}", "v0002"}  # (synced before or after the rename: the same folder)
    synced = {path.name for path, _ in before if path.parent.name in folders}
    assert {"weights.safetensors", "meta.json"} <= synced
    assert any(path.name in folders for path, _ in before)
    assert (store.versions_dir, True) in before  # versions/ synced after the rename
    assert store.current() == "v0002"


def test_the_first_log_entry_syncs_the_store_folder_too(tmp_path, monkeypatch) -> None:
    """The log's name must survive a power loss as well as its line: lost, the store would serve nothing."""
    store = ModelStore(tmp_path / "store")
    version = store.save(tiny_ensemble())
    synced: list[Path] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    store.promote(version)
    assert synced[-2:] == [store.root / "log.jsonl", store.root]
    synced.clear()
    store.promote(version)  # the log exists: its line alone
    assert synced == [store.root / "log.jsonl"]
