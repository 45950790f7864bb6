"""Serving preparation: device resolution and a bf16 copy that ranks like fp32."""

from __future__ import annotations

import copy

import pytest
import torch

from models.ensemble import Ensemble
from models.scorers.sequence import SequenceScorer
from models.sequence.config import SeqConfig
from models.serving import ServingConfig, prepare_for_serving, resolve_device
from models.vocab import ItemVocab


def _ensemble() -> Ensemble:
    vocab = ItemVocab([f"synthetic-item-{i}" for i in range(300)])
    seq = SequenceScorer(vocab, SeqConfig(hidden=32, layers=1, heads=2, max_len=8, dropout=0.0), seed=3)
    return Ensemble(vocab, {"sequence": seq})


def test_auto_device_is_cpu_without_cuda():
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_a_cuda_index_the_machine_lacks_is_refused_by_name(monkeypatch):
    """``torch.device`` does not check the index: ``reco train --device cuda:7`` on a one-GPU host passed the
    argument check and failed later (synthetic: CUDA faked as one device)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ValueError, match="'cuda:7' requested but this machine has 1 CUDA device"):
        resolve_device("cuda:7")


def test_bf16_scores_rank_like_fp32():
    fp32 = _ensemble()
    bf16 = copy.deepcopy(fp32)
    prepare_for_serving(bf16, ServingConfig(device="cpu", dtype="bf16"))
    histories = [[f"synthetic-item-{(7 * u + j) % 300}" for j in range(6)] for u in range(16)]
    a = fp32.recommend(histories, 10, exclude_seen=False)
    b = bf16.recommend(histories, 10, exclude_seen=False)
    assert next(bf16.scorers["sequence"].model.parameters()).dtype == torch.bfloat16
    overlap = sum(len({s.item_id for s in x} & {s.item_id for s in y}) for x, y in zip(a, b)) / (16 * 10)
    assert overlap >= 0.8


def test_unknown_dtype_is_refused():
    with pytest.raises(ValueError, match="dtype must be one of"):
        prepare_for_serving(_ensemble(), ServingConfig(dtype="fp8"))
