"""The transformer: a tiny training run learns, the vocabulary grows without collisions."""

from __future__ import annotations

from dataclasses import replace

import torch

from models.evaluation.protocol import leave_one_out
from models.history import user_histories
from models.scorers import SequenceScorer
from models.sequence.batching import pad_right, training_batch
from models.sequence.model import SeqRec
from models.vocab import ItemVocab

from models_synthetic import SYNTHETIC_ITEMS, TINY_SEQ, TINY_TRAIN, synthetic_events


def test_pad_right_keeps_the_latest_items_and_pads_with_zeros() -> None:
    items, types, lengths = pad_right([[5, 6, 7, 8], [], (9,)], [[1, 2, 3, 1], [], (2,)], max_len=3)
    assert items.tolist() == [[6, 7, 8], [0, 0, 0], [9, 0, 0]]
    assert types.tolist() == [[2, 3, 1], [0, 0, 0], [2, 0, 0]]
    assert lengths.tolist() == [3, 0, 1] and items.dtype == types.dtype == torch.long
    empty = pad_right([], [], max_len=3)
    assert [t.shape for t in empty] == [(0, 1), (0, 1), (0,)]


def test_tiny_training_run_lowers_the_loss() -> None:
    vocab = ItemVocab(SYNTHETIC_ITEMS, capacity=64)
    split = leave_one_out(user_histories(synthetic_events(n_users=80)), vocab)
    scorer = SequenceScorer(vocab, TINY_SEQ, seed=1)
    inputs, types, targets = training_batch(split.fit_items, split.fit_types, TINY_SEQ.max_len)
    with torch.no_grad():
        before = scorer.model(inputs, types, targets, len(vocab)).item()
    result = scorer.fit(split.fit_items, split.fit_types, replace(TINY_TRAIN, epochs=8), progress=False)
    with torch.no_grad():
        after = scorer.model(inputs, types, targets, len(vocab)).item()
    assert after < 0.8 * before
    assert result.losses[-1] < result.losses[0]


def test_next_item_of_the_ring_is_ranked_high_after_training() -> None:
    vocab = ItemVocab(SYNTHETIC_ITEMS, capacity=64)
    split = leave_one_out(user_histories(synthetic_events(n_users=120)), vocab)
    scorer = SequenceScorer(vocab, TINY_SEQ, seed=1)
    scorer.fit(split.fit_items, split.fit_types, replace(TINY_TRAIN, epochs=15), progress=False)
    scores = scorer.score_batch([["synthetic-item-10", "synthetic-item-11"]], SYNTHETIC_ITEMS)[0]
    assert SYNTHETIC_ITEMS[int(scores.argmax())] == "synthetic-item-12"


def test_vocab_grows_without_collisions_and_the_model_keeps_old_rows() -> None:
    vocab = ItemVocab(["a", "b"], capacity=3)
    model = SeqRec(TINY_SEQ, vocab.capacity)
    old = model.items.weight.detach().clone()
    rows = [vocab.add(f"new-{i}") for i in range(10)]
    assert len(set(rows)) == 10 and vocab.row("a") == 1 and vocab.add("a") == 1
    assert vocab.capacity >= len(vocab) and vocab.capacity == 24  # 3 -> 6 -> 12 -> 24
    model.ensure_rows(vocab.capacity)
    assert model.n_rows == 24
    torch.testing.assert_close(model.items.weight[:3], old)
    assert ItemVocab.from_json(vocab.to_json()).items == vocab.items


def test_new_items_become_scorable_after_the_vocabulary_grows() -> None:
    vocab = ItemVocab(SYNTHETIC_ITEMS, capacity=41)
    scorer = SequenceScorer(vocab, TINY_SEQ, seed=0)
    vocab.add_all([f"later-item-{i}" for i in range(30)])
    scores = scorer.score_batch([["later-item-3", "synthetic-item-1"]], ["later-item-29", "synthetic-item-2"])
    assert scores.shape == (1, 2) and torch.isfinite(torch.as_tensor(scores)).all()


def test_bf16_autocast_only_where_the_cpu_has_native_bf16(monkeypatch) -> None:
    """``bf16=None`` (the default) trains in bf16 only on AMX/AVX512-BF16 CPUs: emulated bf16 is slower than fp32."""
    import models.sequence.train as train

    used: list[torch.dtype] = []
    real_autocast = torch.autocast

    def recording_autocast(device_type: str, dtype: torch.dtype, **kwargs):
        used.append(dtype)
        return real_autocast(device_type, dtype=dtype, **kwargs)

    monkeypatch.setattr(train.torch, "autocast", recording_autocast)
    vocab = ItemVocab(SYNTHETIC_ITEMS, capacity=64)
    split = leave_one_out(user_histories(synthetic_events(n_users=20)), vocab)
    config = replace(TINY_TRAIN, epochs=1, bf16=None)
    for native, expected in ((False, []), (True, [torch.bfloat16])):
        used.clear()
        monkeypatch.setattr(train, "native_bf16", lambda device, native=native: native)
        SequenceScorer(vocab, TINY_SEQ, seed=1).fit(split.fit_items, split.fit_types, config, progress=False)
        assert sorted(set(used)) == expected
    used.clear()
    SequenceScorer(vocab, TINY_SEQ, seed=1).fit(split.fit_items, split.fit_types, replace(config, bf16=False),
                                                progress=False)
    assert used == []
