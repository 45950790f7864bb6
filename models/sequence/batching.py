"""Turn per-user row sequences into right-padded tensors, bucketed by length."""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch


def pad_right(
    items: Sequence[Sequence[int]], types: Sequence[Sequence[int]], max_len: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The latest ``max_len`` of each history, right-padded: items, types (batch, L) and lengths (batch,).

    Built on the CPU, whatever the default device; the model moves them to its own.
    """
    lengths = [min(len(h), max_len) for h in items]
    width = max(lengths, default=0) or 1

    def padded(seqs: Sequence[Sequence[int]]) -> torch.Tensor:
        # padded Python rows, then one tensor: a few small tensor copies per user cost 4x as much
        # (250 users: 4.0-4.5 vs 17.6 ms, /tmp timing, one thread; no measurable change in the worker's
        # throughput, benchmarks/results/stream_latency_ab.json)
        rows = [[*s[len(s) - n:], *[0] * (width - n)] for s, n in zip(seqs, lengths)]
        if not rows:
            return torch.zeros((0, width), dtype=torch.long, device="cpu")
        return torch.tensor(rows, dtype=torch.long, device="cpu")

    return padded(items), padded(types), torch.tensor(lengths, dtype=torch.long, device="cpu")


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
