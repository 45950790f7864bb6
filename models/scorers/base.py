"""The interface every scorer shares, so the ensemble and evaluation treat them alike.

A scorer scores every vocabulary row for a batch of encoded histories
(``score_rows``); ``score_batch`` is the string-level entry for callers:
users' histories and candidate item ids in, a (users, candidates) array out.
Candidates the vocabulary does not know score ``-inf`` (ranked last).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from models.history import History, encode
from models.vocab import ItemVocab


class Scorer(ABC):
    """A model that scores items for users from their histories."""

    kind: ClassVar[str]
    blend: ClassVar[str] = "zscore"  # how the ensemble normalises its scores (models.ensemble.NORMALISERS)
    per_user: ClassVar[bool] = True  # False: every user gets the same scores (normalised once, broadcast)

    def __init__(self, vocab: ItemVocab) -> None:
        self.vocab = vocab

    @abstractmethod
    def score_rows(self, items: Sequence[Sequence[int]], types: Sequence[Sequence[int]]) -> torch.Tensor:
        """(batch, len(vocab)) float32 scores of every row; row 0 (padding) is ``-inf``."""

    def observe(self, history: History, item: str, event_type: str, ts: float) -> None:
        """Learn from one event (``history``: the user's events before it). Default: nothing."""

    @abstractmethod
    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Tensors and JSON-able metadata that ``from_state`` rebuilds this scorer from."""

    @classmethod
    @abstractmethod
    def from_state(cls, vocab: ItemVocab, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Scorer:
        """The scorer saved by ``state``."""

    def score_batch(self, histories: Sequence[History], candidates: Sequence[str]) -> np.ndarray:
        """(len(histories), len(candidates)) float32 scores; unknown candidates get ``-inf``."""
        return score_candidates(self.vocab, self.score_rows, histories, candidates)


def score_candidates(
    vocab: ItemVocab,
    score_rows: Callable[[Sequence[Sequence[int]], Sequence[Sequence[int]]], torch.Tensor],
    histories: Sequence[History],
    candidates: Sequence[str],
) -> np.ndarray:
    """String-level scoring through a row-level ``score_rows``: (users, candidates), unknown ``-inf``."""
    if not histories:
        return np.zeros((0, len(candidates)), dtype=np.float32)
    encoded = [encode(vocab, h) for h in histories]
    scores = score_rows([r for r, _ in encoded], [t for _, t in encoded])
    rows = torch.as_tensor(vocab.rows(candidates), dtype=torch.long)
    return scores[:, rows].numpy().astype(np.float32, copy=True)  # row 0 (unknown) is -inf
