"""Prequential (test-then-train) evaluation over a time-ordered event stream.

Events are taken in time order, in micro-batches like the stream worker's.
For each batch, first every event is *tested*: the user's top-k from the
serving ensemble, given the user's history just before the event, is checked
against the item the user then touched (HR@k, NDCG@k). Then the whole batch
is handed to ``learn`` (if any) as training samples, so a model is only ever
tested on events it has not learnt from. Users' histories always advance
(they are data, not model state), whether or not anything learns.

Exclusions, as in the leave-one-out protocol and in serving: items in the
user's history (the latest ``max_len`` events, what the worker's user table
keeps) are removed from the ranking. An event whose item is already in that
history can therefore never be a hit; such repeat events are not scored (but
they are still learnt from). A target the serving vocabulary does not know
counts as a miss. Every tie counts against the target, as in ``protocol.rank_full``.
Serving also leaves out the user's last 50 distinct bought items, which can
reach back beyond the kept history; a sample carries its history, not that
list, so an event on an item bought before the history is scored here though
no served list could hold it (5 of the 3,495 scored events of the bundled
Taobao sample, a review helper's count): the figures are that much optimistic.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.data.events import Event
from models.ensemble import Ensemble
from models.evaluation.metrics import hit_rate, ndcg
from models.evaluation.protocol import MISS, rank_scored
from models.history import encode
from models.linear_blend import LinearBlend
from models.online.samples import TrainingSample, sample_from


def is_scored(sample: TrainingSample) -> bool:
    """Whether the sample's target can be recommended at all (not already in its history)."""
    return sample.target not in sample.items


def rank_samples(ensemble: Ensemble, samples: Sequence[TrainingSample], *, batch_size: int = 512,
                 linear: LinearBlend | None = None) -> np.ndarray:
    """0-based rank of each sample's target among all items, history excluded; unknown target: a miss.

    A miss is ranked ``MISS``, beyond any cut-off. ``linear``: the ensemble's
    serving form (``linear_blend.serving_form``), which gives the same ranks
    from one matmul per chunk instead of normalising every scorer over the
    catalogue (about 4x faster at 12k items, ``benchmarks/rank_paths.py``);
    building it costs about as much as ranking 250 samples, so it pays for a
    version that ranks many.
    """
    vocab = ensemble.vocab
    ranks = np.full(len(samples), MISS, dtype=np.int64)
    known = [n for n, s in enumerate(samples) if vocab.row(s.target)]
    for start in range(0, len(known), batch_size):
        chunk = known[start:start + batch_size]
        encoded = [encode(vocab, samples[n].history) for n in chunk]
        items, types = [r for r, _ in encoded], [t for _, t in encoded]
        targets = [vocab.row(samples[n].target) for n in chunk]
        if linear is not None:
            ranks[chunk] = linear.rank_targets(items, types, targets)
        else:
            ranks[chunk] = rank_scored(ensemble.blend(ensemble.parts(items, types, ensemble.active())), items, targets)
    return ranks


def metrics_at(ranks: np.ndarray, k: int = 10) -> dict[str, float]:
    """``{"ndcg@k": ..., "hr@k": ..., "n": ...}`` of 0-based target ranks."""
    return {f"ndcg@{k}": ndcg(ranks, k), f"hr@{k}": hit_rate(ranks, k), "n": int(len(ranks))}


@dataclass
class PrequentialResult:
    """Per-event outcome of a run: time, whether scored, and the target's rank (scored events only)."""

    ts: np.ndarray  # (n_events,) event times, Unix seconds
    scored: np.ndarray  # (n_events,) bool: tested (target not already in the history)
    ranks: np.ndarray  # (n_events,) rank of the target; -1 where not scored
    seconds: dict[str, float] = field(default_factory=dict)  # "test", "learn"
    learn_calls: int = 0

    def metrics(self, k: int = 10) -> dict[str, float]:
        """HR@k, NDCG@k and the number of scored events over the whole stream."""
        return metrics_at(self.ranks[self.scored], k)

    def windows(self, edges: Sequence[float], k: int = 10) -> list[dict[str, Any]]:
        """Metrics per time window ``[edges[i], edges[i+1])`` (the last one closed)."""
        out = []
        for i in range(len(edges) - 1):
            lo, hi = edges[i], edges[i + 1]
            inside = (self.ts >= lo) & ((self.ts < hi) if i < len(edges) - 2 else (self.ts <= hi))
            out.append({"start_ts": float(lo), "end_ts": float(hi), **metrics_at(self.ranks[inside & self.scored], k)})
        return out


def gain_interval(
    base: PrequentialResult, other: PrequentialResult, k: int = 10, *, reps: int = 1000, level: float = 0.95,
    seed: int = 0, groups: np.ndarray | None = None,
) -> tuple[float, float]:
    """Bootstrap interval of ``other``'s relative NDCG@k gain over ``base`` on the same stream.

    Paired: both runs scored the same events (same stream, same histories), so
    each resample draws with replacement and compares both runs on what it
    drew. Without ``groups`` it draws scored events; but events of one user
    are not independent, and that interval is too narrow (about half the
    width on a 1,500-user Beauty subset). With ``groups`` (each event's user,
    aligned with the stream) it draws whole users, all of a user's events
    together: the interval to quote.
    """
    if len(base.scored) != len(other.scored) or not np.array_equal(base.scored, other.scored):
        raise ValueError("the two runs did not score the same events")
    a = _gains(base.ranks[base.scored], k)
    b = _gains(other.ranks[other.scored], k)
    if not len(a):
        return float("nan"), float("nan")
    if groups is not None:  # one unit per user: the sums of their events' gains
        _, unit = np.unique(np.asarray(groups)[base.scored], return_inverse=True)
        a, b = np.bincount(unit, weights=a), np.bincount(unit, weights=b)
    rng = np.random.default_rng(seed)
    sa, sb = np.empty(reps), np.empty(reps)
    for start in range(0, reps, 100):  # in chunks: 100 draws of every unit at a time
        draws = rng.integers(0, len(a), size=(min(100, reps - start), len(a)))
        sa[start:start + len(draws)], sb[start:start + len(draws)] = a[draws].sum(1), b[draws].sum(1)
    ratios = np.divide(sb, sa, out=np.full(reps, np.nan), where=sa > 0) - 1.0
    tail = (1.0 - level) / 2.0
    low, high = np.nanquantile(ratios, [tail, 1.0 - tail])
    return float(low), float(high)


def _gains(ranks: np.ndarray, k: int) -> np.ndarray:
    """Each event's NDCG@k (one relevant item)."""
    return np.where(ranks < k, 1.0 / np.log2(np.maximum(ranks, 0).astype(np.float64) + 2.0), 0.0)


def time_edges(ts: Iterable[float], n_windows: int) -> list[float]:
    """``n_windows + 1`` equally spaced edges from the first to the last event time."""
    values = np.fromiter(ts, dtype=np.float64)
    lo, hi = (float(values.min()), float(values.max())) if len(values) else (0.0, 0.0)
    return np.linspace(lo, hi, n_windows + 1).tolist()


def count_edges(ts: Iterable[float], n_windows: int) -> list[float]:
    """``n_windows + 1`` edges at event-time quantiles: windows of about equal event counts.

    Better than ``time_edges`` for streams with a long, thin tail (staggered
    sequence logs, where the last users' long histories run on alone).
    """
    values = np.fromiter(ts, dtype=np.float64)
    if not len(values):
        return [0.0] * (n_windows + 1)
    return np.quantile(values, np.linspace(0.0, 1.0, n_windows + 1)).tolist()


def prequential(
    events: Sequence[Event],
    serving: Callable[[], Ensemble],
    *,
    learn: Callable[[list[TrainingSample]], object] | None = None,
    histories: Mapping[str, Sequence[tuple[str, str]]] | None = None,
    batch_size: int = 256,
    max_len: int = 50,
    model_version: str = "",
    progress: Callable[[int, int], None] | None = None,
) -> PrequentialResult:
    """Test-then-train over ``events`` (sorted here by time, stably).

    ``serving()`` gives the ensemble that serves the next batch (a frozen one, or
    the learner's working copy); ``learn`` receives each batch's samples after
    the batch is tested. ``histories``: users' (item, type) events before the
    stream. ``progress(done, total)`` is called after each batch.
    """
    order = sorted(range(len(events)), key=lambda n: (events[n].ts, n))
    state = {u: list(h)[max(0, len(h) - max_len) :] for u, h in (histories or {}).items()}
    ts = np.asarray([events[n].ts for n in order], dtype=np.float64)
    scored = np.zeros(len(order), dtype=bool)
    ranks = np.full(len(order), -1, dtype=np.int64)
    seconds = {"test": 0.0, "learn": 0.0}
    calls = 0
    for start in range(0, len(order), batch_size):
        samples = []
        for n in order[start : start + batch_size]:
            ev = events[n]
            history = state.setdefault(ev.user_id, [])
            samples.append(sample_from(history, ev, model_version, max_len))
            history.append((ev.item_id, ev.event_type))
            del history[: max(0, len(history) - max_len)]
        t0 = time.perf_counter()
        test = [i for i, s in enumerate(samples) if is_scored(s)]
        if test:
            pos = np.asarray(test) + start
            scored[pos] = True
            ranks[pos] = rank_samples(serving(), [samples[i] for i in test])
        t1 = time.perf_counter()
        if learn is not None:
            learn(samples)
            calls += 1
        seconds["test"] += t1 - t0
        seconds["learn"] += time.perf_counter() - t1
        if progress is not None:
            progress(min(start + batch_size, len(order)), len(order))
    return PrequentialResult(ts, scored, ranks, seconds, calls)
