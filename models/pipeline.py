"""Train and evaluate every scorer and the ensemble on one event log (shared by the CLI and benchmarks).

Training holds out each user's last two events (validation and test targets
of the leave-one-out protocol): the sequence model early-stops on the
validation targets and the blend weights are fitted on them; test targets are
used only by ``evaluate``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from models.data.events import Event
from models.ensemble import Ensemble
from models.evaluation.metrics import ranking_metrics
from models.evaluation.protocol import LeaveOneOut, ScoreFn, leave_one_out, rank_full, rank_sampled, sample_negatives
from models.history import user_histories
from models.scorers import (
    CovisitationConfig,
    CovisitationScorer,
    PopularityConfig,
    PopularityScorer,
    Scorer,
    SequenceScorer,
    TextConfig,
    TextScorer,
)
from models.sequence.config import SeqConfig, TrainConfig
from models.vocab import ItemVocab

ALL_SCORERS = ("sequence", "covisitation", "popularity", "text")


@dataclass(frozen=True)
class PipelineConfig:
    """Which scorers to train and how; saved in the checkpoint."""

    scorers: tuple[str, ...] = ("sequence", "covisitation", "popularity")
    seq: SeqConfig = SeqConfig()
    train: TrainConfig = TrainConfig()
    popularity: PopularityConfig = PopularityConfig()
    covisitation: CovisitationConfig = CovisitationConfig()
    text: TextConfig = TextConfig()
    val_users: int = 5000  # validation users used for early stopping (all are used for reporting)
    blend_users: int = 3000
    spare_capacity: float = 0.25  # vocabulary rows reserved for items that appear later


@dataclass
class Trained:
    ensemble: Ensemble
    split: LeaveOneOut
    info: dict[str, Any] = field(default_factory=dict)


def replay_counts(scorers: Sequence[Scorer], events: Sequence[Event], holdout: int = 2) -> None:
    """Feed events in time order to ``observe``, skipping each (3+ event) user's last ``holdout``."""
    totals: dict[str, int] = {}
    for ev in events:
        totals[ev.user_id] = totals.get(ev.user_id, 0) + 1
    order = sorted(range(len(events)), key=lambda n: (events[n].ts, n))
    seen: dict[str, list[tuple[str, str]]] = {}
    for n in order:
        ev = events[n]
        history = seen.setdefault(ev.user_id, [])
        total = totals[ev.user_id]
        if total >= 3 and len(history) >= total - holdout:
            continue
        for scorer in scorers:
            scorer.observe(history, ev.item_id, ev.event_type, ev.ts)
        history.append((ev.item_id, ev.event_type))


def train_all(
    events: Sequence[Event],
    config: PipelineConfig = PipelineConfig(),
    *,
    titles: Mapping[str, str] | None = None,
    progress: bool = True,
) -> Trained:
    """Fit every configured scorer on ``events``, then the blend weights on validation targets."""
    start = time.perf_counter()
    torch.set_num_threads(config.train.threads)
    item_ids = list(dict.fromkeys(e.item_id for e in events))
    vocab = ItemVocab(item_ids, capacity=int(len(item_ids) * (1 + config.spare_capacity)) + 1)
    split = leave_one_out(user_histories(events), vocab)
    scorers: dict[str, Scorer] = {}
    info: dict[str, Any] = {"n_events": len(events), "n_items": vocab.n_items, "n_eval_users": len(split.users)}
    counting: list[Scorer] = []
    if "popularity" in config.scorers:
        scorers["popularity"] = PopularityScorer(vocab, config.popularity)
        counting.append(scorers["popularity"])
    if "covisitation" in config.scorers:
        scorers["covisitation"] = CovisitationScorer(vocab, config.covisitation)
        counting.append(scorers["covisitation"])
    replay_counts(counting, events)
    if "text" in config.scorers:
        text = TextScorer(vocab, config.text)
        text.add_titles({i: t for i, t in (titles or {}).items() if i in vocab})
        scorers["text"] = text
    if "sequence" in config.scorers:
        seq = SequenceScorer(vocab, config.seq, seed=config.train.seed)
        v_items, v_types, v_targets = split.valid_inputs()
        rng = np.random.default_rng(config.train.seed)
        sub = rng.choice(len(v_items), size=min(config.val_users, len(v_items)), replace=False)

        def validate(_model: Any) -> float:
            ranks = rank_full(seq.score_rows, [v_items[i] for i in sub], [v_types[i] for i in sub], [v_targets[i] for i in sub])
            return ranking_metrics(ranks)["ndcg@10"]

        result = seq.fit(split.fit_items, split.fit_types, config.train, validate=validate if len(sub) else None, progress=progress)
        info["sequence_train"] = {
            "losses": result.losses,
            "val_ndcg@10": result.val_scores,
            "best_epoch": result.best_epoch,
            "seconds": result.seconds,
        }
        scorers["sequence"] = seq
    ensemble = Ensemble(vocab, scorers)
    if len(scorers) > 1 and split.users:
        ensemble.fit_weights(*split.valid_inputs(), max_users=config.blend_users, seed=config.train.seed)
    info["weights"] = ensemble.weights
    info["train_seconds"] = time.perf_counter() - start
    return Trained(ensemble, split, info)


def score_fns(ensemble: Ensemble) -> dict[str, ScoreFn]:
    """Each scorer alone and the ensemble (if more than one scorer), by name."""
    fns: dict[str, ScoreFn] = {name: s.score_rows for name, s in ensemble.scorers.items()}
    if len(ensemble.scorers) > 1:
        fns["ensemble"] = ensemble.score_rows
    return fns


def evaluate_all(
    ensemble: Ensemble, split: LeaveOneOut, *, target: str = "test", negatives_seed: int = 0
) -> dict[str, dict[str, dict[str, float]]]:
    """``{"full": {name: metrics}, "sampled99": {name: metrics}}`` on test (or validation) targets."""
    items, types, targets = split.test_inputs() if target == "test" else split.valid_inputs()
    seen = [set(h) | {t} for h, t in zip(items, targets)]
    if target == "valid":
        seen = [s | {t} for s, t in zip(seen, split.test_target)]
    negatives = sample_negatives(seen, len(ensemble.vocab), 99, seed=negatives_seed)
    out: dict[str, dict[str, dict[str, float]]] = {"full": {}, "sampled99": {}}
    for name, fn in score_fns(ensemble).items():
        out["full"][name] = ranking_metrics(rank_full(fn, items, types, targets))
        out["sampled99"][name] = ranking_metrics(rank_sampled(fn, items, types, targets, negatives))
    return out
