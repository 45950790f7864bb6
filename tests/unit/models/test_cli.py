"""``python -m models train`` / ``evaluate`` on a tiny synthetic log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from models.checkpoint import read_meta
from models.cli import main
from models.data.events import Event
from models.ensemble import Ensemble
from models.scorers import PopularityScorer
from models.vocab import ItemVocab

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


def test_evaluate_ranks_each_users_real_last_item_and_counts_unknown_ones_as_misses(tmp_path: Path) -> None:
    """Synthetic: a checkpoint that knows items a-e, and a log where u2's last item and all of u3's are new.
    Dropping unknown items before the split ranked u2's third item as its target and lost u3."""
    vocab = ItemVocab(["a", "b", "c", "d", "e"])
    pop = PopularityScorer(vocab)
    for n, item in enumerate("abcde"):
        pop.observe([], item, "view", 1e9 + n)
    Ensemble(vocab, {"popularity": pop}).save(tmp_path / "ckpt")
    log = tmp_path / "synthetic_events.jsonl"
    histories = {"u1": "abcd", "u2": "abcX", "u3": "XYZ"}
    log.write_text("".join(json.dumps(Event(u, item, "view", 1e9 + n).to_dict()) + "\n"
                           for u, items in histories.items() for n, item in enumerate(items)))
    results = tmp_path / "results.json"
    assert main(["evaluate", "--checkpoint", str(tmp_path / "ckpt"), "--log", str(log), "--out", str(results)]) == 0
    doc = json.loads(results.read_text())
    assert doc["n_users"] == 3 and doc["unknown_targets"] == 2
    # five items: a known target is always in the top 10, an unknown one never
    assert doc["models"]["popularity"]["hr@10"] == pytest.approx(1 / 3)
    assert "2 of 3 test targets are items the checkpoint does not know" in results.with_suffix(".txt").read_text()


def test_a_missing_log_says_so_in_one_line_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.csv"
    assert main(["train", "--log", str(missing), "--format", "taobao", "--out", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err == f"cannot read {missing}: no such file, or not readable\n"


@pytest.mark.parametrize("checkpoint", ["missing", "empty", "not_a_checkpoint"])
def test_evaluate_a_path_that_holds_no_checkpoint_says_so_in_one_line_and_exits_2(
        checkpoint: str, synthetic_log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / checkpoint
    if checkpoint != "missing":
        path.mkdir()
    if checkpoint == "not_a_checkpoint":
        (path / "meta.json").write_text("{}")
    assert main(["evaluate", "--checkpoint", str(path), "--log", str(synthetic_log)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cannot load the checkpoint: ") and str(path) in err and err.count("\n") == 1


@pytest.mark.parametrize("device", ["gpu", "cuda0"])
def test_a_bad_device_is_refused_before_training(device: str, synthetic_log: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["train", "--log", str(synthetic_log), "--out", str(tmp_path / "x"), "--device", device])
    assert stop.value.code == 2
    assert f"argument --device: must be auto, cpu, cuda or cuda:N, not '{device}'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_where_there_is_none_is_refused_before_training(synthetic_log: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["train", "--log", str(synthetic_log), "--out", str(tmp_path / "x"), "--device", "cuda"])
    assert stop.value.code == 2 and "CUDA is not available" in capsys.readouterr().err


def test_help_names_the_command_the_user_typed(capsys: pytest.CaptureFixture[str]) -> None:
    """(``reco train --help`` says ``reco train``: tests/unit/stream_app/test_cli_errors.py)"""
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    assert capsys.readouterr().out.startswith("usage: python -m models evaluate ")
