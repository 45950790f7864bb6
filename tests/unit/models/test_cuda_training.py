"""Fine-tuning on a GPU (runs only where one is present; CI has none, ``test_device_placement`` stands in)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from models.ensemble import Ensemble
from models.evaluation.prequential import rank_samples
from models.online.learner import OnlineLearner

from test_online_learner import FAST, sample, synthetic_ensemble

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_a_learner_on_cuda_learns_and_its_candidate_loads_on_the_cpu(tmp_path: Path) -> None:
    pattern = [sample(["synthetic-item-5", "synthetic-item-6"], "synthetic-item-30", n) for n in range(16)]
    learner = OnlineLearner(synthetic_ensemble(), replace(FAST, device="cuda"))
    assert learner.device.type == "cuda"
    before = int(rank_samples(learner.ensemble, pattern[:1])[0])
    for _ in range(3):
        learner.learn(pattern + [sample(["synthetic-item-7"], "cuda-new-item", 99)])  # the item table grows
    after = int(rank_samples(learner.ensemble, pattern[:1])[0])
    assert before > 5 and after == 0
    learner.candidate().save(tmp_path / "v")
    loaded, _ = Ensemble.load(tmp_path / "v")
    assert loaded.scorers["sequence"].model.device.type == "cpu"
    assert int(rank_samples(loaded, pattern[:1])[0]) == 0
