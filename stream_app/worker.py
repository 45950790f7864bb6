"""Assemble the worker: app, topics, tables, store, recommender and agents."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import faust
import torch

from models.serving import ServingConfig

from stream_app import kafka_admin, model_updates, web
from stream_app.gc_tuning import settle_heap
from stream_app.agents import events, item_anomalies, items
from stream_app.anomaly import make_monitor
from stream_app.app import create_app
from stream_app.local_state import (
    count_changelog_records,
    hold_data_dir,
    keep_only_if_stopped_cleanly,
    mark_clean_stop,
)
from stream_app.metrics import Metrics
from stream_app.model_scoring import EnsembleRecommender
from stream_app.model_updates import ModelSlot, check_scores, serving_paths
from stream_app.pipeline import Recommender
from stream_app.scoring import HeuristicRecommender
from stream_app.settings import Settings
from stream_app.sinks.base import Store
from stream_app.sinks.redis import RedisStore
from stream_app.tables import declare_tables
from stream_app.topics import declare_topics, prepare_all

log = logging.getLogger(__name__)


def build_worker(settings: Settings, *, store: Store | None = None) -> faust.App:
    """A ready-to-run Faust app for one worker process."""
    app = create_app(settings)
    store = store or RedisStore(settings.redis_url, prefix=settings.redis_prefix, ttl_s=settings.redis_ttl_s,
                                retries=settings.redis_retries, timeout_s=settings.redis_timeout_s)
    topics = declare_topics(app, settings)
    tables = declare_tables(app, settings)
    metrics = Metrics()
    slot = ModelSlot(make_recommender(settings, store), on_swap=metrics.observe_swap)
    metrics.set_model_version(slot.model_version)
    monitor = make_monitor(settings, items=False)  # the item-keyed detectors run in item_anomalies
    events.register(app, topics, tables, store, slot, metrics, settings, monitor)
    items.register(app, topics, tables, store, settings)
    if monitor is not None:
        item_anomalies.register(app, topics, tables, metrics, settings)
    if settings.model_store and isinstance(slot.serving, EnsembleRecommender):
        executor = slot.serving.executor  # every version scores on the one scoring thread
        model_updates.register(app, settings, slot, metrics,
                               lambda path, version: load_ensemble(settings, path, executor))
    web.register(app, store, metrics, slot, read_timeout_s=settings.redis_read_timeout_s)
    return app


def make_recommender(settings: Settings, store: Store) -> Recommender:
    """The store's serving version, else the configured checkpoint, else the baseline.

    A checkpoint that fails to load or to score (``check_scores``) is passed over for the next one of
    ``serving_paths`` (the version the store would roll back to): running workers refuse such a version
    when it is announced and keep serving theirs, so a restarted one must not serve it either, or fail at
    its first batch at every restart.
    """
    candidates = serving_paths(settings)
    if not candidates[0][0]:
        return HeuristicRecommender(store, settings)
    torch.set_num_threads(settings.torch_threads)
    first_error: Exception | None = None
    for path, version in candidates:
        if not path:
            break
        try:
            recommender = load_ensemble(settings, path)
            check_scores(recommender)
        except Exception as exc:  # noqa: BLE001 - any failure passes the version over, as a swap refuses it
            log.error("model %s not served: %s", version or path, exc)
            first_error = first_error or exc
            continue
        if first_error is not None:
            log.error("serving %s instead of the store's serving version; fix or roll back the store", version or path)
        return recommender
    raise RuntimeError("no checkpoint the worker can serve: " + ", ".join(
        v or p for p, v in candidates if p)) from first_error


def load_ensemble(settings: Settings, path: str, executor: ThreadPoolExecutor | None = None) -> EnsembleRecommender:
    """A checkpoint prepared for serving as the settings say (device, dtype, compile)."""
    serving = ServingConfig(device=settings.device, dtype=settings.model_dtype, compile=settings.model_compile)
    return EnsembleRecommender.from_checkpoint(path, k=settings.top_k, serving=serving, executor=executor)


def prepare_topics(settings: Settings) -> None:
    """Create the topics that do not exist yet (``topics.prepare_all``), then stop with a clear error if a
    topic that places users or items (events, item-touches, item-activity) has another partition count."""
    try:
        asyncio.run(prepare_all(settings))
    except kafka_admin.TopicError as exc:
        log.critical("worker not started: %s", exc)
        raise SystemExit(2) from exc


def run_worker(settings: Settings) -> None:
    """Run a worker in the foreground until SIGTERM/SIGINT (after ``prepare_topics``)."""
    prepare_topics(settings)
    app = build_worker(settings)
    on_disk = settings.store.startswith("rocksdb://")
    if on_disk:
        hold_data_dir(Path(settings.data_dir))
        keep_only_if_stopped_cleanly(Path(settings.data_dir), Path(app.conf.tabledir))
        count_changelog_records()
    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True)
    # Faust's terminal spinner sets the root logger to DEBUG so that it sees every record;
    # then every debug call on the hot path (aiokafka logs each request) builds a LogRecord
    # (measured: ~6% of a busy worker's samples). A service has no terminal to spin in.
    worker.spinner = None
    settle_heap()  # the model and every module are loaded: nothing the collector needs to walk again
    try:
        worker.execute_from_commandline()
    except SystemExit as exit_:
        # mode turns an error (a crashed task) into exit 1 without printing it; one while stopping a service is
        # logged and swallowed (exit 0), hence the changelog ledger before the clean-stop marker
        if exit_.code and exit_.__context__ is not None:
            log.error("worker exits with %s", exit_.code, exc_info=exit_.__context__)
        if on_disk and not exit_.code:
            mark_clean_stop(Path(settings.data_dir))
        raise
