"""A restarted trainer learns again what it had learnt but not promoted: it resumes at the promoted offsets."""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import replace

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from models.data.eventlog import read_events
from models.model_store import ModelStore
from models.online.samples import TrainingSample, log_samples
from stream_app.worker_process import WorkerProcess
from tests.integration.conftest import SAMPLE, consume
from tests.integration.test_online_loop import wait_until

pytestmark = pytest.mark.integration


async def send_samples(bootstrap: str, topic: str, samples: list[TrainingSample]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for s in samples:
            await producer.send(topic, orjson.dumps(s.to_dict()), key=s.user_id.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def committed_total(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    """The group's committed offsets on ``topic``, added up (a consumer that reads them without joining)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return sum([await consumer.committed(TopicPartition(topic, p)) or 0 for p in range(partitions)])
    finally:
        await consumer.stop()


def promotions(store: ModelStore) -> list[dict]:
    return [e for e in store.log() if e["action"] == "promote" and e.get("previous")]


def covered(entry: dict) -> int:
    """Samples before a version's offsets: all partitions' offsets added up (the topic starts at 0)."""
    return sum(entry["sample_offsets"].values())


def test_restarted_trainer_learns_again_what_it_had_not_promoted(stack, settings, checkpoint, tmp_path):
    settings = replace(settings, model_path=str(checkpoint), model_store=str(tmp_path / "model-store"),
                       trainer_promote_every=300, trainer_eval_slice=100, trainer_promote_every_s=1e9,
                       trainer_promote_tolerance=1.0,  # the mechanics, not the gain
                       trainer_rollback_window=0, log_level="info")
    store = ModelStore(settings.model_store)
    samples = log_samples(read_events(SAMPLE / "taobao_user_behavior.csv", "taobao"), model_version="v0001")
    first, second = samples[:1000], samples[1000:]
    argv = [sys.executable, "-m", "stream_app", "trainer"]
    topic = settings.training_samples_topic

    async def scenario() -> tuple[dict, int, dict, str]:
        trainer = WorkerProcess.start(settings, tmp_path / "trainer-1.log", argv)
        try:
            await send_samples(stack.bootstrap, topic, first)
            # 1,000 samples, 100 held out: promotions at every 300 learnt, the last one covering at most 900
            await wait_until(lambda: promotions(store) and covered(promotions(store)[-1]) >= 600,
                             "promotions from the first samples", [trainer])
            await asyncio.sleep(2.0)  # the rest is read but not promoted
        finally:
            assert trainer.stop() == 0
        read = await committed_total(stack.bootstrap, f"{settings.app_id}-trainer", topic, settings.partitions)
        before = promotions(store)[-1]
        assert store.current() == before["version"]
        restarted = WorkerProcess.start(settings, tmp_path / "trainer-2.log", argv)
        try:
            await send_samples(stack.bootstrap, topic, second)
            after = await wait_until(
                lambda: next((e for e in promotions(store) if e["previous"] == before["version"]), None),
                "a promotion by the restarted trainer", [restarted])
        finally:
            restarted.stop()
        announced = [orjson.loads(m.value)["version"]
                     for m in await consume(stack.bootstrap, settings.model_updates_topic, 10**6, timeout_s=3.0)]
        return before, read, after, restarted.log(), announced

    before, read, after, log, announced = asyncio.run(scenario())
    # at its promotion, and again by the restarted trainer at its start: an announcement lost between the store
    # and the topic (a trainer stopped in between) would reach the workers then
    assert announced.count(before["version"]) == 2
    # the stopped trainer had read (and committed) every sample, but its last version holds fewer: the newest
    # were held out or learnt since
    assert read == len(first) and covered(before) < len(first)
    assert f"trainer reads samples from {before['version']}'s offsets" in log
    meta = json.loads((ModelStore(settings.model_store).path(after["version"]) / "meta.json").read_text())
    # the restarted trainer learnt exactly the samples between the two versions' offsets: none skipped, none twice
    assert meta["learnt_samples"] == covered(after) - covered(before)
    assert covered(after) > len(first)
