"""The embedded broker and Redis, started once per test session; unique names per test."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from models.cli import main as models_cli
from stream_app.demo import demo_settings
from stream_app.topics import all_topics
from stream_app.embedded import EmbeddedStack, embedded_stack
from stream_app.kafka_admin import ensure_topics
from stream_app.replay.producer import order_for_replay
from stream_app.settings import Settings
from stream_app.sinks.redis import RedisStore
from stream_app.worker_process import WorkerProcess

pytestmark = pytest.mark.integration
SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample"
SCORERS = ("sequence", "covisitation", "popularity")


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    with embedded_stack(tmp_path_factory.mktemp("stack")) as s:
        yield s


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ensemble trained on the real Taobao sample (seconds on a CPU)."""
    out = tmp_path_factory.mktemp("ckpt") / "tiny"
    code = models_cli(["train", "--log", str(SAMPLE / "taobao_user_behavior.csv"), "--format", "taobao",
                       "--out", str(out), "--scorers", ",".join(SCORERS), "--epochs", "2", "--hidden", "16",
                       "--layers", "1", "--heads", "2", "--max-len", "20", "--threads", "1", "--no-progress"])
    assert code == 0
    return out


@pytest.fixture
def settings(stack: EmbeddedStack, tmp_path: Path) -> Settings:
    """Settings with this test's own app id, topics and Redis prefix."""
    tag = uuid.uuid4().hex[:8]
    s = demo_settings(
        stack, tmp_path, app_id=f"it-{tag}", redis_prefix=f"it-{tag}",
        events_topic=f"events-{tag}", recommendations_topic=f"recs-{tag}",
        dead_letter_topic=f"dlq-{tag}", item_activity_topic=f"items-{tag}", item_touches_topic=f"touches-{tag}",
        alerts_topic=f"alerts-{tag}", training_samples_topic=f"samples-{tag}",
        model_updates_topic=f"models-{tag}",
    )
    asyncio.run(ensure_topics(stack.bootstrap, all_topics(s), s.partitions))
    return s


@pytest.fixture
def start_worker(settings: Settings, tmp_path: Path) -> Iterator:
    """Start worker processes for this test; all are stopped at teardown."""
    workers: list[WorkerProcess] = []

    def start(with_settings: Settings | None = None) -> WorkerProcess:
        w = WorkerProcess.start(with_settings or settings, tmp_path / f"worker-{len(workers)}.log")
        workers.append(w)
        return w

    yield start
    for w in workers:
        w.stop()


@contextlib.asynccontextmanager
async def redis_store(settings: Settings) -> AsyncIterator[RedisStore]:
    """The test's Redis store, connected for the duration of a scenario."""
    store = RedisStore(settings.redis_url, prefix=settings.redis_prefix)
    await store.start()
    try:
        yield store
    finally:
        await store.close()


async def consume(bootstrap: str, topic: str, expected: int, timeout_s: float = 30.0) -> list:
    """Read a topic from the beginning until ``expected`` messages arrived (or time out)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    out: list = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(out) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for msgs in batches.values():
                out.extend(msgs)
        # anything beyond what was expected would be a bug too: drain briefly
        for msgs in (await consumer.getmany(timeout_ms=300)).values():
            out.extend(msgs)
    finally:
        await consumer.stop()
    return out


def halves_by_user(events: list) -> tuple[list, list, dict[str, int]]:
    """Every user's first half of ``events``, then every user's second half (each in replay order), and
    each user's event count: a state that was not carried over from the first part shows in every user."""
    by_user: dict[str, list] = defaultdict(list)
    for e in events:
        by_user[e.user_id].append(e)
    first = order_for_replay([e for evs in by_user.values() for e in evs[: len(evs) // 2]])
    second = order_for_replay([e for evs in by_user.values() for e in evs[len(evs) // 2:]])
    return first, second, {u: len(evs) for u, evs in by_user.items()}


def assert_every_event_applied_once(counters: dict, records: dict, per_user: dict[str, int], log: str) -> None:
    """Nothing lost or applied twice (re-deliveries are counted as duplicates), no partition skipped an
    offset, and every user's state (``records``: their Redis records) holds all of their events."""
    assert counters["processed"] == sum(per_user.values()), log[-4000:]
    assert counters["rejected"] == 0
    assert counters["events_in"] == counters["processed"] + counters["duplicates"]
    assert "skipped offsets" not in log
    stale = {u: (records[u]["events_seen"], n) for u, n in per_user.items() if records[u]["events_seen"] != n}
    assert stale == {}
