"""``python -m models train`` / ``evaluate`` on a tiny synthetic log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.checkpoint import read_meta
from models.cli import main

from models_synthetic import synthetic_events


@pytest.fixture
def synthetic_log(tmp_path: Path) -> Path:
    path = tmp_path / "synthetic_events.jsonl"
    path.write_text("\n".join(json.dumps(e.to_dict()) for e in synthetic_events(n_users=50)) + "\n")
    return path


def test_train_then_evaluate_writes_a_checkpoint_and_results(synthetic_log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt, results = tmp_path / "ckpt", tmp_path / "results.json"
    tiny = ["--hidden", "16", "--layers", "1", "--max-len", "8", "--epochs", "2", "--threads", "1", "--no-bf16", "--no-progress"]
    assert main(["train", "--log", str(synthetic_log), "--format", "jsonl", "--out", str(ckpt), "--seed", "3", *tiny]) == 0
    meta = read_meta(ckpt)
    assert meta["config"]["seq"]["hidden"] == 16 and meta["config"]["train"]["seed"] == 3
    assert set(meta["weights"]) == {"sequence", "covisitation", "popularity"}
    assert main(["evaluate", "--checkpoint", str(ckpt), "--log", str(synthetic_log), "--format", "jsonl", "--out", str(results)]) == 0
    doc = json.loads(results.read_text())
    assert doc["protocol"] == "full" and doc["n_users"] == 50
    assert set(doc["models"]) == {"sequence", "covisitation", "popularity", "ensemble"}
    assert 0.0 <= doc["models"]["ensemble"]["ndcg@10"] <= doc["models"]["ensemble"]["hr@10"] <= 1.0
    assert "sampled99" in doc and "ensemble" in doc["sampled99"]["models"]
    assert "ndcg@10" in capsys.readouterr().out


def test_train_rejects_an_unknown_scorer(synthetic_log: Path, tmp_path: Path) -> None:
    assert main(["train", "--log", str(synthetic_log), "--out", str(tmp_path / "x"), "--scorers", "sequence,magic"]) == 2
