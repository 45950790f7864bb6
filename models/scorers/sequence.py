"""The transformer sequence model as a scorer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

import torch

from models.scorers.base import Scorer
from models.sequence.batching import pad_right
from models.sequence.config import SeqConfig, TrainConfig
from models.sequence.model import SeqRec
from models.sequence.train import TrainResult, train_sequence_model
from models.vocab import ItemVocab


class SequenceScorer(Scorer):
    """Scores items by the next-item logits of a :class:`SeqRec` over the user's latest items."""

    kind = "sequence"

    def __init__(self, vocab: ItemVocab, config: SeqConfig = SeqConfig(), *, seed: int = 0) -> None:
        super().__init__(vocab)
        self.config = config
        with torch.random.fork_rng():  # seeded initialisation without touching the global generator
            torch.manual_seed(seed)
            self.model = SeqRec(config, vocab.capacity)
        self.model.eval()

    def fit(
        self,
        items: Sequence[Sequence[int]],
        types: Sequence[Sequence[int]],
        train_config: TrainConfig = TrainConfig(),
        *,
        validate: Callable[[SeqRec], float] | None = None,
        progress: bool = True,
    ) -> TrainResult:
        """Pre-train on encoded users' sequences (rows of this scorer's vocabulary)."""
        self.model.ensure_rows(self.vocab.capacity)
        return train_sequence_model(
            self.model, items, types, len(self.vocab), train_config, validate=validate, progress=progress
        )

    def score_rows(self, items: Sequence[Sequence[int]], types: Sequence[Sequence[int]]) -> torch.Tensor:
        """Float32 scores on the CPU (where the light scorers and the blend run), wherever the model is."""
        self.model.ensure_rows(self.vocab.capacity)
        self.model.eval()
        batch_items, batch_types, lengths = pad_right(items, types, self.config.max_len)
        return self.model.score_all(batch_items, batch_types, lengths)[:, : len(self.vocab)].float().cpu()

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}  # saved from any device
        return tensors, {"config": asdict(self.config), "n_rows": self.model.n_rows}

    @classmethod
    def from_state(cls, vocab: ItemVocab, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> SequenceScorer:
        scorer = cls.__new__(cls)
        Scorer.__init__(scorer, vocab)
        scorer.config = SeqConfig(**meta["config"])
        scorer.model = SeqRec(scorer.config, int(meta["n_rows"]))
        scorer.model.load_state_dict(tensors, strict=True)
        scorer.model.eval()
        return scorer
