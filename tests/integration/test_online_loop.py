"""Learning while serving: samples -> trainer -> promoted version -> workers swap mid-stream; refusals; rollback."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace

import pytest
from aiokafka import AIOKafkaProducer

from models.data.eventlog import read_events
from models.model_store import ModelStore
from stream_app.embedded import child_env
from stream_app.model_updates import announce
from stream_app.replay.producer import order_for_replay, replay
from stream_app.worker_process import WorkerProcess, wait_for_events
from tests.integration.conftest import SAMPLE, consume, redis_store

pytestmark = pytest.mark.integration


def get(port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
        return resp.read()


def health(settings) -> dict:
    return json.loads(get(settings.web_port, "/health/"))


async def wait_until(check, what: str, procs, timeout_s: float = 90.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for p in procs:
            p.check()
        result = check()
        if result:
            return result
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}\n" + "\n".join(p.log()[-2000:] for p in procs))


def promoted(store: ModelStore) -> set[str]:
    """Every version ever promoted (the trainer archives a long log: its history, not just its log)."""
    return {e["version"] for e in store.history() if e["action"] == "promote"}


def test_trainer_promotes_and_worker_swaps_mid_stream(stack, settings, start_worker, checkpoint, tmp_path):
    store_dir = tmp_path / "model-store"
    settings = replace(settings, model_path=str(checkpoint), model_store=str(store_dir),
                       trainer_promote_every=400, trainer_eval_slice=100, trainer_promote_every_s=1e9,
                       trainer_promote_tolerance=1.0,  # this test checks the mechanics, not the gain
                       trainer_rollback_window=0, model_store_keep=3, model_store_log_lines=7,
                       log_level="info")
    store = ModelStore(store_dir)
    events = order_for_replay(read_events(SAMPLE / "taobao_user_behavior.csv", "taobao"))
    first, second = events[: len(events) // 2], events[len(events) // 2:]
    trainer = WorkerProcess.start(settings, tmp_path / "trainer.log", [sys.executable, "-m", "stream_app", "trainer"])
    try:
        asyncio.run(_scenario(stack, settings, start_worker, store, trainer, first, second, tmp_path))
    finally:
        trainer.stop()


async def _scenario(stack, settings, start_worker, store, trainer, first, second, tmp_path):
    await wait_until(lambda: store.current(), "the base version in the store", [trainer])
    base = store.current()
    worker = start_worker(settings)
    async with redis_store(settings) as redis:
        await replay(first, bootstrap=stack.bootstrap, topic=settings.events_topic, progress=False)
        await wait_for_events(redis, len(first), worker)
        await wait_until(lambda: store.current() != base and store.current(), "a promotion", [trainer, worker])
        # events keep flowing while the worker swaps
        sending = asyncio.create_task(replay(second, bootstrap=stack.bootstrap, topic=settings.events_topic,
                                             progress=False))
        await wait_until(lambda: health(settings)["model_version"] != base, "the worker's swap", [worker])
        await sending
        counters = await wait_for_events(redis, len(first) + len(second), worker)
        assert counters["events_in"] == counters["processed"] == len(first) + len(second)
        late_user = second[-1].user_id
        late_version = (await redis.recommendations(late_user))["model_version"]
        assert late_version != base and late_version in promoted(store)  # (the trainer may be further on)
        swap = health(settings)["last_swap"]
        assert swap["version"] in promoted(store) and 0 <= swap["swap_lag_s"] < 60

        samples = await consume(stack.bootstrap, settings.training_samples_topic, len(first) + len(second))
        assert len(samples) == len(first) + len(second)  # one sample per processed event, none twice
        served_by = {json.loads(m.value)["model_version"] for m in samples}
        # versions changed mid-stream, and samples say which served: the base, then promoted ones (a
        # worker that finds two promotions staged between batches serves only the newer one, so the
        # first promotion seen here need not have served)
        assert base in served_by and served_by - {base} and served_by <= promoted(store), served_by

        # an unreadable sample goes, unchanged, to the dead-letter topic with its reason
        producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(settings.training_samples_topic, b'{"user_id": "u1"}', key=b"u1")
        finally:
            await producer.stop()
        dead = await consume(stack.bootstrap, settings.dead_letter_topic, 1)
        assert [d.value for d in dead] == [b'{"user_id": "u1"}']
        headers = dict(dead[0].headers)
        assert headers["dlq-reason"] == b"bad_sample" and headers["source-topic"] == settings.training_samples_topic.encode()

        # the trainer's own endpoints: every sample read, the bad one rejected, its promotions counted
        read_all = len(first) + len(second) + 1
        trained = await wait_until(
            lambda: (h := json.loads(get(settings.trainer_web_port, "/health/")))["samples"]["read"] == read_all and h,
            "the trainer's health to count every sample", [trainer])
        assert trained["samples"]["rejected"] == 1 and trained["counts"]["promoted"] >= 1
        assert trained["serving_version"] in promoted(store) and trained["last_evaluation"] is not None
        exposition = get(settings.trainer_web_port, "/metrics/").decode()
        assert f'reco_trainer_samples_total{{outcome="read"}} {float(read_all)}' in exposition, exposition

        trainer.stop()  # from here on the store changes only by this test's hand
        serving = store.current()
        # the trainer pruned the store after each promotion: the serving version and two to roll back to
        stack = store.serving_stack()
        assert sorted(p.name for p in store.versions_dir.iterdir()) == stack[-3:], stack
        # ...and archived its log whenever it grew past 7 lines (the archives and the log hold every promotion)
        assert len(promoted(store)) > 5 and store.archives() and len(store.log()) <= 7, store.log()
        await wait_until(lambda: health(settings)["model_version"] == serving, "the latest version", [worker])

        # a corrupt checkpoint is refused; the serving version stays
        bad = store.versions_dir / "v0099"
        shutil.copytree(store.path(serving), bad)
        (bad / "weights.safetensors").write_bytes(b"not weights")
        await announce(settings, store.promote("v0099"))  # as the trainer does: the store's log first
        await wait_until(lambda: "refused" in worker.log(), "the refusal in the worker log", [worker])
        assert health(settings)["model_version"] == serving

        # rollback is one command: off the corrupt version (back to the one the worker kept serving),
        # then once more, to the version before that, which the worker swaps to
        env = child_env(settings.to_env())

        def rollback() -> str:
            out = subprocess.run([sys.executable, "-m", "stream_app", "rollback"], env=env, capture_output=True,
                                 text=True, timeout=60, cwd=os.getcwd())
            assert out.returncode == 0, out.stderr
            return out.stdout

        assert f"rolled back from v0099 to {serving}" in rollback()
        said = rollback()
        previous = store.current()
        assert f"rolled back from {serving} to {previous}" in said
        assert previous != serving
        await wait_until(lambda: health(settings)["model_version"] == previous, "the rollback swap", [worker])
