"""Pre-training loop: full-softmax cross-entropy, early stopping on a validation metric."""

from __future__ import annotations

import contextlib
import copy
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from models.device import native_bf16, resolve_device
from models.sequence.batching import length_buckets, training_batch
from models.sequence.config import TrainConfig
from models.sequence.model import SeqRec


@dataclass
class TrainResult:
    """What happened in a run: per-epoch mean losses and validation scores."""

    losses: list[float] = field(default_factory=list)
    val_scores: list[float] = field(default_factory=list)
    best_epoch: int = -1
    best_score: float = float("-inf")
    seconds: float = 0.0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def train_sequence_model(
    model: SeqRec,
    items: Sequence[Sequence[int]],
    types: Sequence[Sequence[int]],
    n_rows: int,
    config: TrainConfig,
    *,
    validate: Callable[[SeqRec], float] | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train ``model`` in place on users' row sequences (oldest first); keeps the best validated state.

    The model moves to ``config.device`` (``auto``: the GPU when one exists) and stays there.

    ``n_rows``: rows the softmax covers (the vocabulary size). ``validate`` returns
    a score to maximise (e.g. NDCG@10 on validation targets) after each epoch.
    """
    torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    rng = random.Random(config.seed)
    keep = [i for i, h in enumerate(items) if len(h) >= 2]
    lengths = [min(len(items[i]), model.config.max_len + 1) for i in keep]
    device = resolve_device(config.device)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    bf16 = native_bf16(device) if config.bf16 is None else config.bf16
    result, best_state, stale = TrainResult(), None, 0
    start = time.perf_counter()
    for epoch in range(config.epochs):
        model.train()
        total, steps = 0.0, 0
        batches = length_buckets(lengths, config.batch_size, rng)
        for batch in tqdm(batches, desc=f"epoch {epoch}", disable=not progress, leave=False):
            inputs, in_types, targets = (t.to(device) for t in training_batch(
                [items[keep[i]] for i in batch], [types[keep[i]] for i in batch], model.config.max_len
            ))
            autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
            with autocast:
                loss = model(inputs, in_types, targets, n_rows)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, steps = total + loss.item(), steps + 1
        result.losses.append(total / max(steps, 1))
        out_of_time = time.perf_counter() - start > config.max_seconds
        if validate is None:
            if out_of_time:
                break
            continue
        model.eval()
        score = validate(model)
        result.val_scores.append(score)
        tqdm.write(f"epoch {epoch}: loss {result.losses[-1]:.4f} val {score:.4f} ({time.perf_counter() - start:.0f} s)")
        if score > result.best_score:
            result.best_score, result.best_epoch, stale = score, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
        if stale >= config.patience or out_of_time:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    result.seconds = time.perf_counter() - start
    return result
