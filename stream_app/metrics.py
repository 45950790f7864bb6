"""Prometheus metrics of one worker (``prometheus_client``, one registry per app)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from models.anomaly.monitor import DETECTORS
from stream_app.records import REJECTION_CODES
from stream_app.sample_outlet import SAMPLE_OUTCOMES

LATENCY_BUCKETS = (0.002, 0.004, 0.006, 0.008, 0.01, 0.0125, 0.015, 0.0175, 0.02, 0.025, 0.03, 0.04, 0.05,
                   0.06, 0.075, 0.1, 0.125, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0)
EVENT_OUTCOMES = (("events_in", "in"), ("processed", "processed"), ("rejected", "rejected"),
                  ("duplicates", "duplicate"), ("quarantined", "quarantined"))  # (batch counter, outcome)


class Metrics:
    """Counters and histograms the agents update once per micro-batch."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter("reco_events", "Events by outcome (in = processed + rejected + duplicate; "
                              "quarantined: the processed ones kept out of learning)", ["outcome"], registry=r)
        self.dead_letters = Counter("reco_dead_letters", "Rejected events by reason", ["reason"], registry=r)
        self.batch_size = Histogram("reco_batch_size", "Events per micro-batch", registry=r,
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024))
        self.last_batch = Gauge("reco_last_batch_timestamp_seconds", "Unix time the events agent last "
                                "finished a micro-batch (0: none yet)", registry=r)
        self.scoring_seconds = Histogram("reco_scoring_seconds", "Time to score one micro-batch",
                                         registry=r, buckets=LATENCY_BUCKETS)
        self.event_to_redis_seconds = Histogram(
            "reco_event_to_redis_seconds", "From an event's Kafka timestamp to its user's list in Redis (each "
            "processed event once: not again when re-delivered)",
            registry=r, buckets=LATENCY_BUCKETS)
        self.model_version = Gauge("reco_model_info", "The serving model version (value 1)",
                                   ["version"], registry=r)
        self.model_swaps = Counter("reco_model_swaps", "Hot swaps to an announced model version", registry=r)
        self.model_refused = Counter("reco_model_refused", "Announced models refused (corrupt, missing, "
                                     "cannot score); the serving version stayed", registry=r)
        self.model_swap_lag_seconds = Gauge(
            "reco_model_swap_lag_seconds", "From the newest training sample in the serving weights entering "
            "the samples topic to those weights serving", registry=r)
        self.alerts = Counter("reco_alerts", "Anomaly alerts published, by detector", ["detector"], registry=r)
        self.samples = Counter("reco_samples", "Training samples by outcome: sent (the broker has them), dropped "
                               "(quarantined while held), lost (not sent; the trainer never sees them)",
                               ["outcome"], registry=r)
        self.samples_before_alert = Counter(
            "reco_samples_released_before_alert", "Training samples already released when an alert covering "
            "their event reached this worker (the holdback missed them), by detector", ["detector"], registry=r)
        self._start_at_zero()

    def _start_at_zero(self) -> None:
        """Every known label value's series, at 0: a series born at its first increment hides that increment
        from ``increase()`` (no earlier sample to compare with), so an alert on the first loss never fired."""
        for counter, values in ((self.events, [outcome for _, outcome in EVENT_OUTCOMES]),
                                (self.dead_letters, REJECTION_CODES),
                                (self.samples, [name.removeprefix("samples_") for name in SAMPLE_OUTCOMES]),
                                (self.alerts, DETECTORS), (self.samples_before_alert, DETECTORS)):
            for value in values:
                counter.labels(value)

    def observe_swap(self, entry: Mapping[str, Any]) -> None:
        """A hot swap happened between two micro-batches (``entry``: ``ModelSlot.swap``'s result)."""
        self.model_swaps.inc()
        if entry.get("swap_lag_s") is not None:
            self.model_swap_lag_seconds.set(entry["swap_lag_s"])
        self.set_model_version(str(entry["version"]))

    def observe_batch(self, counters: Mapping[str, int], reasons: Iterable[str], size: int,
                      scoring_s: float) -> None:
        """A handled batch; ``counters`` as ``count_deliveries`` leaves them (what the store counted)."""
        for name, outcome in EVENT_OUTCOMES:
            if counters.get(name):
                self.events.labels(outcome).inc(counters[name])
        for reason in reasons:
            self.dead_letters.labels(reason).inc()
        self.batch_size.observe(size)
        self.scoring_seconds.observe(scoring_s)
        self.last_batch.set_to_current_time()

    def observe_latency(self, kafka_timestamps_ms: Iterable[int | None], now: float | None = None) -> None:
        now = time.time() if now is None else now
        for ts in kafka_timestamps_ms:
            if ts:
                self.event_to_redis_seconds.observe(max(0.0, now - ts / 1000.0))

    def set_model_version(self, version: str) -> None:
        self.model_version.clear()
        self.model_version.labels(version).set(1)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
