"""Training and scoring keep every tensor on the model's device, so the model can live on a GPU.

No GPU here: ``meta`` (shapes, no data) stands in for one. The model is put
there through the same ``device`` settings a GPU would use, and ``on_fake_gpu``
fails the first op that mixes a meta tensor with a CPU one: a batch not moved
to the model, or a tensor made without naming the model's device, as either
would fail beside CUDA weights. (Torch's CPU kernels do not all refuse a meta
argument, hence the dispatch mode.) Zero-dimensional tensors are let through,
as a CPU scalar may join CUDA tensors. Reading a meta tensor back gives zeros
(a loss, the scores) or true (a truth value): these tests check where tensors
are, not their values.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from models.evaluation.protocol import leave_one_out
from models.model_store import ModelStore
from models.history import user_histories
from models.online.blend import BlendRefitConfig
from models.online.learner import OnlineConfig, OnlineLearner
from models.online.samples import TrainingSample
from models.online.trainer import OnlineTrainer, TrainerConfig, ensure_base
from models.scorers import SequenceScorer
from models.vocab import ItemVocab

from models_synthetic import SYNTHETIC_ITEMS, TINY_SEQ, TINY_TRAIN, synthetic_events
from test_online_learner import sample, synthetic_ensemble

FAKE_GPU = "meta"
# only the sequence model learns: the counting scorers and the blend compute on the CPU by design
SEQUENCE_ONLY = OnlineConfig(lr=1e-2, batch_size=16, replay_fraction=0.25, observe_stats=False,
                             blend=BlendRefitConfig(every=0), device=FAKE_GPU)
_MOVES = {torch.ops.aten._to_copy, torch.ops.aten.to}  # (``to`` itself reaches the mode in inference mode)


class _FakeGpu(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        tensors = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        to_cpu = any(isinstance(a, torch.device) and a.type == "cpu" for a in tree_leaves((args, kwargs)))
        if func.overloadpacket in _MOVES and tensors[0].is_meta and to_cpu:  # ``.cpu()``, ``.to("cpu")``
            dtype = kwargs.get("dtype") or next((a for a in args if isinstance(a, torch.dtype)), tensors[0].dtype)
            return torch.zeros(tensors[0].shape, dtype=dtype)
        if func is torch.ops.aten._local_scalar_dense.default and tensors[0].is_meta:  # .item()
            return True if tensors[0].dtype == torch.bool else 0.0 if tensors[0].is_floating_point() else 0
        if func is torch.ops.aten.is_nonzero.default and tensors[0].is_meta:
            return True  # ``if tensor:`` (transformers' mask checks take their usual branch)
        devices = {t.device.type for t in tensors if t.dim()}
        if len(devices) > 1:
            raise AssertionError(f"{func} mixes devices {sorted(devices)}: a tensor is not on the model's device")
        return func(*args, **kwargs)


@contextlib.contextmanager
def on_fake_gpu() -> Iterator[None]:
    with _FakeGpu():
        yield


def ring(n: int, offset: int = 0) -> list[TrainingSample]:
    return [sample([f"synthetic-item-{(i + offset) % 40}", f"synthetic-item-{(i + offset + 1) % 40}"],
                   f"synthetic-item-{(i + offset + 2) % 40}", i) for i in range(n)]


def test_the_fake_gpu_refuses_a_cpu_tensor_beside_the_models_weights() -> None:
    weight = torch.nn.Embedding(5, 3, device=FAKE_GPU).weight
    with on_fake_gpu(), pytest.raises(AssertionError, match="mixes devices"):
        weight[torch.arange(2)]
    with on_fake_gpu():
        assert weight[torch.arange(2, device=FAKE_GPU)].shape == (2, 3)
        assert weight.sum().item() == 0.0 and weight.cpu().device.type == "cpu"


def test_fine_tuning_keeps_its_tensors_on_the_models_device() -> None:
    ensemble = synthetic_ensemble(sequence_only=True)
    with on_fake_gpu():
        learner = OnlineLearner(ensemble, SEQUENCE_ONLY)
        assert learner.device.type == FAKE_GPU
        before = learner.ensemble.vocab.n_items
        learner.learn(ring(32))
        report = learner.learn(ring(32, offset=7) + [sample(["synthetic-item-3"], "fake-gpu-new-item", 99)])
        tensors, _ = learner.candidate().scorers["sequence"].state()  # what a checkpoint saves
    assert report["steps"] == 3  # batch 16: 33 samples, 3 steps
    assert learner.ensemble.vocab.n_items == before + 1  # the item table grew on the fake GPU too
    assert learner.ensemble.scorers["sequence"].model.items.weight.device.type == FAKE_GPU
    assert {t.device.type for t in tensors.values()} == {"cpu"}


def test_the_trainer_ranks_promotes_and_rolls_back_with_the_model_on_its_device(tmp_path: Path) -> None:
    """The whole trainer on the stand-in GPU: hold-out ranks through each version's serving form
    (``LinearBlend`` on the model's device), blend re-fits, promotions, probations and rollbacks (a margin
    below 0 rolls every new version back), checkpoints saved from it."""
    synthetic_ensemble().save(tmp_path / "base")
    store = ModelStore(tmp_path / "store")
    ensure_base(store, str(tmp_path / "base"))
    refit = BlendRefitConfig(every=16, window=64, per_batch=64, keep_of=64, per_scorer=10)
    learner = replace(SEQUENCE_ONLY, observe_stats=True, blend=refit)
    actions = []
    with on_fake_gpu():
        trainer = OnlineTrainer(store, learner, TrainerConfig(eval_slice=16, promote_every=32, promote_every_s=1e9,
                                                             rollback_window=16, rollback_margin=-1.0))
        for k in range(6):
            entries = trainer.on_samples(ring(24, offset=24 * k) + [sample(["synthetic-item-1"], f"new-{k}", 99 + k)])
            actions += [e["action"] for e in entries]
    assert "promote" in actions and "rollback" in actions and trainer.learner.blend.fits
    assert trainer.serving.scorers["sequence"].model.device.type == FAKE_GPU
    loaded, _ = store.load(store.serving_entry()["version"])
    assert loaded.scorers["sequence"].model.device.type == "cpu"


def test_scoring_keeps_its_tensors_on_the_models_device() -> None:
    scorer = SequenceScorer(ItemVocab(SYNTHETIC_ITEMS), TINY_SEQ, seed=0)
    scorer.model.to(FAKE_GPU)
    with on_fake_gpu():
        got = scorer.score_rows([[1, 2, 3], [4]], [[1, 1, 2], [1]])
    assert got.device.type == "cpu" and got.shape == (2, len(SYNTHETIC_ITEMS) + 1)


def test_pre_training_keeps_its_tensors_on_the_models_device(monkeypatch: pytest.MonkeyPatch) -> None:
    from torch.fx.experimental import _config as fx_config

    monkeypatch.setattr(fx_config, "meta_nonzero_assume_all_nonzero", True)  # the loss's ``hidden[mask]``
    vocab = ItemVocab(SYNTHETIC_ITEMS, capacity=64)
    split = leave_one_out(user_histories(synthetic_events(n_users=20)), vocab)
    scorer = SequenceScorer(vocab, TINY_SEQ, seed=1)
    with on_fake_gpu():
        result = scorer.fit(split.fit_items, split.fit_types, replace(TINY_TRAIN, epochs=2, bf16=False,
                                                                       device=FAKE_GPU), progress=False)
    assert len(result.losses) == 2 and scorer.model.device.type == FAKE_GPU
