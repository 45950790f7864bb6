"""Redis goes away under a running worker: the worker stops with the cause, and its restart loses nothing."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest

from models.data.eventlog import read_events
from stream_app.embedded import start_redis
from stream_app.replay.producer import order_for_replay, replay
from stream_app.worker_process import wait_for_events
from tests.integration.conftest import SAMPLE, assert_every_event_applied_once, halves_by_user, redis_store

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def exit_code(process, timeout_s: float) -> int | None:
    """The process's exit code once it has exited, or None if it still runs after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while process.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    return process.poll()


def test_a_worker_that_loses_redis_stops_and_its_restart_loses_no_event(stack, settings, start_worker, tmp_path):
    """The real Taobao sample: each user's first half, then Redis shuts down (saving its data, as a
    restarted production Redis would have it), then the second half arrives. A worker that carried
    on without its store would skip the batches it could not finish; this one must stop (exit 1,
    so docker-compose restarts it) and, restarted with Redis back, account for every event once."""
    events = order_for_replay(read_events(SAMPLE / "taobao_user_behavior.csv", "taobao"))
    first, second, per_user = halves_by_user(events)
    redis_dir = tmp_path / "own-redis"
    redis = start_redis(redis_dir)  # this test's own Redis: the session's one stays up
    own = replace(settings, redis_url=f"redis://127.0.0.1:{redis.port}/0", log_level="info")
    kw = dict(bootstrap=stack.bootstrap, topic=own.events_topic, progress=False)

    async def scenario():
        worker = start_worker(own)
        async with redis_store(own) as store:
            await replay(first, **kw)
            await wait_for_events(store, len(first), worker, counted=("processed",))
            await store.client.shutdown(save=True)
        await replay(second, **kw)
        code = await exit_code(worker.process, 90.0)
        stopped_log = worker.log()
        assert code not in (None, 0), f"the worker went on without Redis (exit {code}):\n{stopped_log[-3000:]}"
        assert "the worker stops" in stopped_log and "ConnectionError" in stopped_log, stopped_log[-3000:]

        back = start_redis(redis_dir, port=redis.port)  # loads the counters and offsets it saved
        try:
            worker = start_worker(own)
            async with redis_store(own) as store:
                await wait_for_events(store, len(events), worker, counted=("processed",))
                await asyncio.sleep(1.5)  # re-deliveries are counted, then settle
                counters = await store.counters()
                records = {u: await store.recommendations(u) for u in per_user}
            worker.stop()
        finally:
            back.stop()
        return counters, records, worker.log()

    try:
        counters, records, log = asyncio.run(scenario())
    finally:
        redis.stop()
    assert_every_event_applied_once(counters, records, per_user, log)
