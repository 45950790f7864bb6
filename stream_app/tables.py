"""Changelog-backed state tables.

Keys are the raw UTF-8 bytes of the id, the same bytes the events are keyed
by (item-touches is written to the partition Kafka's partitioner gives the
item id, ``stream_app.touches``), so the producer's partitioner puts each
changelog record on the partition of its source events (``use_partitioner=True`` lets a micro-batch write keys
from several partitions at once).
"""

from __future__ import annotations

from dataclasses import dataclass

import faust
from faust.types import TableT

from stream_app.settings import Settings


@dataclass(frozen=True)
class Tables:
    users: TableT  # user id -> rolling state (see stream_app.state)
    items: TableT  # item id -> {"pop": log2 popularity, "nbrs": {item: log2 weight}}
    item_anomalies: TableT  # item id -> the item-keyed detectors' state (AnomalyMonitor.item_snapshot)


TABLE_NAMES = ("user-state", "item-stats", "item-anomaly-state")  # the fields of ``Tables``, in order


def changelog_topics(settings: Settings) -> list[str]:
    """The tables' changelog topics, as Faust names them (``{app id}-{table}-changelog``)."""
    return [f"{settings.app_id}-{name}-changelog" for name in TABLE_NAMES]


def declare_tables(app: faust.App, settings: Settings) -> Tables:
    def table(name: str) -> TableT:
        return app.Table(name, default=None, partitions=settings.partitions, use_partitioner=True,
                         key_type=bytes)  # values: faust's json codec, which uses orjson

    return Tables(*(table(name) for name in TABLE_NAMES))
