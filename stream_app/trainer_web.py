"""The trainer process's ``/metrics/`` (Prometheus) and ``/health/`` (JSON), served by aiohttp.

The worker's endpoints live on Faust's web server; the trainer is a plain
aiokafka process, so it runs a small aiohttp server (aiohttp comes with Faust)
on ``RECO_TRAINER_WEB_PORT``. The numbers are read from the trainer when a
scrape asks for them (a ``prometheus_client`` collector), so the learning
thread does nothing extra per batch.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from models.online.trainer import OnlineTrainer


class TrainerMetrics:
    """What the process counts itself (samples read and dead-lettered, time per batch), and the trainer's own
    counts and latest evaluation, read at each scrape."""

    def __init__(self, trainer: OnlineTrainer, registry: CollectorRegistry | None = None) -> None:
        self.trainer = trainer
        self.read = {"read": 0, "rejected": 0}  # samples fetched from the topic; unreadable, dead-lettered
        self.registry = registry or CollectorRegistry()
        self.batch_seconds = Histogram(
            "reco_trainer_batch_seconds", "Time the trainer took over one batch of samples (learn, evaluate, "
            "promote)", registry=self.registry, buckets=(0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0))
        self.registry.register(_Collector(self))

    def observe_batch(self, read: int, rejected: int, seconds: float) -> None:
        self.read["read"] += read
        self.read["rejected"] += rejected
        self.batch_seconds.observe(seconds)

    def health(self, now: float | None = None) -> dict[str, Any]:
        """The trainer at a glance: what it learns from, its counts, its latest evaluation and promotion."""
        t = self.trainer
        last = t.evaluations[-1] if t.evaluations else None
        return {"status": "ok", "serving_version": t.serving_version, "on_probation": t.probation is not None,
                "samples": dict(self.read), "counts": dict(t.counts), "newest_learnt_age_s": self.behind_s(now),
                "last_evaluation": last, "last_promotion_at": t.promoted_at}

    def behind_s(self, now: float | None = None) -> float | None:
        """From the newest learnt sample entering the topic to ``now``; None before anything was learnt."""
        newest = self.trainer.newest_learnt_ms
        return None if newest is None else max(0.0, (time.time() if now is None else now) - newest / 1000.0)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _Collector:
    """``TrainerMetrics``' numbers as Prometheus metric families, at scrape time."""

    def __init__(self, metrics: TrainerMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m, t = self.metrics, self.metrics.trainer
        counts = dict(t.counts)
        samples = CounterMetricFamily("reco_trainer_samples", "Training samples by outcome: read from the topic, "
                                      "rejected (dead-lettered), redelivered (dropped: a rebalance delivered them "
                                      "again), learnt (again after a rollback)", labels=["outcome"])
        for outcome, n in (("read", m.read["read"]), ("rejected", m.read["rejected"]),
                           ("redelivered", counts["samples_redelivered"]), ("learnt", counts["samples_learnt"])):
            samples.add_metric([outcome], n)
        yield samples
        judged = CounterMetricFamily("reco_trainer_candidates", "Candidates judged on the held-out samples, by "
                                     "result", labels=["result"])
        judged.add_metric(["promoted"], counts["promoted"])
        judged.add_metric(["not_promoted"], counts["not_promoted"])
        yield judged
        yield CounterMetricFamily("reco_trainer_rollbacks", "Automatic rollbacks (a promoted version did worse on "
                                  "fresh samples than the one before)", value=counts["rolled_back"])
        yield CounterMetricFamily("reco_trainer_rollbacks_failed", "Automatic rollbacks due that the model store "
                                  "refused (the version before was pruned or is damaged): the worse version "
                                  "serves on", value=counts["rollback_failed"])
        serving = GaugeMetricFamily("reco_trainer_serving_info", "The version the trainer learns from (value 1)",
                                    labels=["version"])
        serving.add_metric([t.serving_version or ""], 1)
        yield serving
        yield GaugeMetricFamily("reco_trainer_on_probation", "1 while a promoted version is judged against the "
                                "one before it", value=float(t.probation is not None))
        last = t.evaluations[-1] if t.evaluations else None
        if last is not None:
            ndcg = GaugeMetricFamily("reco_trainer_holdout_ndcg10", "NDCG@10 on the held-out samples at the "
                                     "latest evaluation", labels=["model"])
            ndcg.add_metric(["candidate"], last["candidate"]["ndcg@10"])
            ndcg.add_metric(["serving"], last["serving"]["ndcg@10"])
            yield ndcg
            yield GaugeMetricFamily("reco_trainer_last_evaluation_timestamp_seconds", "Unix time of the latest "
                                    "evaluation of a candidate", value=last["at"])
        if t.promoted_at is not None:
            yield GaugeMetricFamily("reco_trainer_last_promotion_timestamp_seconds", "Unix time of this "
                                    "trainer's latest promotion (the model store's log entry)", value=t.promoted_at)
        behind = m.behind_s()
        if behind is not None:
            yield GaugeMetricFamily("reco_trainer_newest_learnt_age_seconds", "From the newest learnt sample "
                                    "entering the topic to now: how far behind the stream the trainer is",
                                    value=behind)


async def serve(metrics: TrainerMetrics, host: str, port: int) -> web.AppRunner:
    """Start ``GET /metrics/`` (also ``/metrics``, where Prometheus scrapes by default) and ``GET /health/`` on
    ``host:port``; ``await runner.cleanup()`` stops them."""

    async def metrics_page(request: web.Request) -> web.Response:
        return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def health_page(request: web.Request) -> web.Response:
        return web.json_response(metrics.health())

    app = web.Application()
    app.router.add_get("/metrics/", metrics_page)
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/health/", health_page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:  # the port is taken, say: the trainer stops with the error, nothing left behind
        await runner.cleanup()
        raise
    return runner
