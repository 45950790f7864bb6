"""Frozen configs of the sequence model and of its training run (saved in checkpoints)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SeqConfig:
    """Shape of the transformer; rebuilds the model from a checkpoint."""

    hidden: int = 64
    layers: int = 2
    heads: int = 2
    max_len: int = 50  # items of history the model reads (the latest ones)
    dropout: float = 0.3
    n_event_types: int = 5  # padding + models.data.EVENT_TYPES


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings: full-softmax cross-entropy over non-padding positions."""

    epochs: int = 200
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.0
    patience: int = 5  # validations without improvement before stopping
    seed: int = 0
    bf16: bool | None = None  # bf16 autocast (weights stay fp32); None: where the device has native bf16
    max_seconds: float = 1200.0  # stop (keeping the best state) after this long
    threads: int = 2
    device: str = "auto"  # auto (the GPU when one exists, else the CPU) | cpu | cuda | cuda:N
