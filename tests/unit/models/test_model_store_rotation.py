"""The model store's log is archived once long, and the new log serves, rolls back and resumes as before;
writers decide under the store's lock."""

from __future__ import annotations

import gzip
import json
import threading
import time

import pytest

from models import model_store
from models.checkpoint import CheckpointError
from models.model_store import ModelStore
from tests.unit.models.test_model_store import tiny_ensemble


def promoted(store: ModelStore, n: int) -> list[str]:
    """Save and promote ``n`` versions (each with the sample offsets a trainer records)."""
    versions = []
    for _ in range(n):
        version = store.save(tiny_ensemble())
        store.promote(version, sample_offsets={"0": 100 * int(version[1:])})
        versions.append(version)
    return versions


def test_a_long_log_is_archived_and_the_new_one_serves_and_rolls_back_as_before(tmp_path) -> None:
    store = ModelStore(tmp_path)
    versions = promoted(store, 8)
    store.rollback(reason="by hand")  # v0008 off: v0007 serves, v0006 before it
    before = (tmp_path / "log.jsonl").read_bytes()
    assert store.rotate_log(max_lines=9, keep=3) is None  # 9 lines: not longer than 9
    archive = store.rotate_log(max_lines=8, keep=3)

    assert archive == tmp_path / "log-archive" / "log-000001.jsonl.gz"
    assert gzip.decompress(archive.read_bytes()) == before  # every line, as it was
    fresh = ModelStore(tmp_path)
    assert fresh.serving_stack() == versions[4:7] and fresh.current() == "v0007"
    entries = fresh.log()
    assert entries[0]["action"] == "rotate" and entries[0]["archived_lines"] == 9
    assert entries[0]["archive"] == "log-archive/log-000001.jsonl.gz"
    old = [json.loads(line) for line in before.splitlines()]
    kept = [e for e in old if e["action"] == "promote" and e["version"] in versions[4:7]]
    assert entries[1:] == [*kept, old[-2], old[-1]]  # v0007 serves by the rollback from v0008: copied too
    assert fresh.rollback()["version"] == "v0006" and store.current() == "v0006"
    assert store.rollback()["version"] == "v0005"
    with pytest.raises(ValueError, match="nothing to roll back to"):
        store.rollback()


def test_a_reader_that_read_the_old_log_follows_the_new_one(tmp_path) -> None:
    writer, reader = ModelStore(tmp_path), ModelStore(tmp_path)
    promoted(writer, 6)
    assert reader.current() == "v0006"  # it has read the whole old log
    writer.rotate_log(max_lines=4, keep=2)
    assert reader.current() == "v0006" and reader.serving_stack() == ["v0005", "v0006"]
    promoted(writer, 1)
    assert reader.current() == "v0007" and reader.serving_stack() == ["v0005", "v0006", "v0007"]
    assert len(reader.log()) == 4  # the rotate entry, two copies, one promotion


def test_rotations_number_their_archives_and_keep_zero_keeps_the_whole_stack(tmp_path) -> None:
    store = ModelStore(tmp_path)
    promoted(store, 5)
    store.rollback()
    store.rollback()  # seven lines, three versions in the stack, v0003 serving by the rollback from v0004
    assert store.rotate_log(max_lines=6) is not None
    assert store.serving_stack() == ["v0001", "v0002", "v0003"] and len(store.log()) == 6
    promoted(store, 2)
    second = store.rotate_log(max_lines=3, keep=2)
    assert [p.name for p in store.archives()] == ["log-000001.jsonl.gz", "log-000002.jsonl.gz"]
    assert second == store.archives()[-1] and store.serving_stack() == ["v0006", "v0007"]
    assert [e["action"] for e in store.log()] == ["rotate", "promote", "promote"]


def test_the_new_log_keeps_the_serving_versions_sample_offsets_for_a_restart(tmp_path) -> None:
    store = ModelStore(tmp_path)
    promoted(store, 4)
    store.rotate_log(max_lines=3, keep=2)
    serving = [e for e in ModelStore(tmp_path).log() if e["action"] == "promote" and e["version"] == "v0004"]
    assert serving and serving[-1]["sample_offsets"] == {"0": 400}


@pytest.mark.parametrize("keep", [0, 2])
def test_a_version_serving_by_a_rollback_still_does_after_the_log_is_archived(tmp_path, keep: int) -> None:
    """A restarted trainer must not take it for a promotion (and put it on probation again), nor ``reco
    announce`` announce it as one."""
    store = ModelStore(tmp_path)
    promoted(store, 5)
    store.rollback(reason="by hand")
    store.rollback(reason="by hand again")  # v0005, then v0004 off: v0003 serves by this rollback
    before = (store.serving_entry(), store.serving_stack(), store.current(), store.history())
    assert before[0]["action"] == "rollback"
    store.rotate_log(max_lines=6, keep=keep)

    fresh = ModelStore(tmp_path)
    assert fresh.archives() and fresh.serving_entry() == before[0] and fresh.current() == "v0003"
    assert fresh.serving_stack() == (before[1][-keep:] if keep else before[1])
    assert [e for e in fresh.history() if e["action"] != "rotate"] == before[3]
    serving = [e for e in fresh.log() if e["action"] == "promote" and e["version"] == "v0003"]
    assert serving[-1]["sample_offsets"] == {"0": 300}  # where a restarted trainer resumes
    assert fresh.rollback()["version"] == "v0002"


def test_a_damaged_log_is_not_rotated(tmp_path) -> None:
    store = ModelStore(tmp_path)
    promoted(store, 3)
    log = tmp_path / "log.jsonl"
    lines = log.read_bytes().split(b"\n")
    damaged = b"\n".join([lines[0], b'{"action": "prom', *lines[1:]])
    log.write_bytes(damaged)
    with pytest.raises(CheckpointError, match="line 2"):
        ModelStore(tmp_path).rotate_log(max_lines=1)
    assert log.read_bytes() == damaged and not (tmp_path / "log-archive").exists()


def test_a_last_line_cut_short_goes_to_the_archive_only(tmp_path) -> None:
    store = ModelStore(tmp_path)
    promoted(store, 3)
    with open(tmp_path / "log.jsonl", "ab") as fh:
        fh.write(b'{"action": "promote", "vers')  # a writer that died mid-line
    archive = ModelStore(tmp_path).rotate_log(max_lines=2, keep=1)
    assert gzip.decompress(archive.read_bytes()).endswith(b'{"action": "promote", "vers')
    assert ModelStore(tmp_path).serving_stack() == ["v0003"]


def test_history_holds_every_entry_once_across_rotations(tmp_path) -> None:
    store = ModelStore(tmp_path)
    promoted(store, 5)
    store.rotate_log(max_lines=4, keep=2)
    promoted(store, 3)
    store.rollback(reason="by hand")
    store.rotate_log(max_lines=5, keep=2)
    promoted(store, 1)
    steps = [(e["action"], e.get("version")) for e in ModelStore(tmp_path).history()]
    assert steps == [*(("promote", f"v000{i}") for i in range(1, 6)), ("rotate", None),
                     *(("promote", f"v000{i}") for i in range(6, 9)), ("rollback", "v0007"), ("rotate", None),
                     ("promote", "v0009")]


def test_a_log_whose_kept_versions_alone_would_fill_it_is_not_archived(tmp_path, caplog) -> None:
    store = ModelStore(tmp_path)
    promoted(store, 5)
    assert store.rotate_log(max_lines=4) is None  # keep 0: all five versions, six lines with the rotate entry
    assert not store.archives() and len(store.log()) == 5 and "would not fit" in caplog.text


def test_an_archive_left_by_a_rotation_that_failed_is_written_over_and_never_read_twice(tmp_path, monkeypatch) -> None:
    store = ModelStore(tmp_path)
    promoted(store, 5)
    real_write = model_store._write_atomically

    def log_write_fails(path, data):  # the disk filled up between the archive and the new log
        if path.name == "log.jsonl":
            raise OSError(28, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(model_store, "_write_atomically", log_write_fails)
    with pytest.raises(OSError):
        store.rotate_log(max_lines=4, keep=2)
    monkeypatch.setattr(model_store, "_write_atomically", real_write)
    assert [p.name for p in store.archives()] == ["log-000001.jsonl.gz"]  # left behind, the log unchanged
    steps = [e.get("version") for e in store.history()]
    assert steps == ["v0001", "v0002", "v0003", "v0004", "v0005"]  # the log alone: it names no archive

    promoted(store, 1)
    assert store.rotate_log(max_lines=4, keep=2).name == "log-000001.jsonl.gz"  # written over
    promoted(store, 3)
    store.rotate_log(max_lines=4, keep=2)
    steps = [e.get("version") for e in ModelStore(tmp_path).history()]
    assert steps == ["v0001", "v0002", "v0003", "v0004", "v0005", "v0006", None, "v0007", "v0008", "v0009", None]


def test_a_rollback_decides_under_the_lock_so_a_promotion_and_prune_cannot_come_in_between(tmp_path) -> None:
    store = ModelStore(tmp_path)
    promoted(store, 3)
    newer = store.save(tiny_ensemble())  # v0004, saved; the "trainer" below promotes it and prunes
    holding = threading.Event()

    def trainer() -> None:
        with model_store._locked(tmp_path):
            holding.set()
            time.sleep(0.3)  # reco rollback starts meanwhile
            store._append({"action": "promote", "version": newer})
        ModelStore(tmp_path).prune(2)  # v0001 and v0002 go

    thread = threading.Thread(target=trainer)
    thread.start()
    holding.wait()
    entry = ModelStore(tmp_path).rollback(reason="by hand")  # waits for the lock, then decides
    thread.join()
    assert (entry["from_version"], entry["version"]) == ("v0004", "v0003")
    assert store.current() == "v0003" and store.path("v0003").is_dir()
