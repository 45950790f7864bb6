"""The worker's Prometheus metrics: the series an operator's alerts and checks read off ``/metrics``."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from models.anomaly.monitor import DETECTORS, MEMBER_DETECTOR, AnomalyMonitor
from stream_app.metrics import Metrics
from stream_app.pipeline import process_batch
from stream_app.records import REJECTION_CODES
from stream_app.scoring import HeuristicRecommender
from stream_app.sinks.memory import MemoryStore
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
