"""The Faust application, configured from ``Settings``."""

from __future__ import annotations

from pathlib import Path

import faust

from stream_app import faust_fixes, table_store, tansu_compat
from stream_app.settings import Settings


def create_app(settings: Settings) -> faust.App:
    """A Faust app with the settings measured to work on Kafka and tansu."""
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)  # faust creates only the last level
    faust_fixes.install()
    table_store.install()
    if settings.embedded_broker:
        tansu_compat.install(tansu_compat.bootstrap_from_url(settings.kafka_url))
    tansu_compat.set_fetch_max_wait(settings.fetch_max_wait_ms)
    return faust.App(
        settings.app_id,
        broker=settings.kafka_url,
        store=settings.store,
        datadir=settings.data_dir,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        table_standby_replicas=0,
        broker_session_timeout=settings.broker_session_timeout_s,
        broker_heartbeat_interval=settings.broker_heartbeat_interval_s,
        broker_rebalance_timeout=settings.broker_rebalance_timeout_s,
        broker_request_timeout=settings.join_request_timeout_s(90.0),  # Faust's default, 90 s, at least
        broker_commit_interval=settings.commit_interval_s,
        web_port=settings.web_port,
        web_bind=settings.web_bind,
        # Faust's built-in pages would serve every table's data (``/table/users/<user>/``: a shopper's history)
        # and the workers' addresses on the worker's port (0.0.0.0 in a container); ours are in ``web.py``
        web_tables_enabled=False,
        web_router_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        producer_compression_type=None,
        producer_linger=settings.producer_linger_s,
        key_serializer="raw",
        value_serializer="raw",
        env={},  # Faust's own unprefixed variables (WEB_PORT, TOPIC_PARTITIONS...) would override these
    )
