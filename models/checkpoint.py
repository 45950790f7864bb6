"""Checkpoints: one safetensors file of weights plus a JSON file of everything else.

A checkpoint is a directory holding ``weights.safetensors`` (every scorer's
tensors, keys prefixed ``<scorer name>/``) and ``meta.json`` (format version,
item vocabulary, each scorer's kind and config, blend weights, metrics and the
SHA-256 of the weights file). Loading checks the checksum and never unpickles.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from models.scorers import SCORERS
from models.scorers.base import Scorer
from models.vocab import ItemVocab

FORMAT = "streamreco-checkpoint"
VERSION = 1
WEIGHTS = "weights.safetensors"
META = "meta.json"


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupted or of an unknown format."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_checkpoint(
    path: str | Path,
    vocab: ItemVocab,
    scorers: Mapping[str, Scorer],
    *,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``scorers`` (sharing ``vocab``) and JSON-able ``extra`` (blend weights, metrics) to ``path``."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    parts: dict[str, Any] = {}
    for name, scorer in scorers.items():
        if "/" in name:
            raise ValueError(f"scorer name {name!r} must not contain '/'")
        state, meta = scorer.state()
        tensors.update({f"{name}/{k}": v.contiguous() for k, v in state.items()})
        parts[name] = {"kind": scorer.kind, "meta": meta}
    save_file(tensors, str(out / WEIGHTS))
    meta_doc = {
        "format": FORMAT,
        "version": VERSION,
        "vocab": vocab.to_json(),
        "scorers": parts,
        **dict(extra or {}),
        "checksum": {"sha256": _sha256(out / WEIGHTS)},
    }
    (out / META).write_text(json.dumps(meta_doc, indent=1, allow_nan=False), encoding="utf-8")
    return out


def read_meta(path: str | Path) -> dict[str, Any]:
    """The JSON metadata of a checkpoint (no weights read)."""
    meta_path = Path(path) / META
    if not meta_path.is_file():
        raise CheckpointError(f"no {META} in {path}")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise CheckpointError(f"{path}: not a {FORMAT} v{VERSION} checkpoint")
    return meta


def load_checkpoint(path: str | Path) -> tuple[ItemVocab, dict[str, Scorer], dict[str, Any]]:
    """The vocabulary, scorers and metadata saved by ``save_checkpoint``; checks the checksum."""
    meta = read_meta(path)
    weights = Path(path) / WEIGHTS
    if _sha256(weights) != meta["checksum"]["sha256"]:
        raise CheckpointError(f"{weights}: checksum mismatch")
    tensors = load_file(str(weights))
    vocab = ItemVocab.from_json(meta["vocab"])
    scorers: dict[str, Scorer] = {}
    for name, part in meta["scorers"].items():
        cls = SCORERS.get(part["kind"])
        if cls is None:
            raise CheckpointError(f"unknown scorer kind {part['kind']!r}")
        prefix = f"{name}/"
        own = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        scorers[name] = cls.from_state(vocab, own, part["meta"])
    return vocab, scorers, meta
