"""Two workers in one consumer group: they share the stream, and one's users move to the other when it stops."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import replace

import orjson
import pytest

from models.data.eventlog import read_events
from models.data.events import Event
from stream_app.embedded import free_port
from stream_app.replay.producer import order_for_replay, replay
from stream_app.touches import partition_of
from stream_app.worker_process import processed_by, wait_for_events
from tests.integration.conftest import SAMPLE, assert_every_event_applied_once, consume, halves_by_user, redis_store

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def settings(settings):
    return replace(settings, log_level="info")  # recovery and rebalance logs, shown on failure


async def shares_of(ports: tuple[int, ...], total: int, timeout_s: float = 5.0) -> tuple[float, ...]:
    """Each worker's own processed count, once they add up to ``total`` (or after ``timeout_s``): a worker
    adds a batch to its metrics after the broker acknowledged the batch's outputs, which can come after
    the batch's Redis write, so the store can show every event a moment before the workers do."""
    deadline = time.monotonic() + timeout_s
    while sum(shares := tuple(processed_by(port) for port in ports)) < total and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return shares


@pytest.mark.parametrize("table_store", ["memory://", "rocksdb://"])
def test_two_workers_share_the_stream_and_hand_over_users(stack, settings, start_worker, tmp_path, table_store):
    events = order_for_replay(read_events(SAMPLE / "taobao_user_behavior.csv", "taobao"))
    # each user's first half while both workers run, the second half after one has stopped:
    # the stopped worker's users must carry on from their recovered state on the other (rocksdb://:
    # docker-compose's setting; the one that stays recovers the partitions it takes into its RocksDB)
    first, second, per_user = halves_by_user(events)
    settings = replace(settings, store=table_store)
    other = replace(settings, web_port=free_port(), data_dir=str(tmp_path / "worker-1-data"))

    async def scenario():
        async with redis_store(settings) as store:
            kw = dict(bootstrap=stack.bootstrap, topic=settings.events_topic, progress=False)
            stays, leaves = start_worker(settings), start_worker(other)
            await asyncio.sleep(6.0)  # both join the group and split the partitions before events arrive
            await replay(first, **kw)
            await wait_for_events(store, len(first), stays, counted=("processed",))
            shares = await shares_of((settings.web_port, other.web_port), len(first))
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
    # nothing lost, nothing applied twice across the hand-over, and the departed worker's users
    # carried on from their state, recovered from its changelog
    assert_every_event_applied_once(counters, records, per_user, log)


def shill_accounts(per_partition: int = 4, partitions: int = 4) -> list[str]:
    """Synthetic accounts, ``per_partition`` on each events partition: whichever two partitions a worker
    holds, it sees at most half of them (8 of 16, under the shilling detector's 10)."""
    out: dict[int, list[str]] = {p: [] for p in range(partitions)}
    n = 0
    while any(len(v) < per_partition for v in out.values()):
        name = f"synthetic-shill-{n}"
        bucket = out[partition_of(name, partitions)]
        if len(bucket) < per_partition:
            bucket.append(name)
        n += 1
    return sorted((a for v in out.values() for a in v), key=lambda a: int(a.rsplit("-", 1)[1]))


def test_a_shilling_campaign_split_over_two_workers_is_caught(stack, settings, checkpoint, start_worker, tmp_path):
    """16 synthetic new accounts push one real item, 4 on each partition: only the item-keyed agent,
    which sees every touch of the item whichever worker its user is on, can count 10 of them."""
    real = order_for_replay(read_events(SAMPLE / "taobao_user_behavior.csv", "taobao"))
    target = real[0].item_id
    start = max(e.ts for e in real) + 86_400.0
    shills = [Event(a, target, "add_to_cart", start + 150.0 * n) for n, a in enumerate(shill_accounts())]
    settings = replace(settings, model_path=str(checkpoint))  # the ensemble, as in production
    other = replace(settings, web_port=free_port(), data_dir=str(tmp_path / "worker-1-data"))

    async def scenario():
        async with redis_store(settings) as store:
            kw = dict(bootstrap=stack.bootstrap, topic=settings.events_topic, progress=False)
            first, _ = start_worker(settings), start_worker(other)
            await asyncio.sleep(6.0)  # both join the group and split the partitions
            await replay(real, **kw)
            await wait_for_events(store, len(real), first)
            # the real samples leave the 1 s hold first: an item alert drops every sample on the item still
            # held then, whatever its event time (the real view of the target, a day before the campaign,
            # was dropped in two full-suite runs on a host that processed the whole sample within the hold)
            await consume(stack.bootstrap, settings.training_samples_topic, len(real))
            await replay(shills, **kw)
            await wait_for_events(store, len(real) + len(shills), first)
            await asyncio.sleep(2 * settings.sample_holdback_s)  # held samples leave (or are dropped)
            alerts = await consume(stack.bootstrap, settings.alerts_topic, 1 + len(shills), timeout_s=10)
            samples = await consume(stack.bootstrap, settings.training_samples_topic, len(real))
            shares = processed_by(settings.web_port), processed_by(other.web_port)
            return await store.counters(), alerts, samples, shares

    counters, alerts, samples, shares = asyncio.run(scenario())
    assert all(share > 0 for share in shares)
    named = [(a["entity_type"], a["entity_id"], a["detector"]) for a in (orjson.loads(m.value) for m in alerts)]
    assert named.count(("item", target, "shilling")) == 1
    members = {entity for kind, entity, detector in named if detector == "shilling_member"}
    assert members == {e.user_id for e in shills}  # the 10 named by the item alert, then each later one
    assert {entity for _, entity, _ in named} <= members | {target}  # no real shopper alerted
    # no campaign event trains the model: quarantined at once, or dropped from the holdback
    users = [orjson.loads(m.value)["user_id"] for m in samples]
    missing = Counter(e.user_id for e in real) - Counter(users)
    assert not set(users) & members and len(users) == len(real), \
        f"campaign users trained: {sorted(set(users) & members)}; real samples missing: {dict(missing)}; {counters}"
    assert counters.get("quarantined", 0) + counters.get("samples_dropped", 0) == len(shills)
