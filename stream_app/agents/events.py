"""The user agent: events in micro-batches -> user state, item activity, recommendations."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence

import faust
import orjson
from faust.types import RecordMetadata

from models.anomaly.alerts import Alert
from models.anomaly.monitor import AnomalyMonitor
from models.online.samples import TrainingSample
from stream_app.agents.batching import each_batch
from stream_app.agents.item_anomalies import read_alerts
from stream_app.agents.rebalance import forget_on_rebalance
from stream_app.anomaly import forget_moved_users
from stream_app.delivery_counts import Deliveries
from stream_app.holdback import Holdback
from stream_app.metrics import Metrics
from stream_app.model_updates import ModelSlot
from stream_app.pipeline import (
    BatchOutput,
    Incoming,
    apply_batch_states,
    count_deliveries,
    counted_kafka_times_ms,
    counted_rejections,
    deliveries_of,
    offset_gaps,
    process_batch,
)
from stream_app.records import dead_letter
from stream_app.sample_outlet import SAMPLE_OUTCOMES, SampleOutlet
from stream_app.settings import Settings
from stream_app.state import UserState
from stream_app.sinks.base import Store
from stream_app.tables import Tables
from stream_app.topics import Topics, publish
from stream_app.touches import by_partition

log = logging.getLogger(__name__)


def register(app: faust.App, topics: Topics, tables: Tables, store: Store,
             slot: ModelSlot, metrics: Metrics, settings: Settings, monitor: AnomalyMonitor | None) -> None:
    """Attach the ``score-events`` agent to ``app``. ``monitor``: the user-keyed anomaly detectors (users of
    this worker's partitions; snapshots ride in their user state), None when detection is off."""
    alerts_read = asyncio.Event()  # the alerts already on the topic at start are in the monitor (read_alerts)
    if monitor is None:
        alerts_read.set()

    def trainable(sample: TrainingSample) -> bool:
        return monitor is None or not monitor.holds_back(sample.user_id, sample.target, sample.ts)

    def send_sample(sample: TrainingSample) -> Awaitable[Awaitable[RecordMetadata]]:
        return publish(app, topics.training_samples, sample.user_id.encode(), orjson.dumps(sample.to_dict()))

    async def count_samples(counts: Mapping[str, int], write_id: str) -> None:
        await store.add_counters(counts, write_id)
        for name, n in counts.items():
            if name in SAMPLE_OUTCOMES:  # samples_released_before_alert has its own metric, by detector
                metrics.samples.labels(name.removeprefix("samples_")).inc(n)

    outlet = SampleOutlet(Holdback(settings.sample_holdback_s), send_sample, trainable, count_samples)
    holdback = outlet.holdback

    def count_released_before(alerts: Sequence[Alert]) -> None:
        """Count the released samples the new alerts came too late to stop, each once (``Holdback.take_released_in``);
        the store gets them at the outlet's next flush. Nothing is awaited: an alert read with others must
        not wait on the store while the release timer sends what the others would stop."""
        for alert in alerts:
            n = holdback.take_released_in(alert.entity_type, alert.entity_id, alert.expires_ts)
            if n:
                metrics.samples_before_alert.labels(alert.detector).inc(n)
                outlet.count("samples_released_before_alert", n)

    @app.timer(interval=0.25)
    async def release_held_samples() -> None:
        if not app.should_stop:  # once it is, drain_samples has them
            await outlet.release()
            await outlet.flush_counts()

    @app.on_before_shutdown.connect
    async def drain_samples(_app: faust.App, **_: object) -> None:
        """A graceful stop: the consumer has stopped, the producer not yet (see ``SampleOutlet.drain``). A
        failure (e.g. Redis gone, for the counts) is logged: the rest of the stop must still run."""
        try:
            await outlet.drain()
        except Exception as exc:  # noqa: BLE001
            log.error("sending the held training samples at stop failed: %r", exc, exc_info=exc)

    if monitor is not None:
        forget_on_rebalance(app, topics.events.get_topic_name(),
                            lambda held: forget_moved_users(monitor, held, settings.partitions), "monitored users")

        @app.task
        async def follow_alerts() -> None:
            """Every alert, whoever raised it, into this worker's monitor (see ``read_alerts``). If reading
            fails the worker stops: its events agent waits for the alerts, and quarantines would go stale."""
            try:
                async for alert in read_alerts(settings, caught_up=alerts_read):
                    if monitor.apply(alert):
                        count_released_before([alert])
            except Exception as exc:  # noqa: BLE001 - stop the worker rather than hang or serve unguarded
                log.critical("reading the alerts topic failed, the worker stops: %r", exc, exc_info=exc)
                await app.crash(exc)

    async def handle(events: list) -> None:
        if not alerts_read.is_set():  # a (re)started worker: quarantines in force first, then events
            log.info("first batch waits until the alerts topic has been read")
            await alerts_read.wait()
        batch = [Incoming(e.value, e.message.key, e.message.partition, e.message.offset,
                          e.message.timestamp and int(e.message.timestamp * 1000))
                 for e in events]
        recommender = slot.begin_batch()  # one model scores the whole batch; swaps happen in between
        try:
            out = await process_batch(batch, tables.users, recommender, settings, monitor=monitor)
        finally:
            slot.end_batch()
        applied = out.counters["processed"]
        deliveries = deliveries_of(batch, out)
        counted_before: dict[int, int] = {}

        async def write_redis() -> None:
            counted_before.update(await write_counted(store, metrics, batch, out, deliveries))

        await finish_batch(app, out, topics, tables.users, meanwhile=write_redis)
        count_deliveries(batch, out, counted_before, deliveries)  # the worker's figures: what the store counted
        for partition, first, last in offset_gaps(batch, counted_before):
            log.warning("events partition %d skipped offsets %d-%d: never delivered to this worker (lost, "
                        "unless transaction markers or compaction left the gap)", partition, first, last)
        if out.counters["processed"] > applied:
            log.warning("counted %d events the user state already held: their first delivery's counts were "
                        "lost (the state was written, the store's counts were not)",
                        out.counters["processed"] - applied)
        outlet.add(out.samples)
        await outlet.release()
        metrics.observe_batch(out.counters, counted_rejections(out, counted_before), len(batch), out.scoring_s)
        for alert in out.alerts:
            metrics.alerts.labels(alert.detector).inc()
        count_released_before(out.alerts)

    @app.agent(topics.events, name="score-events")
    async def score_events(stream: faust.StreamT) -> None:
        await store.start()
        await each_batch(app, stream, settings.max_batch, settings.max_wait_s, handle)


async def write_counted(store: Store, metrics: Metrics, batch: Sequence[Incoming], out: BatchOutput,
                        deliveries: Deliveries, clock: Callable[[], float] = time.time) -> dict[int, int]:
    """Write the batch's lists to the store, which counts the batch against its counted offsets, atomically;
    returns those offsets. The events it counted as processed now are observed in ``reco_event_to_redis_seconds``
    as the write completes (not after the broker's acks), each once however often delivered."""
    counted = await store.write_recommendations(out.records, {"events_in": len(batch)}, deliveries)
    metrics.observe_latency(counted_kafka_times_ms(out, counted), now=clock())
    return counted


async def finish_batch(app: faust.App, out: BatchOutput, topics: Topics, table: MutableMapping[bytes, UserState],
                       meanwhile: Callable[[], Awaitable[None]] | None = None) -> None:
    """Emit the batch's outputs, run ``meanwhile`` (the agent's Redis write: the homepage does not wait for
    the broker), wait until the broker has every output, then write the user states (see ``emit``)."""
    sent = await emit(app, out, topics)
    if meanwhile is not None:
        await meanwhile()
    await asyncio.gather(*sent)
    apply_batch_states(table, out)


async def emit(app: faust.App, out: BatchOutput, topics: Topics) -> list[Awaitable[RecordMetadata]]:
    """Send a batch's item activity, recommendations, alerts, touches and dead letters (samples go via the
    holdback); returns their deliveries, which ``finish_batch`` awaits before it writes the states.

    The agent emits before it writes the batch's user states, and the
    states say the events were applied: a re-delivery of the events then
    rebuilds nothing. So a stop, or a send that fails, must come before the
    states are written. Faust cancels a stopping agent, then flushes its
    producer, changelog records included: with the other order the states
    were kept and the alerts lost. And a send is not a delivery: a failed
    one (its error surfaces only on its future) used to be dropped silently
    while the batch's offsets were committed. Now it raises in
    ``finish_batch``, the batch fails, the worker stops, and the batch comes
    again with its states unwritten (at least once).
    """
    sent: list[Awaitable[RecordMetadata]] = []
    for item, act in out.activity.items():
        sent.append(await publish(app, topics.item_activity, item.encode(), orjson.dumps(act.to_wire())))
    for rec in out.records:
        sent.append(await publish(app, topics.recommendations, rec["user_id"].encode(), orjson.dumps(rec)))
    for alert in out.alerts:
        sent.append(await topics.alerts.send(key=alert.entity_id.encode(), value=orjson.dumps(alert.to_dict())))
    touches = topics.item_touches
    for partition, rows in by_partition(out.touches, touches.partitions or 1).items():
        sent.append(await app.producer.send(touches.get_topic_name(), None, orjson.dumps(rows), partition,
                                            None, None))
    for dl in out.dead_letters:
        msg = dl.message
        log.warning("dead letter %s at partition %d offset %d: %s",
                    dl.rejection.code, msg.partition, msg.offset, dl.rejection.detail)
        key, value, headers = dead_letter(msg.key, msg.value, dl.rejection, topics.events.get_topic_name(),
                                          msg.partition, msg.offset)
        sent.append(await topics.dead_letters.send(key=key, value=value, headers=headers))
    return sent
