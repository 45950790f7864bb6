"""Model updates: announcements on the model-updates topic, and workers following them.

The trainer (and ``reco rollback``) write to the model store first, then
announce the store's log entry on the model-updates topic. Every worker reads
that topic in full, without a consumer group (each worker must see every
announcement), loads the announced version in a loader thread, checks it,
and stages it in its :class:`ModelSlot`; the scoring agent swaps at the start
of its next micro-batch. A checkpoint that is missing, corrupt or cannot
score is refused and logged; the serving version stays. The store's log,
written before each announcement, is the truth: an announcement of anything
but the store's current version is stale and skipped, so a starting worker,
which reads the topic from its start, does not load and serve every past
version in turn.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faust
import orjson
import torch
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from models.checkpoint import CheckpointError
from models.data.events import EVENT_TYPES
from models.history import encode
from models.model_store import VERSION_RE, ModelStore
from models.scorers.sequence import SequenceScorer
from stream_app.metrics import Metrics
from stream_app.model_scoring import EnsembleRecommender
from stream_app.pipeline import Recommender
from stream_app.settings import Settings
from stream_app.tansu_compat import bootstrap_from_url

log = logging.getLogger(__name__)


@dataclass
class ModelSlot:
    """The recommender that serves, and the one staged to replace it between two micro-batches.

    The scoring agent brackets each batch with ``begin_batch``/``end_batch``; a
    model staged during a batch serves from the next one, a model staged while
    the agent is idle serves at once.
    """

    serving: Recommender
    on_swap: Callable[[dict[str, Any]], None] | None = None
    staged: tuple[Recommender, dict[str, Any]] | None = None
    in_batch: bool = False
    # what the latest swaps announced, plus their lag (a worker runs for months: not every swap is kept)
    swaps: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=1_000))

    @property
    def model_version(self) -> str:
        return self.serving.model_version

    def stage(self, recommender: Recommender, entry: dict[str, Any]) -> None:
        self.staged = (recommender, entry)
        if not self.in_batch:
            self.swap()

    def begin_batch(self) -> Recommender:
        """Swap to a staged model, if any; the returned recommender scores the whole batch."""
        self.swap()
        self.in_batch = True
        return self.serving

    def end_batch(self) -> None:
        self.in_batch = False

    def swap(self, now: float | None = None) -> dict[str, Any] | None:
        """Serve the staged recommender; returns its announcement with the swap time and lag."""
        if self.staged is None:
            return None
        self.serving, entry = self.staged
        self.staged = None
        now = time.time() if now is None else now
        newest = entry.get("newest_sample_ms")
        lag = now - newest / 1000.0 if isinstance(newest, (int, float)) and newest else None  # announcements are data
        done = {**entry, "swapped_at": now, "swap_lag_s": lag}
        self.swaps.append(done)
        log.info("now serving model %s (%s), swap lag %s s", done["version"], done.get("action"), done["swap_lag_s"])
        if self.on_swap is not None:
            self.on_swap(done)
        return done


def serving_paths(settings: Settings) -> list[tuple[str, str | None]]:
    """The checkpoints a worker may start from, best first: the store's serving version, then the versions
    it would roll back to (newest first, those still on disk), then ``model_path`` (``""``: none)."""
    paths: list[tuple[str, str | None]] = []
    if settings.model_store:
        store = ModelStore(settings.model_store)
        current = store.current()
        stack = store.serving_stack() if current is not None else []
        for version in reversed(stack):
            if not VERSION_RE.match(version):  # a hand-written name: the versions after it can still serve
                log.warning("model store %s: %r is not a version name; passed over", store.root, version)
            elif version == current or store.path(version).is_dir():
                paths.append((str(store.path(version)), version))
    return paths + [(settings.model_path, None)]


def check_scores(recommender: EnsembleRecommender) -> None:
    """Refuse a model that cannot score: an empty history, and short histories of known items with each
    event type, must all get finite scores. Only the non-empty ones run the transformer (the serving blend
    answers an empty history without it): NaN weights, or an event type the model has no row for, show
    there and not in an empty history."""
    vocab = recommender.ensemble.vocab
    items = [vocab.item(row) for row in range(1, min(len(vocab), 4))]
    histories: list[list[tuple[str, str]]] = [[]]
    if items:
        histories += [[(item, kind) for item in items] for kind in EVENT_TYPES]
    ranked = recommender.rank(histories, [set() for _ in histories])
    for history, scored in zip(histories, ranked):
        if not scored or not all(math.isfinite(s.score) for s in scored):
            raise ValueError(f"the model gives no finite scores for the history {history!r}")
    # the reference path (an ensemble the serving blend cannot take) standardises each scorer: a NaN
    # transformer would pass above as a constant, so its own scores are checked too
    encoded = [encode(vocab, h) for h in histories[1:]]
    for name, scorer in recommender.ensemble.scorers.items():
        if isinstance(scorer, SequenceScorer) and encoded:
            scores = scorer.score_rows([r for r, _ in encoded], [t for _, t in encoded])[:, 1:len(vocab)]
            if not bool(torch.isfinite(scores).all()):
                raise ValueError(f"scorer {name!r} gives non-finite scores")


async def announce(settings: Settings, entry: dict[str, Any], producer: AIOKafkaProducer | None = None) -> None:
    """Publish a model-store log entry on the model-updates topic, with ``producer`` if given (the
    trainer's own, already connected: a promotion does not wait for a new producer to bootstrap)."""
    own = producer is None
    if own:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap_from_url(settings.kafka_url),
                                    acks="all")  # as Faust's: an announcement survives a leader failover
        await producer.start()
    try:
        await producer.send_and_wait(settings.model_updates_topic, orjson.dumps(entry), key=b"model")
    finally:
        if own:
            await producer.stop()


def register(app: faust.App, settings: Settings, slot: ModelSlot, metrics: Metrics, load) -> None:
    """Follow the model-updates topic; ``load(path, version)`` builds a recommender (in a thread)."""
    loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-loader")
    store = ModelStore(settings.model_store)  # one for the worker's life: it reads only what its log gained

    @app.task
    async def follow_model_updates() -> None:
        consumer = AIOKafkaConsumer(settings.model_updates_topic, bootstrap_servers=bootstrap_from_url(
            settings.kafka_url), group_id=None, auto_offset_reset="earliest", enable_auto_commit=False,
            fetch_max_wait_ms=settings.fetch_max_wait_ms)
        await consumer.start()
        try:
            async for msg in consumer:
                await _on_announcement(msg.value, store, slot, metrics, load, loader)
        finally:
            await consumer.stop()


async def _on_announcement(value: bytes | None, store: ModelStore, slot: ModelSlot, metrics: Metrics,
                           load, loader: ThreadPoolExecutor) -> None:
    try:
        entry = orjson.loads(value)  # a tombstone (None) raises TypeError
        version = str(entry["version"])
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        log.error("model update refused: unreadable announcement %r (%s)", (value or b"")[:200], exc)
        metrics.model_refused.inc()
        return
    target = slot.staged[0].model_version if slot.staged else slot.model_version
    if version == target:
        return  # already serving (e.g. the version this worker started from)
    try:
        current = store.current()
    except (CheckpointError, OSError) as exc:
        log.error("model update to %s refused, %s keeps serving: the store's log cannot be read: %s",
                  version, slot.model_version, exc)
        metrics.model_refused.inc()
        return
    if current is not None and version != current:
        log.info("announcement of %s (%s) skipped: the store serves %s now", version, entry.get("action"), current)
        return
    started = time.monotonic()
    try:
        path = store.path(version)
        recommender = await asyncio.get_running_loop().run_in_executor(loader, _load_checked, load, path, version)
    except Exception as exc:  # noqa: BLE001 - any failure to load refuses the model, the worker goes on
        log.error("model update to %s refused, %s keeps serving: %s", version, slot.model_version, exc)
        metrics.model_refused.inc()
        return
    try:
        now_serving = store.current()  # a rollback may have landed while it loaded
    except (CheckpointError, OSError):
        now_serving = None  # the store's log is unreadable now: what was checked before the load stands
    if now_serving is not None and now_serving != version:
        log.info("model %s loaded but not staged: the store serves %s now", version, now_serving)
        return
    slot.stage(recommender, entry)
    log.info("model %s staged (%s) after %.2f s loading, swapping at the next micro-batch",
             version, entry.get("action"), time.monotonic() - started)


def _load_checked(load, path: Path, version: str) -> EnsembleRecommender:
    recommender = load(str(path), version)
    check_scores(recommender)
    return recommender
