"""Stop the worker mid-stream and start it again: user state comes back from its changelog."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from models.data.eventlog import read_events
from stream_app.replay.producer import order_for_replay, replay
from stream_app.worker_process import wait_for_events
from tests.integration.conftest import SAMPLE, assert_every_event_applied_once, halves_by_user, redis_store

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def settings(settings):
    return replace(settings, log_level="info")  # the restarted worker's recovery log, shown on failure


@pytest.mark.parametrize(("stop", "table_store"), [("sigterm", "memory://"), ("sigkill", "memory://"),
                                                   ("sigterm", "rocksdb://"), ("sigkill", "rocksdb://")])
def test_user_state_survives_a_worker_restart(stack, settings, start_worker, stop, table_store):
    # memory://: the restarted worker rebuilds its tables from their changelogs; rocksdb:// (production's
    # setting): after a clean stop it reopens its local RocksDB and reads only the changelogs' tail, after a
    # crash it deletes it and rebuilds too (``local_state``: the local copy may hold states the changelog lacks)
    settings = replace(settings, store=table_store)
    events = order_for_replay(read_events(SAMPLE / "taobao_user_behavior.csv", "taobao"))
    # each user's first half before the stop, second half after: every user's state
    # must be recovered and then extended, so a stale recovery shows in every list
    first, second, per_user = halves_by_user(events)

    async def scenario():
        async with redis_store(settings) as store:
            kw = dict(bootstrap=stack.bootstrap, topic=settings.events_topic, progress=False)
            worker = start_worker(settings)
            await replay(first, **kw)
            await wait_for_events(store, len(first), worker, counted=("processed",))
            if stop == "sigterm":
                assert worker.stop() == 0
            else:
                worker.kill()
            await replay(second, **kw)  # arrives while no worker runs
            worker = start_worker(settings)
            restarted = worker
            counters = await wait_for_events(store, len(events), worker, counted=("processed",))
            await asyncio.sleep(1.5)  # re-deliveries after a crash are counted, then settle
            counters = await store.counters()
            records = {u: await store.recommendations(u) for u in per_user}
            return counters, records, restarted.log()

    counters, records, log = asyncio.run(scenario())
    # no event lost, none applied twice. Faust is at-least-once: after a crash (and now and
    # then after a graceful stop whose last commit had not landed) events are re-delivered;
    # the state's source offset recognises them and they are counted as duplicates.
    # None arrived out of order: every partition carried on from its last counted offset. Every
    # user's state holds all of their events: the part before the restart was recovered.
    assert_every_event_applied_once(counters, records, per_user, log)
    if table_store == "rocksdb://":
        assert ("did not stop cleanly: local tables" in log) == (stop == "sigkill"), log[-3000:]
    # (tansu reports changelog end offsets too low when the last batch holds several records,
    # which would end Faust's recovery early; whether that happens here depends on producer
    # batching, so the work-around itself is tested deterministically in test_tansu_offsets.py)
