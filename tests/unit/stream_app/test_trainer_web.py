"""The trainer's metrics and health: what an operator reads off a running trainer."""

from __future__ import annotations

import asyncio
import shutil
import socket
import time

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from stream_app.embedded import free_port
from stream_app.trainer_web import TrainerMetrics, serve
from tests.unit.models.test_online_trainer import make_trainer, samples


def scraped(metrics: TrainerMetrics) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(metrics.exposition().decode()) for s in family.samples}


def test_counts_evaluations_and_lag_show_in_metrics_and_health(tmp_path) -> None:
    trainer = make_trainer(tmp_path, rollback_window=0)  # an evaluation every 50 learnt samples
    metrics = TrainerMetrics(trainer)
    before = scraped(metrics)
    assert before[("reco_trainer_samples_total", (("outcome", "learnt"),))] == 0
    assert ("reco_trainer_holdout_ndcg10", (("model", "candidate"),)) not in before  # nothing judged yet

    batch = samples(80)
    entries = trainer.on_samples(batch)
    metrics.observe_batch(read=81, rejected=1, seconds=0.2)
    assert [e["action"] for e in entries] == ["promote"]
    after = scraped(metrics)
    assert after[("reco_trainer_samples_total", (("outcome", "read"),))] == 81
    assert after[("reco_trainer_samples_total", (("outcome", "rejected"),))] == 1
    assert after[("reco_trainer_samples_total", (("outcome", "learnt"),))] == 70  # 10 held out
    assert after[("reco_trainer_candidates_total", (("result", "promoted"),))] == 1
    assert after[("reco_trainer_serving_info", (("version", "v0002"),))] == 1
    judged = trainer.evaluations[-1]
    assert after[("reco_trainer_holdout_ndcg10", (("model", "serving"),))] == judged["serving"]["ndcg@10"]
    assert after[("reco_trainer_batch_seconds_count", ())] == 1

    newest_s = max(s.ts_ms for s in batch[:70]) / 1000.0
    health = metrics.health(now=newest_s + 4.0)
    assert health["serving_version"] == "v0002" and health["counts"]["promoted"] == 1
    assert health["samples"] == {"read": 81, "rejected": 1} and health["newest_learnt_age_s"] == 4.0
    assert health["last_evaluation"]["promoted"] is True


def test_the_endpoints_answer_and_a_taken_port_fails_the_start(tmp_path) -> None:
    async def scenario():
        metrics = TrainerMetrics(make_trainer(tmp_path))
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            with pytest.raises(OSError):
                await serve(metrics, "127.0.0.1", taken.getsockname()[1])
        port = free_port()
        runner = await serve(metrics, "127.0.0.1", port)
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/health/") as resp:
                    health = await resp.json()
                async with session.get(f"http://127.0.0.1:{port}/metrics/") as resp:
                    exposition, kind = await resp.text(), resp.headers["Content-Type"]
                async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:  # Prometheus' default path
                    assert resp.status == 200 and await resp.text() == exposition
        finally:
            await runner.cleanup()
        return health, exposition, kind

    health, exposition, kind = asyncio.run(scenario())
    assert health["serving_version"] == "v0001" and health["last_evaluation"] is None
    assert 'reco_trainer_serving_info{version="v0001"} 1.0' in exposition and kind.startswith("text/plain")


def test_a_rollback_the_store_refuses_is_counted_not_taken_for_a_passed_probation(tmp_path) -> None:
    """The version before was pruned: the worse version serves on. Before, only the log said so: the
    rollbacks counter stayed 0 and on_probation dropped to 0, as after a probation it passed."""
    trainer = make_trainer(tmp_path, rollback_window=20, rollback_margin=-1.0)  # every verdict: roll back
    metrics = TrainerMetrics(trainer)
    assert scraped(metrics)[("reco_trainer_rollbacks_failed_total", ())] == 0
    trainer.on_samples(samples(80))
    shutil.rmtree(trainer.store.path("v0001"))  # pruned (or damaged) behind the trainer's back
    assert trainer.on_samples(samples(30, start=80)) == []
    after = scraped(metrics)
    assert trainer.store.current() == "v0002" and after[("reco_trainer_on_probation", ())] == 0
    assert after[("reco_trainer_rollbacks_failed_total", ())] == 1
    assert after[("reco_trainer_rollbacks_total", ())] == 0
    assert metrics.health()["counts"]["rollback_failed"] == 1


def test_the_times_of_the_last_evaluation_and_promotion_show_a_stalled_trainer(tmp_path) -> None:
    trainer = make_trainer(tmp_path, rollback_window=0)  # an evaluation every 50 learnt samples
    metrics = TrainerMetrics(trainer)
    before = scraped(metrics)
    assert ("reco_trainer_last_evaluation_timestamp_seconds", ()) not in before  # none yet
    assert ("reco_trainer_last_promotion_timestamp_seconds", ()) not in before
    started = time.time()
    entries = trainer.on_samples(samples(80))
    after = scraped(metrics)
    assert [e["action"] for e in entries] == ["promote"]
    assert after[("reco_trainer_last_promotion_timestamp_seconds", ())] == entries[0]["ts"]  # the store's log
    assert started <= after[("reco_trainer_last_evaluation_timestamp_seconds", ())] <= time.time()
    assert metrics.health()["last_promotion_at"] == entries[0]["ts"]
