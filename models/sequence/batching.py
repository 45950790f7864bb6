"""Turn per-user row sequences into right-padded tensors, bucketed by length."""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch


def pad_right(
    items: Sequence[Sequence[int]], types: Sequence[Sequence[int]], max_len: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The latest ``max_len`` of each history, right-padded: items, types (batch, L) and lengths (batch,)."""
    lengths = [min(len(h), max_len) for h in items]
    width = max(lengths, default=0) or 1
    out_items = torch.zeros((len(items), width), dtype=torch.long)
    out_types = torch.zeros((len(items), width), dtype=torch.long)
    for b, (h, t, n) in enumerate(zip(items, types, lengths)):
        if n:
            out_items[b, :n] = torch.as_tensor(h[-n:])
            out_types[b, :n] = torch.as_tensor(t[-n:])
    return out_items, out_types, torch.as_tensor(lengths, dtype=torch.long)


def training_batch(
    items: Sequence[Sequence[int]], types: Sequence[Sequence[int]], max_len: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs (items, types) and next-item targets (batch, L); target 0 means no loss there."""
    inputs, in_types, _ = pad_right([h[:-1] for h in items], [t[:-1] for t in types], max_len)
    targets, _, _ = pad_right([h[1:] for h in items], [t[1:] for t in types], max_len)
    return inputs, in_types, targets


def length_buckets(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Batches of indices of similar length (little padding), in random order."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], rng.random()))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches
