"""Redis goes away under a running worker: a short restart is ridden out, a longer outage stops the worker
with the cause, and either way no event is lost or counted twice."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from models.data.eventlog import read_events
from stream_app.embedded import Service, start_redis
from stream_app.replay.producer import order_for_replay, replay
from stream_app.settings import Settings
from stream_app.worker_process import WorkerProcess, wait_for_events
from tests.integration.conftest import SAMPLE, assert_every_event_applied_once, halves_by_user, redis_store

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def exit_code(process, timeout_s: float) -> int | None:
    """The process's exit code once it has exited, or None if it still runs after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while process.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    return process.poll()


def http_status(url: str) -> int:
    """The status a GET of ``url`` answers."""
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


class HalfThenRedisDown:
    """The real Taobao sample against this test's own Redis (the session's one stays up): a worker takes
    each user's first half, then Redis shuts down, saving its data as a restarted production Redis
    would have it; ``second`` is what comes after."""

    def __init__(self, stack, settings: Settings, start_worker: Callable[[Settings], WorkerProcess],
                 workdir: Path) -> None:
        self.events = order_for_replay(read_events(SAMPLE / "taobao_user_behavior.csv", "taobao"))
        self.first, self.second, self.per_user = halves_by_user(self.events)
        self.redis_dir = workdir / "own-redis"
        self.redis = start_redis(self.redis_dir)
        self.settings = replace(settings, redis_url=f"redis://127.0.0.1:{self.redis.port}/0", log_level="info")
        self.replay_kw = dict(bootstrap=stack.bootstrap, topic=self.settings.events_topic, progress=False)
        self.start_worker = start_worker

    async def first_half_then_shutdown(self) -> WorkerProcess:
        worker = self.start_worker(self.settings)
        async with redis_store(self.settings) as store:
            await replay(self.first, **self.replay_kw)
            await wait_for_events(store, len(self.first), worker, counted=("processed",))
        once = aioredis.Redis.from_url(self.settings.redis_url)  # no retries: SHUTDOWN drops the connection
        try:
            await once.shutdown(save=True)
        finally:
            await once.aclose()
        return worker

    def restart_redis(self) -> Service:
        """Redis again on its port, with the counters and offsets it saved."""
        return start_redis(self.redis_dir, port=self.redis.port)

    async def accounts(self, worker: WorkerProcess) -> tuple[dict, dict]:
        """The counters and every user's record once ``worker`` has counted every event."""
        async with redis_store(self.settings) as store:
            await wait_for_events(store, len(self.events), worker, counted=("processed",))
            await asyncio.sleep(1.5)  # re-deliveries are counted, then settle
            return await store.counters(), {u: await store.recommendations(u) for u in self.per_user}


def test_a_worker_that_loses_redis_stops_and_its_restart_loses_no_event(stack, settings, start_worker, tmp_path):
    """Redis stays down past the client's retries while the second half arrives. A worker that carried
    on without its store would skip the batches it could not finish; this one must stop (exit 1, so
    docker-compose restarts it) and, restarted with Redis back, account for every event once."""
    case = HalfThenRedisDown(stack, settings, start_worker, tmp_path)

    async def scenario():
        worker = await case.first_half_then_shutdown()
        await replay(case.second, **case.replay_kw)
        code = await exit_code(worker.process, 90.0)
        stopped_log = worker.log()
        assert code not in (None, 0), f"the worker went on without Redis (exit {code}):\n{stopped_log[-3000:]}"
        assert "the worker stops" in stopped_log and "ConnectionError" in stopped_log, stopped_log[-3000:]

        back = case.restart_redis()
        try:
            worker = start_worker(case.settings)
            counters, records = await case.accounts(worker)
            worker.stop()
        finally:
            back.stop()
        return counters, records, worker.log()

    try:
        counters, records, log = asyncio.run(scenario())
    finally:
        case.redis.stop()
    assert_every_event_applied_once(counters, records, case.per_user, log)


def test_a_worker_rides_out_a_short_redis_restart(stack, settings, start_worker, tmp_path):
    """Redis is down for 2 s while the second half arrives, then back with what it saved: the client
    re-sends the worker's writes (``RECO_REDIS_RETRIES``), the worker keeps running, and every event is
    counted once (a write whose reply was lost is not counted again). Meanwhile a page asked for answers
    503 after the read timeout (1 s), not 500 after the write path's retries."""
    case = HalfThenRedisDown(stack, settings, start_worker, tmp_path)
    back: list[Service] = []

    async def scenario():
        worker = await case.first_half_then_shutdown()
        sending = asyncio.create_task(replay(case.second, **case.replay_kw))
        page = asyncio.create_task(asyncio.to_thread(
            http_status, f"http://127.0.0.1:{case.settings.web_port}/recommendations/{case.first[0].user_id}/"))
        await asyncio.sleep(2.0)
        back.append(await asyncio.to_thread(case.restart_redis))
        await sending
        assert await page == 503
        counters, records = await case.accounts(worker)
        assert worker.process.poll() is None, worker.log()[-3000:]
        return counters, records, worker.log()

    try:
        counters, records, log = asyncio.run(scenario())
    finally:
        for service in back + [case.redis]:
            service.stop()
    assert "the worker stops" not in log, log[-3000:]
    assert_every_event_applied_once(counters, records, case.per_user, log)
