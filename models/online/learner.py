"""The online learner: fine-tunes a working copy of the ensemble on streamed training samples.

Per batch of samples (``learn``): new items join the vocabulary (every table
grows to match), co-visitation and popularity ``observe`` each event, and the
sequence model takes a few Adam steps at a small learning rate on the new
samples mixed with samples drawn from a replay buffer of past ones (a
reservoir over everything seen, against forgetting). With
``config.blend.every`` set, the blend weights are re-fitted now and then on
fresh samples, scored before they were learnt (``models.online.blend``). The loss is the
cross-entropy of the target over all items given the history (the state after
the history's last item), weighted by each sample's weight.

Promotion (done by the trainer process): before learning the newest samples
(``config.eval_slice`` of them), ``judge`` the working copy against the serving
ensemble on them; serve ``candidate()`` only if ``should_promote`` says it is
not worse. For example::

    serving, _ = Ensemble.load(path)
    learner = OnlineLearner(serving, OnlineConfig())
    pending: list[TrainingSample] = []
    for batch in batches_of_samples:
        pending += batch
        if len(pending) >= learner.config.eval_slice:
            if learner.judge(pending, serving)["promote"]:
                serving = learner.candidate()  # exactly what was judged
                serving.save(new_path)  # the workers swap it in
            learner.learn(pending)
            pending = []
"""

from __future__ import annotations

import copy
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from models.device import resolve_device
from models.ensemble import Ensemble
from models.evaluation.prequential import is_scored, metrics_at, rank_samples
from models.history import encode
from models.online.blend import BlendRefitConfig, BlendRefitter
from models.online.samples import TrainingSample
from models.scorers.sequence import SequenceScorer
from models.sequence.batching import pad_right

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OnlineConfig:
    """How the learner fine-tunes, and how candidates are judged."""

    lr: float = 5e-4  # a quarter of the pre-training rate
    steps_per_batch: int = 1  # Adam steps per ``batch_size`` new samples
    batch_size: int = 256  # new samples per step (a bigger ``learn`` call takes several)
    replay_size: int = 50_000  # samples kept in the reservoir
    replay_fraction: float = 0.5  # share of each step's samples drawn from the reservoir
    eval_slice: int = 1024  # newest samples held out to compare candidate and serving
    promote_tolerance: float = 0.0  # relative NDCG@10 drop still promoted (0.02 = 2 %)
    clip_norm: float = 1.0
    device: str = "auto"  # where the working copy's sequence model learns: auto (the GPU when one exists) | cpu | cuda
    train_sequence: bool = True  # False: only co-visitation/popularity learn (stats only)
    blend: BlendRefitConfig = BlendRefitConfig()  # re-fitting the blend weights online (every=0: never)
    observe_stats: bool = True  # False: the counting scorers stay as they are
    seed: int = 0


def should_promote(
    candidate: dict[str, float], serving: dict[str, float], tolerance: float = 0.0, *, metric: str = "ndcg@10"
) -> bool:
    """Promote when the candidate was evaluated on something and is not worse than serving
    by more than ``tolerance`` (relative: 0.02 allows a 2 % lower ``metric``)."""
    if candidate.get("n", 0) <= 0:
        return False
    return candidate[metric] >= serving[metric] * (1.0 - tolerance)


class OnlineLearner:
    """Owns a working copy of an ensemble and updates it from training samples."""

    def __init__(self, ensemble: Ensemble, config: OnlineConfig = OnlineConfig()) -> None:
        self.ensemble = copy.deepcopy(ensemble)
        self.config = config
        self.seen = 0  # samples learnt from
        self._rng = random.Random(config.seed)
        self._replay: list[TrainingSample] = []
        self._replay_seen = 0
        seq = [s for s in self.ensemble.scorers.values() if isinstance(s, SequenceScorer)]
        self._sequence: SequenceScorer | None = seq[0] if seq else None
        if self._sequence is not None:
            self._sequence.model.to(resolve_device(config.device))  # its candidates are saved from there
        self.blend = BlendRefitter(config.blend)
        self._optimizer: torch.optim.Adam | None = None
        self._item_table: torch.Tensor | None = None
        self.skipped_steps = 0  # steps refused for a non-finite loss or gradient

    # ---- public API -------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        """Where the working copy's sequence model learns (the CPU when the ensemble has none)."""
        return self._sequence.model.device if self._sequence is not None else torch.device("cpu")

    def weights_finite(self) -> bool:
        """Whether every weight of the working copy's sequence model is finite (a candidate with a NaN
        weight scores NaN; steps with a non-finite loss are skipped, so this is a last guard)."""
        if self._sequence is None:
            return True
        return all(bool(torch.isfinite(p).all()) for p in self._sequence.model.parameters())

    @property
    def replay_count(self) -> int:
        """Samples held in the replay reservoir (at most ``config.replay_size``)."""
        return len(self._replay)

    def learn(self, samples: Sequence[TrainingSample], *,
              unobserved: Sequence[TrainingSample] | None = None) -> dict[str, Any]:
        """Learn from a batch of samples (time order); returns counts, mean loss and seconds.

        ``unobserved``: those whose candidate scores the blend re-fit has not
        kept yet (``blend.keep``, by a caller that scored them already); all by default.
        """
        start = time.perf_counter()
        vocab = self.ensemble.vocab
        before = vocab.n_items
        if self.config.blend.every:
            self.blend.observe(self.ensemble, samples if unobserved is None else unobserved)  # before learning
        self._add_items(samples)
        if self.config.observe_stats:
            for s in samples:
                history = s.history
                for scorer in self.ensemble.scorers.values():
                    if not isinstance(scorer, SequenceScorer):
                        scorer.observe(history, s.target, s.event_type, s.ts)
        losses: list[float] = []
        if self.config.train_sequence and self._sequence is not None:
            losses = self._fit(samples)
        self.remember(samples)
        self.seen += len(samples)
        weights = self.blend.maybe_refit(self.ensemble)
        return {
            "samples": len(samples),
            "blend_weights": weights,
            "new_items": vocab.n_items - before,
            "steps": len(losses),
            "loss": sum(losses) / len(losses) if losses else None,
            "seconds": time.perf_counter() - start,
        }

    def remember(self, samples: Sequence[TrainingSample]) -> None:
        """Add samples to the replay reservoir only (e.g. the pre-training log, to seed it).

        Samples with an empty history are skipped: the sequence model has nothing to read.
        """
        for s in samples:
            if not s.items:
                continue
            self._replay_seen += 1
            if len(self._replay) < self.config.replay_size:
                self._replay.append(s)
            else:
                j = self._rng.randrange(self._replay_seen)
                if j < self.config.replay_size:
                    self._replay[j] = s

    def keep_replay_of(self, other: OnlineLearner) -> None:
        """Take over ``other``'s replay reservoir (a learner restarted from older weights keeps the past).

        Its samples may name items these weights never saw (they came after
        them): those join the vocabulary when a step draws the sample, as a
        fresh sample's do in ``learn``.
        """
        self._replay, self._replay_seen = list(other._replay), other._replay_seen

    @staticmethod
    def evaluate(ensemble: Ensemble, samples: Sequence[TrainingSample], k: int = 10) -> dict[str, float]:
        """NDCG@k, HR@k and count over the samples whose target is not already in their history."""
        scored = [s for s in samples if is_scored(s)]
        return metrics_at(rank_samples(ensemble, scored), k)

    def judge(self, samples: Sequence[TrainingSample], serving: Ensemble) -> dict[str, Any]:
        """Compare the working copy with ``serving`` on ``samples`` neither has learnt from yet.

        Returns both metrics and whether to promote (``should_promote`` with the
        configured tolerance). On a promotion publish ``candidate()``; then
        ``learn`` the samples.
        """
        working = self.evaluate(self.ensemble, samples)
        current = self.evaluate(serving, samples)
        return {
            "candidate": working,
            "serving": current,
            "promote": should_promote(working, current, self.config.promote_tolerance),
        }

    def candidate(self) -> Ensemble:
        """A deep copy of the working ensemble, safe to serve or save while learning goes on."""
        if self._sequence is not None:
            self._sequence.model.eval()
        return copy.deepcopy(self.ensemble)

    def _add_items(self, samples: Sequence[TrainingSample]) -> None:
        """Give every item the samples name (history and target) a row; the tables grow to match."""
        vocab = self.ensemble.vocab
        for s in samples:
            vocab.add_all(s.items)
            vocab.add(s.target)

    # ---- the sequence model's steps ------------------------------------------------------

    def _fit(self, samples: Sequence[TrainingSample]) -> list[float]:
        assert self._sequence is not None
        cfg = self.config
        fresh = [s for s in samples if s.items]  # an empty history gives the model nothing to read
        losses = []
        for start in range(0, len(fresh), cfg.batch_size):
            chunk = fresh[start : start + cfg.batch_size]
            n_replay = round(len(chunk) * cfg.replay_fraction / max(1e-9, 1.0 - cfg.replay_fraction))
            for _ in range(cfg.steps_per_batch):
                replay = self._draw(n_replay)
                losses.append(self._step(chunk + replay))
        return losses

    def _draw(self, n: int) -> list[TrainingSample]:
        """``n`` replay samples; their items join the vocabulary (they may predate the weights learning
        restarted from, ``keep_replay_of``; fresh samples' items joined in ``learn``)."""
        if not self._replay or n <= 0:
            return []
        drawn = self._rng.sample(self._replay, min(n, len(self._replay)))
        self._add_items(drawn)
        return drawn

    def _step(self, batch: Sequence[TrainingSample]) -> float:
        """One weighted cross-entropy step of the sequence model on ``batch``."""
        assert self._sequence is not None
        scorer, vocab = self._sequence, self.ensemble.vocab
        model = scorer.model
        model.ensure_rows(vocab.capacity)
        optimizer = self._optimizer_for(model)
        encoded = [encode(vocab, s.history) for s in batch]
        device = model.device
        items, types, lengths = (t.to(device) for t in pad_right(
            [r for r, _ in encoded], [t for _, t in encoded], scorer.config.max_len))
        targets = torch.as_tensor([vocab.row(s.target) for s in batch], dtype=torch.long, device=device)
        weights = torch.as_tensor([s.weight for s in batch], dtype=torch.float32, device=device)
        model.train()
        hidden = model.hidden_states(items, types)  # (batch, seq_len, hidden)
        last = hidden[torch.arange(len(batch), device=device), (lengths - 1).clamp(min=0)]  # (batch, hidden)
        logits = last @ model.items.weight[1 : len(vocab)].T  # (batch, n_items)
        ce = torch.nn.functional.cross_entropy(logits.float(), targets - 1, reduction="none")  # (batch,)
        loss = (weights * ce).sum() / weights.sum().clamp(min=1e-12)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), self.config.clip_norm)
        if not bool(torch.isfinite(loss) & torch.isfinite(norm)):  # NaN/inf would make every weight NaN
            optimizer.zero_grad(set_to_none=True)
            self.skipped_steps += 1
            log.warning("fine-tuning step skipped: non-finite loss %s or gradient norm %s (%d skipped so far)",
                        float(loss.detach()), float(norm), self.skipped_steps)
        else:
            optimizer.step()
        model.eval()
        return float(loss.detach())

    def _optimizer_for(self, model: torch.nn.Module) -> torch.optim.Adam:
        """The Adam optimizer, rebuilt (moments kept, new item rows zero) when the item table grew."""
        table = model.items.weight  # type: ignore[union-attr]
        if self._optimizer is not None and table is self._item_table:
            return self._optimizer
        old, old_table = self._optimizer, self._item_table
        self._optimizer = torch.optim.Adam(model.parameters(), lr=self.config.lr)
        self._item_table = table
        if old is not None:
            for p in model.parameters():
                if p in old.state:
                    self._optimizer.state[p] = old.state[p]
            state = old.state.get(old_table) if old_table is not None else None
            if state:
                grown = dict(state)
                for key in ("exp_avg", "exp_avg_sq"):
                    moment = state[key].to(table)  # on the parameter's device, in its dtype (as Adam keeps it)
                    pad = table.new_zeros((table.shape[0] - moment.shape[0], *moment.shape[1:]))
                    grown[key] = torch.cat([moment, pad])
                self._optimizer.state[table] = grown
        return self._optimizer
