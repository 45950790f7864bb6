"""Put a trained ensemble on its serving device, in its serving dtype, optionally compiled.

The sequence model is the only heavy part: it moves to ``cuda`` when one exists
(``device="auto"``), else stays on the CPU; ``bf16`` converts its weights and
item table once (autocast would re-cast the item table on every call);
``compile`` wraps its scoring in ``torch.compile``. Its scores come back to the
CPU as float32, where the light scorers and the blend run. Nothing needs a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from models.device import resolve_device
from models.ensemble import Ensemble
from models.scorers.sequence import SequenceScorer

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class ServingConfig:
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "fp32"  # fp32 | bf16
    compile: bool = False


def prepare_for_serving(ensemble: Ensemble, config: ServingConfig = ServingConfig()) -> torch.device:
    """Move, cast and (optionally) compile the ensemble's sequence models in place."""
    if config.dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {config.dtype!r}")
    device = resolve_device(config.device)
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    for scorer in ensemble.scorers.values():
        if isinstance(scorer, SequenceScorer):
            _prepare(scorer, device, DTYPES[config.dtype], config.compile)
    return device


def _prepare(scorer: SequenceScorer, device: torch.device, dtype: torch.dtype, compile_: bool) -> None:
    model = scorer.model.to(device=device, dtype=dtype).eval()
    eager = type(model).score_all.__get__(model)
    inner = torch.compile(eager, dynamic=True) if compile_ else eager

    def score_all(items: torch.Tensor, types: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        out = inner(items.to(device), types.to(device), lengths.to(device))  # (batch, n_rows)
        return out.float().cpu()

    model.score_all = score_all  # type: ignore[method-assign]
    if compile_:  # the serving blend (models.linear_blend) calls user_vectors with device tensors
        model.user_vectors = torch.compile(type(model).user_vectors.__get__(model), dynamic=True)  # type: ignore[method-assign]
