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


def test_an_unknown_format_is_refused(saved: Path) -> None:
    meta = json.loads((saved / META).read_text())
    meta["version"] = 99
    (saved / META).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError):
        load_checkpoint(saved)


def _truncate(meta_path: Path) -> None:
    meta_path.write_text(meta_path.read_text()[:40])


def _without(*keys: str):
    def edit(meta_path: Path) -> None:
        meta = json.loads(meta_path.read_text())
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
