"""Time-decayed popularity: every event adds its forward-decayed weight to its item."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from models.history import History
from models.item_stats import EVENT_WEIGHTS, NEG_INF, log2_add, log_weight
from models.scorers.base import Scorer
from models.vocab import ItemVocab


@dataclass(frozen=True)
class PopularityConfig:
    half_life_s: float = 7 * 86_400.0


class PopularityScorer(Scorer):
    """Same scores for every user: log(1 + decayed weighted count) at the latest event time."""

    kind = "popularity"
    per_user = False

    def __init__(self, vocab: ItemVocab, config: PopularityConfig = PopularityConfig()) -> None:
        super().__init__(vocab)
        self.config = config
        self.log_sums = torch.full((vocab.capacity,), NEG_INF, dtype=torch.float64)  # log2 forward-decay sums
        self.last_ts = NEG_INF

    def observe(self, history: History, item: str, event_type: str, ts: float) -> None:
        row = self.vocab.add(item)
        self._ensure_rows()
        w = log_weight(ts, EVENT_WEIGHTS.get(event_type, 1.0), self.config.half_life_s)
        self.log_sums[row] = log2_add(float(self.log_sums[row]), w)
        self.last_ts = max(self.last_ts, ts)

    def _ensure_rows(self) -> None:
        extra = self.vocab.capacity - self.log_sums.shape[0]
        if extra > 0:
            self.log_sums = torch.cat([self.log_sums, torch.full((extra,), NEG_INF, dtype=torch.float64)])

    def item_scores(self) -> torch.Tensor:
        """(len(vocab),) log(1 + decayed count); row 0 is ``-inf``."""
        self._ensure_rows()
        sums = self.log_sums[: len(self.vocab)]
        now = self.last_ts / self.config.half_life_s if self.last_ts > NEG_INF else 0.0
        scores = torch.log1p(torch.exp2(sums - now)).float()
        scores[0] = float("-inf")
        return scores

    def score_rows(self, items: Sequence[Sequence[int]], types: Sequence[Sequence[int]]) -> torch.Tensor:
        return self.item_scores()[None, :].expand(len(items), -1).clone()

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        self._ensure_rows()
        return {"log_sums": self.log_sums.clone()}, {
            "config": asdict(self.config),
            "last_ts": None if self.last_ts == NEG_INF else self.last_ts,  # JSON has no -inf
        }

    @classmethod
    def from_state(cls, vocab: ItemVocab, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> PopularityScorer:
        scorer = cls(vocab, PopularityConfig(**meta["config"]))
        scorer.log_sums = tensors["log_sums"].to(torch.float64).clone()
        scorer.last_ts = NEG_INF if meta["last_ts"] is None else float(meta["last_ts"])
        return scorer
