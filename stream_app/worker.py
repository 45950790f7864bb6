"""Assemble the worker: app, topics, tables, store, recommender and agents."""

from __future__ import annotations

import faust

from stream_app import web
from stream_app.agents import events, items
from stream_app.app import create_app
from stream_app.metrics import Metrics
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
    recommender = HeuristicRecommender(store, settings)
    metrics = Metrics()
    metrics.set_model_version(recommender.model_version)
    events.register(app, topics, tables, store, recommender, metrics, settings)
    items.register(app, topics, tables, store, settings)
    web.register(app, store, metrics, recommender)
    return app


def run_worker(settings: Settings) -> None:
    """Run a worker in the foreground until SIGTERM/SIGINT."""
    app = build_worker(settings)
    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True)
    worker.execute_from_commandline()
