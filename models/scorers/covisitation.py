"""Item-to-item co-visitation: items that follow (and, weaker, precede) the user's recent items."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from models.history import History, split_history
from models.item_stats import EVENT_WEIGHTS, add_neighbor, covisit_pairs, log_weight
from models.scorers.base import Scorer
from models.vocab import ItemVocab


@dataclass(frozen=True)
class CovisitationConfig:
    half_life_s: float = 7 * 86_400.0
    window: int = 3  # previous distinct items paired with each event (weight 1/distance)
    backward_weight: float = 0.5  # weight of the pair read backwards (item -> earlier item)
    max_neighbors: int = 100
    recent_items: int = 5  # the user's latest distinct items that seed the scores


class CovisitationScorer(Scorer):
    """Sum over the user's latest distinct items (weight 1/recency rank) of each neighbour's
    forward-decayed co-visitation weight relative to that item's strongest neighbour."""

    kind = "covisitation"
    blend = "log_relative"

    def __init__(self, vocab: ItemVocab, config: CovisitationConfig = CovisitationConfig()) -> None:
        super().__init__(vocab)
        self.config = config
        self._neighbors: dict[str, dict[str, float]] | None = {}  # None: not built from ``_loaded`` yet
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._loaded: dict[str, torch.Tensor] | None = None  # ``state()`` as loaded or last built, until an observe

    @property
    def neighbors(self) -> dict[str, dict[str, float]]:
        """item -> {neighbour: log2 weight}.

        Built from the loaded tensors on first use: a serving worker reads
        only ``state()``, and building ~400k pairs of dicts on every model swap
        made loading a checkpoint ~2x slower (``benchmarks/model_handling.py``).
        """
        if self._neighbors is None:
            assert self._loaded is not None
            ids = [self.vocab.item(r) for r in range(len(self.vocab))]
            built: dict[str, dict[str, float]] = {}
            for s, d, w in zip(self._loaded["src"].tolist(), self._loaded["dst"].tolist(),
                               self._loaded["log_weight"].tolist()):
                nbrs = built.get(ids[s])
                if nbrs is None:
                    nbrs = built[ids[s]] = {}
                nbrs[ids[d]] = w
            self._neighbors = built
        return self._neighbors

    def __deepcopy__(self, memo: dict[int, Any]) -> CovisitationScorer:
        """A copy that learns on independently (the trainer's candidates), without deep-copying every
        float: the inner dicts hold only strings and floats, the cached and loaded tensors are never
        changed in place. ~9x faster than the generic deep copy (``benchmarks/model_handling.py``)."""
        clone = copy.copy(self)
        memo[id(self)] = clone
        clone.vocab = copy.deepcopy(self.vocab, memo)  # the ensemble's scorers share one vocabulary
        if self._neighbors is not None:
            clone._neighbors = {item: dict(nbrs) for item, nbrs in self._neighbors.items()}
        clone._cache = dict(self._cache)
        clone._loaded = None if self._loaded is None else dict(self._loaded)
        return clone

    def observe(self, history: History, item: str, event_type: str, ts: float) -> None:
        self.vocab.add(item)
        neighbors = self.neighbors  # built before the loaded tensors are dropped
        self._loaded = None
        previous, _ = split_history(history)
        weight = EVENT_WEIGHTS.get(event_type, 1.0)
        cfg = self.config
        for prev, closeness in covisit_pairs(previous, item, cfg.window):  # as the stream's item statistics pair
            self.vocab.add(prev)  # a history may name items this scorer never saw
            forward = log_weight(ts, weight * closeness, cfg.half_life_s)
            add_neighbor(neighbors.setdefault(prev, {}), item, forward, cfg.max_neighbors)
            self._cache.pop(self.vocab.row(prev), None)
            if cfg.backward_weight > 0:
                backward = log_weight(ts, weight * closeness * cfg.backward_weight, cfg.half_life_s)
                add_neighbor(neighbors.setdefault(item, {}), prev, backward, cfg.max_neighbors)
                self._cache.pop(self.vocab.row(item), None)

    def _neighbors_of(self, row: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows and relative weights (strongest = 1) of one item's top neighbours, cached."""
        hit = self._cache.get(row)
        if hit is None:
            nbrs = self.neighbors.get(self.vocab.item(row), {})
            top = sorted(nbrs.items(), key=lambda kv: kv[1], reverse=True)[: self.config.max_neighbors]
            rows = torch.as_tensor([self.vocab.row(i) for i, _ in top], dtype=torch.long)
            logw = torch.as_tensor([w for _, w in top], dtype=torch.float64)
            weights = torch.exp2(logw - logw.max()).float() if len(top) else torch.zeros(0)
            hit = self._cache[row] = (rows, weights)
        return hit

    def score_rows(self, items: Sequence[Sequence[int]], types: Sequence[Sequence[int]]) -> torch.Tensor:
        scores = torch.zeros((len(items), len(self.vocab)), dtype=torch.float32)
        for b, history in enumerate(items):
            seen: list[int] = []
            for row in reversed(history):
                if row in seen:
                    continue
                seen.append(row)
                rows, weights = self._neighbors_of(row)
                scores[b].index_add_(0, rows, weights / len(seen))
                if len(seen) == self.config.recent_items:
                    break
        scores[:, 0] = float("-inf")
        return scores

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Every (item, neighbour, log2 weight) as tensors of vocabulary rows.

        Right after ``from_state`` these are the loaded tensors (the serving
        blend reads them on every model swap; rebuilding them walks ~1M pairs),
        and once built they are kept until the next ``observe``.
        """
        if self._loaded is not None:
            return dict(self._loaded), {"config": asdict(self.config)}
        src: list[int] = []
        dst: list[int] = []
        logw: list[float] = []
        for item, nbrs in self.neighbors.items():  # bulk list operations: ~1M pairs on every promotion
            src.extend([self.vocab.row(item)] * len(nbrs))
            dst.extend(self.vocab.rows(nbrs))
            logw.extend(nbrs.values())
        self._loaded = {
            "src": torch.from_numpy(np.array(src, dtype=np.int64)),
            "dst": torch.from_numpy(np.array(dst, dtype=np.int64)),
            "log_weight": torch.from_numpy(np.array(logw, dtype=np.float64)),
        }  # kept until the next observe: a promoted version is saved, then its serving form is built
        return dict(self._loaded), {"config": asdict(self.config)}

    @classmethod
    def from_state(cls, vocab: ItemVocab, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> CovisitationScorer:
        scorer = cls(vocab, CovisitationConfig(**meta["config"]))
        scorer._loaded = {k: tensors[k] for k in ("src", "dst", "log_weight")}
        scorer._neighbors = None  # built on first use (see ``neighbors``)
        return scorer
