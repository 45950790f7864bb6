"""The item-keyed anomaly agent, and every worker following the alerts it raises.

``item-anomalies`` reads the item-touches topic (``stream_app.touches``): all
of an item's touches reach one agent instance, whatever worker their users
are on, and its monitor runs the item-keyed detectors (shilling) over them,
publishing alerts on the item and on the suspect users behind it. Its state
lives in the changelog-backed ``item-anomaly-state`` table, so a restart in
the middle of a campaign does not start its windows again.
``read_alerts`` reads the alerts topic in full (no consumer group, from the
start, so a restarted worker gets the quarantines in force back, before its
first batch): every worker's events agent hands each alert to its user-side
monitor, whose quarantines keep those users' and items' events out of training.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any

import faust
import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from models.anomaly.alerts import Alert
from models.anomaly.monitor import AnomalyMonitor
from stream_app.agents.batching import each_batch
from stream_app.agents.rebalance import forget_on_rebalance
from stream_app.anomaly import forget_moved_items, make_monitor
from stream_app.metrics import Metrics
from stream_app.settings import Settings
from stream_app.tables import Tables
from stream_app.tansu_compat import bootstrap_from_url, fetch_high_watermarks
from stream_app.topics import Topics
from stream_app.touches import from_touch

PARTITIONS_CHECK_S = 30.0  # how often the alerts reader's metadata, and so its partitions, are refreshed

log = logging.getLogger(__name__)


def item_alerts(monitor: AnomalyMonitor, messages: Iterable[tuple[bytes, int, int]],
                table: MutableMapping[bytes, Any] | None = None) -> list[Alert]:
    """The item-keyed detectors' alerts for a batch of touches messages (value, partition, offset), in order.

    ``table`` (item id bytes -> ``AnomalyMonitor.item_snapshot``) is where the
    monitor's item state survives a restart: an item the monitor does not
    hold is restored from it before its first touch, and every item touched
    is written back once, after the batch (``save_items``). Re-delivered
    touches (at least once) change nothing: the windows count distinct
    users, and an alert already raised is not raised again.

    Only workers write the topic, so an unreadable message is a bug: it is
    logged with its position and skipped, and the rest of the batch counts.
    """
    alerts, touched = observe_touches(monitor, messages, table)
    if table is not None:
        save_items(monitor, touched, table)
    return alerts


async def handle_touches(monitor: AnomalyMonitor, messages: Iterable[tuple[bytes, int, int]],
                         table: MutableMapping[bytes, Any], send: Callable[[Alert], Awaitable[None]]) -> list[Alert]:
    """``item_alerts`` as the agent runs it: the batch's alerts are sent before the table is written.

    The other order lost alerts: a worker stopped between the two (Faust
    cancels a stopping agent, then flushes its producer, changelog records
    included) kept item state that says the alerts were raised, so the
    re-delivered touches raised nothing. Now such a stop leaves the table as
    it was, and the re-delivered touches raise the alerts again (at least once).
    """
    alerts, touched = observe_touches(monitor, messages, table)
    for alert in alerts:
        await send(alert)
    save_items(monitor, touched, table)
    return alerts


def observe_touches(monitor: AnomalyMonitor, messages: Iterable[tuple[bytes, int, int]],
                    table: Mapping[bytes, Any] | None) -> tuple[list[Alert], set[str]]:
    """The alerts of a batch of touches messages, and the items they touched (restored from ``table`` first)."""
    alerts: list[Alert] = []
    touched: set[str] = set()
    for value, partition, offset in messages:
        try:
            touches = [from_touch(row) for row in orjson.loads(value)]
        except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
            log.error("unreadable touches at partition %d offset %d ignored: %s", partition, offset, exc)
            continue
        for event, context in touches:
            if table is not None and event.item_id not in touched and not monitor.knows_item(event.item_id):
                restore(monitor, event.item_id, table.get(event.item_id.encode()))
            touched.add(event.item_id)
            alerts += monitor.observe_item(event, context)
    return alerts, touched


def save_items(monitor: AnomalyMonitor, touched: Iterable[str], table: MutableMapping[bytes, Any]) -> None:
    """Write each touched item's state once; delete the items the monitor has forgotten (idle past their
    windows, no alert in force), so the table holds only the active items."""
    touched = set(touched)
    for item in touched:
        snapshot = monitor.item_snapshot(item)
        if snapshot:
            table[item.encode()] = snapshot
        elif item.encode() in table:  # touched, then forgotten in the same batch (a late touch, then a new one)
            del table[item.encode()]
    for item in monitor.forgotten_items():
        if item not in touched and item.encode() in table:
            del table[item.encode()]


def restore(monitor: AnomalyMonitor, item_id: str, snapshot: Any) -> None:
    """``monitor.restore_item`` from a table value; one it cannot read (another version's format, say) is
    logged and the item starts afresh, rather than stopping the agent on every start."""
    if not snapshot:
        return
    try:
        monitor.restore_item(item_id, snapshot)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        log.error("item %r: unreadable item-anomaly-state value ignored, its windows start afresh: %r", item_id, exc)
        monitor.forget_item(item_id)


def register(app: faust.App, topics: Topics, tables: Tables, metrics: Metrics, settings: Settings) -> None:
    """Attach the ``item-anomalies`` agent to ``app``."""
    monitor = make_monitor(settings)  # used through observe_item only: the users' side is the events agent's
    if monitor is not None:
        monitor.forgotten_items()  # from now on it lists the items it forgets, for the table to delete
        forget_on_rebalance(app, topics.item_touches.get_topic_name(),
                            lambda held: forget_moved_items(monitor, held, settings.partitions),
                            "items (item-anomalies)")

    async def send_alert(alert: Alert) -> None:
        """Send and wait for the delivery: the item state written after it says the alert was raised."""
        await (await topics.alerts.send(key=alert.entity_id.encode(), value=orjson.dumps(alert.to_dict())))
        metrics.alerts.labels(alert.detector).inc()

    @app.agent(topics.item_touches, name="item-anomalies")
    async def item_anomalies(stream: faust.StreamT) -> None:
        assert monitor is not None

        async def handle(events: list) -> None:
            await handle_touches(monitor, [(e.value, e.message.partition, e.message.offset) for e in events],
                                 tables.item_anomalies, send_alert)

        await each_batch(app, stream, settings.max_batch, settings.max_wait_s, handle)


async def read_alerts(settings: Settings, caught_up: asyncio.Event | None = None) -> AsyncIterator[Alert]:
    """Every alert on the alerts topic, from its start and then as they come (no consumer group: each worker
    reads them all, so a restarted one gets the quarantines in force back). Unreadable ones are logged.

    ``caught_up`` is set once every alert that was on the topic when reading
    began has been yielded and handled (the events agent waits for it before
    its first batch, so a restarted worker's quarantines hold from its first
    event, not only once it has read the topic). Partitions added to the
    topic later are followed from their beginning once the consumer's
    metadata shows them (refreshed every ``PARTITIONS_CHECK_S``).
    """
    bootstrap = bootstrap_from_url(settings.kafka_url)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                fetch_max_wait_ms=settings.fetch_max_wait_ms,
                                metadata_max_age_ms=int(PARTITIONS_CHECK_S * 1000))
    await consumer.start()
    try:
        await consumer.topics()  # loads the cluster's metadata (the topic exists: the worker prepared it)
        partitions = await follow_new_partitions(consumer, settings.alerts_topic, [])
        if not partitions:
            raise RuntimeError(f"topic {settings.alerts_topic!r} has no partitions (not created?)")
        behind = await alerts_to_read(consumer, partitions, bootstrap if settings.embedded_broker else None)
        while True:
            partitions = await follow_new_partitions(consumer, settings.alerts_topic, partitions)
            if caught_up is not None and not caught_up.is_set() and not behind:
                log.info("alerts topic read to its end: quarantines in force are applied")
                caught_up.set()
            batches = await consumer.getmany(timeout_ms=1_000)
            for msgs in batches.values():
                for msg in msgs:
                    try:
                        alert = Alert.from_dict(orjson.loads(msg.value))
                    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                        log.error("unreadable alert at partition %d offset %d ignored: %s",
                                  msg.partition, msg.offset, exc)
                        continue
                    yield alert
            for tp in list(behind):
                if await consumer.position(tp) >= behind[tp]:
                    del behind[tp]
    finally:
        await consumer.stop()


async def follow_new_partitions(consumer: AIOKafkaConsumer, topic: str,
                                assigned: list[TopicPartition]) -> list[TopicPartition]:
    """``assigned`` plus the partitions the consumer's metadata now shows for ``topic`` besides them, those
    read from their beginning. ``assign`` forgets positions, so the others are sought back to theirs."""
    added = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
             if TopicPartition(topic, p) not in assigned]
    if not added:
        return assigned
    positions = {tp: await consumer.position(tp) for tp in assigned}
    consumer.assign([*assigned, *added])
    for tp, offset in positions.items():
        consumer.seek(tp, offset)
    await consumer.seek_to_beginning(*added)
    if assigned:
        log.warning("alerts topic %r has %d new partitions (%s): read from their beginning", topic, len(added),
                    ", ".join(str(tp.partition) for tp in added))
    return [*assigned, *added]


async def alerts_to_read(consumer: AIOKafkaConsumer, partitions: list[TopicPartition],
                         embedded_bootstrap: str | None) -> dict[TopicPartition, int]:
    """The end offset of each partition that holds alerts now (none: the topic is empty).

    On the embedded broker (``embedded_bootstrap``) tansu's end offsets are too
    low, so they are corrected from Fetch high watermarks (``tansu_compat``).
    """
    ends = await consumer.end_offsets(partitions)
    if embedded_bootstrap is not None:
        ends = await fetch_high_watermarks(embedded_bootstrap, ends)
    starts = await consumer.beginning_offsets(partitions)
    return {tp: end for tp, end in ends.items() if end > starts[tp]}
