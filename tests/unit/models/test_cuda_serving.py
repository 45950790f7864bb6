"""The CUDA serving path ranks like the CPU (runs only where a GPU is present; CI has none)."""

from __future__ import annotations

import copy

import pytest
import torch

from models.ensemble import Ensemble
from models.linear_blend import LinearBlend
from models.pipeline import replay_counts
from models.scorers import CovisitationScorer, PopularityScorer
from models.scorers.sequence import SequenceScorer
from models.sequence.config import SeqConfig
from models.serving import ServingConfig, prepare_for_serving
from models.vocab import ItemVocab

from models_synthetic import SYNTHETIC_ITEMS, synthetic_events

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_cuda_blend_matches_the_cpu(dtype: str) -> None:
    vocab = ItemVocab(SYNTHETIC_ITEMS)
    scorers = {
        "sequence": SequenceScorer(vocab, SeqConfig(hidden=32, layers=1, heads=2, max_len=8, dropout=0.0), seed=1),
        "covisitation": CovisitationScorer(vocab),
        "popularity": PopularityScorer(vocab),
    }
    replay_counts([scorers["covisitation"], scorers["popularity"]], synthetic_events(n_users=80))
    cpu = Ensemble(vocab, scorers, {"sequence": 0.5, "covisitation": 0.3, "popularity": 0.2})
    gpu = copy.deepcopy(cpu)
    assert prepare_for_serving(gpu, ServingConfig(device="cuda", dtype=dtype)).type == "cuda"
    histories = [[SYNTHETIC_ITEMS[(3 * u + j) % len(SYNTHETIC_ITEMS)] for j in range(1 + u % 6)] for u in range(32)]
    floor = 0.99 if dtype == "fp32" else 0.9
    want = LinearBlend(cpu).recommend(histories, 10)
    got = LinearBlend(gpu, device="cuda").recommend(histories, 10)
    reference = gpu.recommend(histories, 10, exclude_seen=False)  # the full-catalogue path on the GPU too
    for other in (want, reference):
        overlap = sum(len({s.item_id for s in a} & {s.item_id for s in b}) for a, b in zip(other, got))
        assert overlap / sum(len(a) for a in other) >= floor
