"""Assemble the worker: app, topics, tables, store, recommender and agents."""

from __future__ import annotations

import faust

from stream_app import web
from stream_app.agents import events, items
from stream_app.app import create_app
from stream_app.metrics import Metrics
from stream_app.pipeline import Recommender
from stream_app.scoring import HeuristicRecommender
from stream_app.settings import Settings
from stream_app.sinks.base import Store
from stream_app.sinks.redis import RedisStore
from stream_app.tables import declare_tables
from stream_app.topics import declare_topics


def build_worker(settings: Settings, *, store: Store | None = None) -> faust.App:
    """A ready-to-run Faust app for one worker process."""
    app = create_app(settings)
    store = store or RedisStore(settings.redis_url, prefix=settings.redis_prefix, ttl_s=settings.redis_ttl_s)
    topics = declare_topics(app, settings)
    tables = declare_tables(app, settings)
    recommender = make_recommender(settings, store)
    metrics = Metrics()
    metrics.set_model_version(recommender.model_version)
    events.register(app, topics, tables, store, recommender, metrics, settings)
    items.register(app, topics, tables, store, settings)
    web.register(app, store, metrics, recommender)
    return app


def make_recommender(settings: Settings, store: Store) -> Recommender:
    """The trained ensemble when a checkpoint is configured, else the baseline."""
    if not settings.model_path:
        return HeuristicRecommender(store, settings)
    import torch

    from models.serving import ServingConfig
    from stream_app.model_scoring import EnsembleRecommender

    torch.set_num_threads(settings.torch_threads)
    serving = ServingConfig(device=settings.device, dtype=settings.model_dtype, compile=settings.model_compile)
    return EnsembleRecommender.from_checkpoint(settings.model_path, k=settings.top_k, serving=serving)


def run_worker(settings: Settings) -> None:
    """Run a worker in the foreground until SIGTERM/SIGINT."""
    app = build_worker(settings)
    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True)
    # Faust's terminal spinner sets the root logger to DEBUG so that it sees every record;
    # then every debug call on the hot path (aiokafka logs each request) builds a LogRecord
    # (measured: ~6% of a busy worker's samples). A service has no terminal to spin in.
    worker.spinner = None
    worker.execute_from_commandline()
