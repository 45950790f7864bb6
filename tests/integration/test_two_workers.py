"""Two workers in one consumer group: they share the stream, and one's users move to the other when it stops."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import replace

import pytest

from models.data.eventlog import read_events
from stream_app.embedded import free_port
from stream_app.replay.producer import order_for_replay, replay
from stream_app.worker_process import processed_by, wait_for_events
from tests.integration.conftest import SAMPLE, redis_store

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def settings(settings):
    return replace(settings, log_level="info")  # recovery and rebalance logs, shown on failure


def test_two_workers_share_the_stream_and_hand_over_users(stack, settings, start_worker, tmp_path):
    events = order_for_replay(read_events(SAMPLE / "taobao_user_behavior.csv", "taobao"))
    by_user = defaultdict(list)
    for e in events:
        by_user[e.user_id].append(e)
    # each user's first half while both workers run, the second half after one has stopped:
    # the stopped worker's users must carry on from their recovered state on the other
    first = order_for_replay([e for evs in by_user.values() for e in evs[: len(evs) // 2]])
    second = order_for_replay([e for evs in by_user.values() for e in evs[len(evs) // 2:]])
    per_user = {u: len(evs) for u, evs in by_user.items()}
    other = replace(settings, web_port=free_port(), data_dir=str(tmp_path / "worker-1-data"))

    async def scenario():
        async with redis_store(settings) as store:
            kw = dict(bootstrap=stack.bootstrap, topic=settings.events_topic, progress=False)
            stays, leaves = start_worker(), start_worker(other)
            await asyncio.sleep(6.0)  # both join the group and split the partitions before events arrive
            await replay(first, **kw)
            await wait_for_events(store, len(first), stays, counted=("processed",))
            shares = processed_by(settings.web_port), processed_by(other.web_port)
            assert leaves.stop() == 0
            await replay(second, **kw)
            counters = await wait_for_events(store, len(events), stays, counted=("processed",))
            await asyncio.sleep(1.5)  # re-deliveries after the hand-over are counted, then settle
            counters = await store.counters()
            records = {u: await store.recommendations(u) for u in per_user}
            return shares, counters, records, stays.log(), leaves.log()

    shares, counters, records, log, left_log = asyncio.run(scenario())
    # both workers took part: Kafka split the partitions (and so the users) between them
    assert all(share > 0 for share in shares), (shares, left_log[-3000:])
    assert sum(shares) == len(first)
    # nothing lost, nothing applied twice, across the hand-over
    assert counters["processed"] == len(events), log[-4000:]
    assert counters["rejected"] == 0
    assert counters["events_in"] == counters["processed"] + counters["duplicates"]
    assert "skipped offsets" not in log
    # the departed worker's users carried on from their state, recovered from its changelog
    stale = {u: (records[u]["events_seen"], n) for u, n in per_user.items() if records[u]["events_seen"] != n}
    assert stale == {}
