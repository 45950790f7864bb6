"""Re-fitting the blend weights online, on fresh samples ranked before anything learnt from them.

Pre-training fits the blend weights once (``Ensemble.fit_weights``). Online,
the scorers change: co-visitation counts grow, the transformer is
fine-tuned, so the best blend moves too. A weight fit must use samples the
scorers have not learnt from (stacking), and once a sample is learnt its
scores are spoilt (co-visitation has counted its very pair). So each fresh
sample's scores are kept when it arrives, before learning: only for a
compact candidate set (the target plus each scorer's top ``per_scorer``
items, history excluded), which stands in for the full ranking. Every
``every`` samples, a coordinate search on NDCG@10 over the latest ``window``
of them, starting from the current weights, moves the weights; a move is
kept only if it gains at least ``min_gain`` (relative), so noise does not
shake the blend.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from models.ensemble import Ensemble, coordinate_search
from models.history import encode
from models.online.samples import TrainingSample


@dataclass(frozen=True)
class BlendRefitConfig:
    """When and on what the blend weights are re-fitted (``every`` = 0: never)."""

    every: int = 1_024  # fresh samples kept between two fits
    window: int = 4_096  # latest fresh samples a fit uses
    per_batch: int = 64  # samples kept of every ``keep_of`` offered (cost): the latest of each batch
    keep_of: int = 256  # ...counted over batches, so a stream of small batches keeps the same share
    per_scorer: int = 100  # each scorer's top items that join the candidate set
    min_gain: float = 0.01  # relative NDCG@10 gain on the window a move needs
    rounds: int = 2


def candidate_features(ensemble: Ensemble, samples: Sequence[TrainingSample], per_scorer: int
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised scores of each sample's candidates, ``(n, 1 + scorers * per_scorer, scorers)`` with the
    target in column 0, and a ``(n, columns)`` mask of real candidates (not a repeat, the target or history)."""
    vocab = ensemble.vocab
    encoded = [encode(vocab, s.history) for s in samples]
    items = [r for r, _ in encoded]
    parts = list(ensemble.parts(items, [t for _, t in encoded]).values())  # each (n, n_rows)
    n, n_rows = len(samples), parts[0].shape[1]
    targets = torch.as_tensor([vocab.row(s.target) for s in samples], dtype=torch.long)
    blocked = torch.zeros((n, n_rows), dtype=torch.bool)
    blocked[:, 0] = True
    for b, rows in enumerate(items):
        if rows:
            blocked[b, torch.as_tensor(rows)] = True
    blocked[torch.arange(n), targets] = True
    k = min(per_scorer, n_rows)
    tops = [z.masked_fill(blocked, float("-inf")).topk(k, dim=1).indices for z in parts]
    cand = torch.cat(tops, dim=1)  # (n, scorers * k), with repeats
    ordered, _ = cand.sort(dim=1)
    valid = torch.ones_like(ordered, dtype=torch.bool)
    valid[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    valid &= ~blocked.gather(1, ordered)
    rows = torch.cat([targets[:, None], ordered], dim=1)
    x = torch.stack([z.gather(1, rows) for z in parts], dim=-1)  # (n, columns, scorers): no full-catalogue stack
    mask = torch.cat([torch.zeros(n, 1, dtype=torch.bool), valid], dim=1)
    return torch.nan_to_num(x, nan=0.0, neginf=-1e9), mask


def candidate_ndcg10(x: torch.Tensor, mask: torch.Tensor, w: torch.Tensor) -> float:
    """Mean NDCG@10 of blend ``w`` when each sample's target (column 0) is ranked among its candidates
    (a tie counts against the target, so a blend that scores everything alike gains nothing)."""
    scores = x @ w  # (n, columns)
    rank = ((scores >= scores[:, :1]) & mask).sum(1).double()
    return float(torch.where(rank < 10, 1.0 / torch.log2(rank + 2.0), 0.0).mean())


class BlendRefitter:
    """Keeps fresh samples' candidate scores and re-fits an ensemble's blend weights every so often."""

    def __init__(self, config: BlendRefitConfig) -> None:
        self.config = config
        self.kept: deque[tuple[torch.Tensor, torch.Tensor]] = deque()
        self.since = 0
        self.n_kept = 0  # samples in ``kept``
        self.offered = 0  # samples ``observe`` was given
        self.fits: deque[dict[str, object]] = deque(maxlen=1_000)  # the latest (a trainer runs for months)

    def observe(self, ensemble: Ensemble, samples: Sequence[TrainingSample]) -> None:
        """Keep the scores of ``samples`` (their share: ``per_batch`` of every ``keep_of``): call before
        anything learns them."""
        self.keep(self.features(ensemble, samples))

    def features(self, ensemble: Ensemble, samples: Sequence[TrainingSample]
                 ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The scores ``observe`` would keep of ``samples`` (their share; None if none), to ``keep`` later:
        scored before anything learns them, kept once a fit may use them (the trainer's hold-out must not
        be fitted on, as its candidates are judged on it)."""
        usable = self.usable(ensemble, samples, self._quota(len(samples)))
        if not usable:
            return None
        with torch.no_grad():
            return candidate_features(ensemble, usable, self.config.per_scorer)

    def keep(self, features: tuple[torch.Tensor, torch.Tensor] | None) -> None:
        """Add ``features`` to the window the next fits use (the oldest leave it)."""
        if features is None:
            return
        self.kept.append(features)
        self.since += len(features[0])
        self.n_kept += len(features[0])
        while self.n_kept - len(self.kept[0][0]) >= self.config.window:
            self.n_kept -= len(self.kept.popleft()[0])

    def _quota(self, n: int) -> int:
        """How many of the next ``n`` offered samples to keep: ``per_batch`` of every ``keep_of``, counted
        over calls (one batch of 256 keeps 64, and so do four of 64). The trainer's batches are what the
        consumer happens to return, often far fewer than 256: kept per batch, most samples were scored."""
        cfg = self.config
        before = self.offered * cfg.per_batch // cfg.keep_of
        self.offered += n
        return self.offered * cfg.per_batch // cfg.keep_of - before

    @staticmethod
    def usable(ensemble: Ensemble, samples: Sequence[TrainingSample], quota: int) -> list[TrainingSample]:
        """The latest ``quota`` samples of a batch that can be scored (target known, not in the history)."""
        fit = [s for s in samples if ensemble.vocab.row(s.target) and s.target not in s.items]
        return fit[len(fit) - min(quota, len(fit)):]

    def maybe_refit(self, ensemble: Ensemble) -> dict[str, float] | None:
        """Re-fit ``ensemble.weights`` if ``every`` fresh samples have come; the new weights, or None."""
        if not self.config.every or self.since < self.config.every or not self.kept:
            return None
        self.since = 0
        names = list(ensemble.scorers)
        width = max(x.shape[1] for x, _ in self.kept)  # narrower only while the catalogue is under per_scorer
        x = torch.cat([torch.nn.functional.pad(c, (0, 0, 0, width - c.shape[1])) for c, _ in self.kept])
        mask = torch.cat([torch.nn.functional.pad(m, (0, width - m.shape[1])) for _, m in self.kept])
        start = torch.tensor([ensemble.weights[n] for n in names], dtype=torch.float32)
        before = candidate_ndcg10(x, mask, start)
        best, after = coordinate_search(lambda w: candidate_ndcg10(x, mask, w), start, self.config.rounds)
        moved = after > before * (1.0 + self.config.min_gain) and bool(best.sum() > 0)
        self.fits.append({"samples": len(x), "before": before, "after": after, "moved": moved})
        if not moved:
            return None
        best = best / best.sum()
        ensemble.weights = {n: float(v) for n, v in zip(names, best)}
        return ensemble.weights
