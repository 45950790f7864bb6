"""The Faust fixes (stream_app.faust_fixes): sources resume only with the flow, and an empty partition set fetches nothing."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import faust
import pytest
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP

from stream_app import faust_fixes


@pytest.fixture
def fetched():
    """The partition set each fetch handed to aiokafka."""
    return []


@pytest.fixture
def new_app(monkeypatch, fetched):
    """Make Faust apps (never started) with the fixes installed; undo the patches and close their loops after."""
    for name in ("resume_partitions", "resume_flow"):
        monkeypatch.setattr(Consumer, name, getattr(Consumer, name))  # restored after the test
    monkeypatch.setattr(Consumer, "_resume_after_flow", False, raising=False)

    async def aiokafka_fetch(self, consumer, active_partitions, timeout=None, max_records=None):
        fetched.append(active_partitions)
        return {tp: ["record"] for tp in active_partitions}

    monkeypatch.setattr(AIOKafkaConsumerThread, "_fetch_records", aiokafka_fetch)
    faust_fixes.install()
    faust_fixes.install()  # a second app in the process does not patch twice
    loop = asyncio.new_event_loop()
    apps = []

    def make(app_id: str) -> faust.App:
        apps.append(faust.App(app_id, broker="kafka://127.0.0.1:9", loop=loop))
        return apps[-1]

    yield make
    for app in apps:
        app.consumer._thread.thread_loop.close()  # the consumer thread's own loop
    loop.close()


def test_source_partitions_stay_paused_until_the_flow_resumes(new_app, monkeypatch):
    app = new_app("fix-test")
    app.Table("users")
    consumer = app.consumer
    source, changelog = TP("events", 0), TP(app.tables["users"].changelog_topic.get_topic_name(), 0)
    assert consumer._is_changelog_tp(changelog) and not consumer._is_changelog_tp(source)
    monkeypatch.setattr(consumer, "assignment", lambda: {source, changelog})
    consumer.pause_partitions({source, changelog})  # as Faust does on assignment

    consumer.resume_partitions({changelog})  # table recovery reads the changelog at once
    assert consumer._get_active_partitions() == {changelog}
    # Faust's recovery completion: resume the sources, await the seek (the fetcher runs
    # meanwhile), resume flow control (which empties the stream queues), resume the flow
    consumer.resume_partitions({source})
    assert source not in consumer._get_active_partitions()  # nothing is fetched before the seek is done
    consumer.resume_flow()
    assert consumer._get_active_partitions() == {source, changelog}


def test_a_partition_revoked_before_the_flow_resumes_is_not_resumed(new_app, monkeypatch):
    consumer = new_app("fix-test-2").consumer
    kept, revoked = TP("events", 0), TP("events", 1)
    assigned = {kept, revoked}
    monkeypatch.setattr(consumer, "assignment", lambda: set(assigned))
    consumer.pause_partitions(assigned)
    consumer.resume_partitions({kept, revoked})
    assigned.discard(revoked)  # a rebalance takes partition 1 away
    consumer.resume_flow()
    assert consumer._get_active_partitions() == {kept}


def test_an_empty_set_of_active_partitions_fetches_nothing(new_app, fetched):
    """aiokafka reads an empty partition set as 'every partition'; the fetch must not reach it."""
    thread = new_app("fix-test-3").consumer._thread
    assert asyncio.run(thread._fetch_records(None, set(), timeout=1.0)) == {}
    assert fetched == []


def test_the_fetch_gets_a_snapshot_of_the_active_partitions(new_app, fetched):
    """Faust passes its live set, which it empties and refills while the fetch waits in another thread."""
    thread = new_app("fix-test-4").consumer._thread
    live = {TP("events", 0)}
    assert asyncio.run(thread._fetch_records(None, live, timeout=1.0)) == {TP("events", 0): ["record"]}
    assert fetched == [live] and fetched[0] is not live


def test_the_app_a_worker_runs_has_the_fixes_installed(tmp_path) -> None:
    """The tests above install the fixes themselves; this one checks the worker's own app does, in a fresh
    interpreter (removing ``install()`` from ``create_app`` passed every other unit test)."""
    code = (
        "import sys\n"
        "from faust.transport.consumer import Consumer\n"
        "from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread\n"
        "from stream_app.app import create_app\n"
        "from stream_app.settings import Settings\n"
        "before = (Consumer.resume_partitions, AIOKafkaConsumerThread._fetch_records)\n"
        f"create_app(Settings(data_dir={str(tmp_path)!r}))\n"
        "after = (Consumer.resume_partitions, AIOKafkaConsumerThread._fetch_records)\n"
        "print(all(a is not b for a, b in zip(before, after)), getattr(Consumer, '_resume_after_flow', False))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["True", "True"]
