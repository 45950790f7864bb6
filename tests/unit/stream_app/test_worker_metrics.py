"""The worker's Prometheus metrics: the series an operator's alerts and checks read off ``/metrics``."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

from prometheus_client.parser import text_string_to_metric_families

from models.anomaly.monitor import DETECTORS, MEMBER_DETECTOR, AnomalyMonitor
from stream_app.agents.events import finish_batch, write_counted
from stream_app.metrics import Metrics
from stream_app.pipeline import Incoming, apply_batch_states, count_deliveries, deliveries_of, process_batch
from stream_app.records import REJECTION_CODES
from stream_app.scoring import HeuristicRecommender
from stream_app.sinks.memory import MemoryStore
from tests.unit.stream_app.test_alerts_before_state import fake_topics
from tests.unit.stream_app.test_pipeline import NOW, SETTINGS, HoldsEverything, msg, write

ROOT = Path(__file__).resolve().parents[3]
Scraped = dict[tuple[str, tuple], float]


def scraped(metrics: Metrics) -> Scraped:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(metrics.exposition().decode()) for s in family.samples}


def value(scrape: Scraped, name: str, **labels: str) -> float | None:
    return scrape.get((name, tuple(sorted(labels.items()))))


def test_every_known_label_value_is_scraped_at_zero_before_its_first_increment() -> None:
    """``increase(reco_samples_total{outcome="lost"}[5m]) > 0`` needs the series before the first loss: born
    at its first increment, it had no earlier sample, and the alert missed that loss."""
    scrape = scraped(Metrics())
    for outcome in ("in", "processed", "rejected", "duplicate", "quarantined"):
        assert value(scrape, "reco_events_total", outcome=outcome) == 0
    for outcome in ("sent", "dropped", "lost"):
        assert value(scrape, "reco_samples_total", outcome=outcome) == 0
    for reason in ("not_json", "bad_time", "wrong_partition"):
        assert value(scrape, "reco_dead_letters_total", reason=reason) == 0
    for detector in ("rate_burst", "shilling", "shilling_member", "robust_z"):
        assert value(scrape, "reco_alerts_total", detector=detector) == 0
        assert value(scrape, "reco_samples_released_before_alert_total", detector=detector) == 0


def test_the_zero_series_cover_every_rejection_code_and_detector_the_code_has() -> None:
    """A code or detector added without listing it would be born at its first increment again."""
    source = "".join(p.read_text() for p in (ROOT / "stream_app").rglob("*.py"))
    codes = set(re.findall(r'Rejection\("(\w+)"', source)) - {"bad_sample"}  # the trainer's, not an event's
    assert codes == set(REJECTION_CODES)
    monitor = AnomalyMonitor()
    names = {d.name for d in monitor.user_detectors} | {monitor.learned.name, monitor.shilling.name}
    assert names | {MEMBER_DETECTOR} == set(DETECTORS)


def test_quarantined_events_are_exported_as_the_store_counted_them() -> None:
    """processed - quarantined = samples sent + dropped + lost (README) is checkable from /metrics: the
    quarantined figure is exported, and a batch delivered again (its send failed after the store counted it)
    adds nothing to it, as in the store."""
    store, table, metrics = MemoryStore(), {}, Metrics()
    batch = [msg(k, "bot", f"i{k}", "click", ts=NOW - 100 + k) for k in range(5)]
    for _ in range(2):  # the first delivery's states are not written
        out = asyncio.run(process_batch(batch, table, HeuristicRecommender(store, SETTINGS), SETTINGS,
                                        monitor=HoldsEverything(), clock=lambda: NOW))
        write(store, batch, out)
        metrics.observe_batch(out.counters, [], len(batch), out.scoring_s)
    scrape, counted = scraped(metrics), asyncio.run(store.counters())
    assert value(scrape, "reco_events_total", outcome="quarantined") == counted["quarantined"] == 5
    assert value(scrape, "reco_events_total", outcome="processed") == counted["processed"] == 5
    assert value(scrape, "reco_events_total", outcome="duplicate") == 5



def stamped(offset: int, user: str) -> Incoming:
    """A view that entered the topic 10 ms before ``NOW``."""
    return dataclasses.replace(msg(offset, user, f"i{offset}"), timestamp_ms=int((NOW - 0.01) * 1000))


def deliver(batch: list[Incoming], table: dict, store: MemoryStore, metrics: Metrics, at: float,
            keep_states: bool) -> None:
    """The events agent's path: process, write the store (observing the latency), the worker's counters."""
    out = asyncio.run(process_batch(batch, table, HeuristicRecommender(store, SETTINGS), SETTINGS, clock=lambda: at))
    counted = asyncio.run(write_counted(store, metrics, batch, out, deliveries_of(batch, out), clock=lambda: at))
    count_deliveries(batch, out, counted)
    if keep_states:
        apply_batch_states(table, out)
    metrics.observe_batch(out.counters, [], len(batch), out.scoring_s)


def test_event_to_redis_latency_observes_each_processed_event_once() -> None:
    """A batch delivered again 120 s later (the worker stopped before its offsets were committed, after or
    before its states were written) was observed again, with the 120 s as latency: the histogram counted
    more events than were processed, its tail the length of the outage."""
    for keep_states in (True, False):
        store, table, metrics = MemoryStore(), {}, Metrics()
        batch = [stamped(k, f"u{k % 3}") for k in range(6)]
        deliver(batch, table, store, metrics, NOW, keep_states)
        deliver(batch, table, store, metrics, NOW + 120, keep_states)
        scrape = scraped(metrics)
        assert value(scrape, "reco_events_total", outcome="processed") == 6
        assert value(scrape, "reco_events_total", outcome="duplicate") == 6
        assert value(scrape, "reco_event_to_redis_seconds_count") == 6
        assert value(scrape, "reco_event_to_redis_seconds_bucket", le="0.0125") == 6  # 10 ms each, no 120 s


def test_event_to_redis_latency_is_taken_when_the_store_write_completes() -> None:
    """Not after the broker acknowledged the batch's outputs: an ack 5 s late is no Redis latency."""
    clock = [NOW]

    async def acked_late() -> None:
        clock[0] += 5.0

    async def send(*_args, **_kwargs):
        return acked_late()

    store, table, metrics = MemoryStore(), {}, Metrics()
    batch = [stamped(k, f"u{k % 3}") for k in range(6)]
    out = asyncio.run(process_batch(batch, table, HeuristicRecommender(store, SETTINGS), SETTINGS,
                                    clock=lambda: NOW))

    async def write_redis() -> None:
        await write_counted(store, metrics, batch, out, deliveries_of(batch, out), clock=lambda: clock[0])

    app = SimpleNamespace(producer=SimpleNamespace(send=send))
    asyncio.run(finish_batch(app, out, fake_topics(send, send=send), table, meanwhile=write_redis))
    assert clock[0] > NOW  # the acks came after the write
    scrape = scraped(metrics)
    assert value(scrape, "reco_event_to_redis_seconds_count") == 6
    assert value(scrape, "reco_event_to_redis_seconds_bucket", le="0.0125") == 6


def test_the_time_of_the_last_finished_batch_shows_a_stalled_worker() -> None:
    """``time() - reco_last_batch_timestamp_seconds`` grows while the events agent finishes no batch."""
    metrics = Metrics()
    assert value(scraped(metrics), "reco_last_batch_timestamp_seconds") == 0
    before = time.time()
    metrics.observe_batch(Counter(events_in=2, processed=2), [], 2, 0.01)
    assert before <= value(scraped(metrics), "reco_last_batch_timestamp_seconds") <= time.time()
