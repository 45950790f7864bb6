"""Checkpoints: one safetensors file of weights plus a JSON file of everything else.

A checkpoint is a directory holding ``weights.safetensors`` (every scorer's
tensors, keys prefixed ``<scorer name>/``) and ``meta.json`` (format version,
item vocabulary, each scorer's kind and config, blend weights, metrics, the
SHA-256 of the weights file and of the rest of the metadata). Loading checks
both checksums and never unpickles.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors.torch import load_file, save_file

from models.scorers import SCORERS
from models.scorers.base import Scorer
from models.vocab import ItemVocab

FORMAT = "streamreco-checkpoint"
VERSION = 1
WEIGHTS = "weights.safetensors"
META = "meta.json"

T = TypeVar("T")


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
    meta_doc: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "vocab": vocab.to_json(),
        "scorers": parts,
        **dict(extra or {}),
    }
    meta_doc["checksum"] = {"sha256": _sha256(out / WEIGHTS), "meta_sha256": _meta_sha256(meta_doc)}
    (out / META).write_text(json.dumps(meta_doc, indent=1, allow_nan=False), encoding="utf-8")
    return out


def _meta_sha256(meta: Mapping[str, Any]) -> str:
    """SHA-256 of the metadata but its checksum, in a canonical JSON form (what a reader parses back gives
    the same digest: the vocabulary's order, the scorers' configs and the blend weights are covered)."""
    body = json.loads(json.dumps({k: v for k, v in meta.items() if k != "checksum"}, allow_nan=False))  # as read
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def read_meta(path: str | Path) -> dict[str, Any]:
    """The JSON metadata of a checkpoint (no weights read); ``CheckpointError`` if missing or unreadable."""
    meta_path = Path(path) / META
    if not meta_path.is_file():
        raise CheckpointError(f"no {META} in {path}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{meta_path}: not readable JSON (truncated or corrupt?): {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise CheckpointError(f"{path}: not a {FORMAT} v{VERSION} checkpoint")
    return meta


def verify_checkpoint(path: str | Path) -> dict[str, Any]:
    """The metadata of a checkpoint whose weights match their checksum (nothing is loaded);
    ``CheckpointError`` otherwise."""
    meta = read_meta(path)
    weights = Path(path) / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"no {WEIGHTS} in {path}")
    if _sha256(weights) != _field(meta, path, "checksum", "sha256"):
        raise CheckpointError(f"{weights}: checksum mismatch")
    expected = meta["checksum"].get("meta_sha256")  # absent from checkpoints saved before 2026-12-07
    if expected is not None and _meta_sha256(meta) != expected:
        raise CheckpointError(f"{Path(path) / META}: checksum mismatch (edited or damaged metadata)")
    return meta


def _field(meta: Mapping[str, Any], path: str | Path, *keys: str) -> Any:
    """``meta[keys[0]][keys[1]]...``; ``CheckpointError`` naming the field when it is missing."""
    value: Any = meta
    for n, key in enumerate(keys):
        if not isinstance(value, Mapping) or key not in value:
            raise CheckpointError(f"{Path(path) / META}: no {'.'.join(map(str, keys[: n + 1]))} (incomplete metadata)")
        value = value[key]
    return value


def load_checkpoint(path: str | Path) -> tuple[ItemVocab, dict[str, Scorer], dict[str, Any]]:
    """The vocabulary, scorers and metadata saved by ``save_checkpoint``; checks the checksum.

    ``CheckpointError`` for a missing, corrupt or incomplete checkpoint.
    """
    meta = verify_checkpoint(path)
    tensors = load_file(str(Path(path) / WEIGHTS))
    vocab = _restore(path, "vocab", ItemVocab.from_json, _field(meta, path, "vocab"))
    scorers: dict[str, Scorer] = {}
    for name in _field(meta, path, "scorers"):
        kind, part_meta = _field(meta, path, "scorers", name, "kind"), _field(meta, path, "scorers", name, "meta")
        cls = SCORERS.get(kind) if isinstance(kind, str) else None
        if cls is None:
            raise CheckpointError(f"unknown scorer kind {kind!r}")
        prefix = f"{name}/"
        own = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        scorers[name] = _restore(path, f"scorer {name!r}", cls.from_state, vocab, own, part_meta)
    return vocab, scorers, meta


def _restore(path: str | Path, what: str, build: Callable[..., T], *args: Any) -> T:
    """``build(*args)``, its errors from metadata it cannot use turned into ``CheckpointError``."""
    try:
        return build(*args)
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{path}: {what} cannot be restored from its metadata: {exc!r}") from exc
