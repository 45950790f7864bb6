"""Checkpoints: JSON metadata + safetensors, checksum verified, unknown formats refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.checkpoint import META, WEIGHTS, CheckpointError, load_checkpoint, read_meta, save_checkpoint
from models.scorers import SequenceScorer
from models.vocab import ItemVocab

from models_synthetic import SYNTHETIC_ITEMS, TINY_SEQ


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    vocab = ItemVocab(SYNTHETIC_ITEMS, capacity=50)
    return save_checkpoint(tmp_path / "ckpt", vocab, {"sequence": SequenceScorer(vocab, TINY_SEQ, seed=2)}, extra={"metrics": {"x": 1.0}})


def test_metadata_holds_config_vocab_version_and_checksum(saved: Path) -> None:
    meta = read_meta(saved)
    assert meta["version"] == 1 and len(meta["checksum"]["sha256"]) == 64
    assert meta["vocab"]["items"] == SYNTHETIC_ITEMS and meta["vocab"]["capacity"] == 50
    assert meta["scorers"]["sequence"]["meta"]["config"]["hidden"] == TINY_SEQ.hidden
    assert meta["metrics"] == {"x": 1.0}


def test_a_changed_weights_file_is_refused(saved: Path) -> None:
    data = bytearray((saved / WEIGHTS).read_bytes())
    data[-1] ^= 0xFF
    (saved / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(saved)


def test_edited_metadata_is_refused(saved: Path) -> None:
    """The metadata maps rows to item ids: two ids swapped would serve every user the wrong items, with the
    weights' checksum intact."""
    meta = json.loads((saved / META).read_text())
    items = meta["vocab"]["items"]
    items[0], items[1] = items[1], items[0]
    (saved / META).write_text(json.dumps(meta, indent=2))
    with pytest.raises(CheckpointError, match="edited or damaged metadata"):
        load_checkpoint(saved)


def test_metadata_reformatted_but_unchanged_still_loads_and_old_checkpoints_without_its_checksum_too(
        saved: Path) -> None:
    meta = json.loads((saved / META).read_text())
    (saved / META).write_text(json.dumps(meta, indent=4, sort_keys=True))
    assert load_checkpoint(saved)[0].items == SYNTHETIC_ITEMS
    del meta["checksum"]["meta_sha256"]  # saved before 2026-12-07
    (saved / META).write_text(json.dumps(meta))
    assert load_checkpoint(saved)[0].items == SYNTHETIC_ITEMS


def test_metadata_with_number_keys_round_trips_its_checksum(tmp_path: Path) -> None:
    """JSON turns number keys into strings: the checksum is taken over the metadata as a reader sees it."""
    vocab = ItemVocab(SYNTHETIC_ITEMS, capacity=50)
    path = save_checkpoint(tmp_path / "ckpt", vocab, {"sequence": SequenceScorer(vocab, TINY_SEQ, seed=2)},
                           extra={"per_k": {2: 0.1, 10: 0.2}, "mixed": {0: 5, "total": 5}})
    assert read_meta(path)["per_k"] == {"2": 0.1, "10": 0.2} and load_checkpoint(path)[0].items == SYNTHETIC_ITEMS


def test_an_unknown_format_is_refused(saved: Path) -> None:
    meta = json.loads((saved / META).read_text())
    meta["version"] = 99
    (saved / META).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError):
        load_checkpoint(saved)


def _truncate(meta_path: Path) -> None:
    meta_path.write_text(meta_path.read_text()[:40])


def _without(*keys: str):
    """Metadata missing a field, as a checkpoint saved before the metadata checksum (without it) would be."""
    def edit(meta_path: Path) -> None:
        meta = json.loads(meta_path.read_text())
        meta.get("checksum", {}).pop("meta_sha256", None)
        parent = meta
        for key in keys[:-1]:
            parent = parent[key]
        del parent[keys[-1]]
        meta_path.write_text(json.dumps(meta))
    return edit


@pytest.mark.parametrize(("corrupt", "message"), [
    (_truncate, "not readable JSON"),
    (_without("checksum"), "no checksum"),
    (_without("checksum", "sha256"), "no checksum.sha256"),
    (_without("vocab"), "no vocab"),
    (_without("scorers", "sequence", "kind"), "no scorers.sequence.kind"),
    (_without("scorers", "sequence", "meta", "config"), "scorer 'sequence' cannot be restored"),
], ids=["truncated", "no-checksum", "no-sha256", "no-vocab", "no-kind", "no-config"])
def test_unreadable_or_incomplete_metadata_is_a_checkpoint_error(saved: Path, corrupt, message: str) -> None:
    corrupt(saved / META)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(saved)
