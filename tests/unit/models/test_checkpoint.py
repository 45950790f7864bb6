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
