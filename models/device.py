"""Where the sequence model computes: the GPU when one exists, else the CPU; nothing needs a GPU."""

from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    """``auto`` -> the first CUDA device when one is usable, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r} requested but this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def native_bf16(device: torch.device = torch.device("cpu")) -> bool:
    """Whether ``device`` computes bf16 natively: a CUDA GPU that supports it, or a CPU with AMX or AVX512-BF16.

    Elsewhere bf16 autocast is emulated and slower than fp32: about 7x for the
    full-softmax step on a 2-core AMD EPYC with AVX2 only (measured 2026-12-01).
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # private torch.cpu helpers: may go away
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)
