"""The demo: embedded broker and Redis, one worker, the bundled real sample replayed."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path

from models.data.eventlog import read_events
from stream_app.embedded import EmbeddedStack, embedded_stack, free_port
from stream_app.kafka_admin import ensure_topics
from stream_app.replay.producer import replay_file
from stream_app.settings import Settings
from stream_app.sinks.redis import RedisStore
from stream_app.worker_process import WorkerProcess, wait_for_events

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "data" / "sample"
SAMPLE = SAMPLE_DIR / "taobao_user_behavior.csv"
MALFORMED = SAMPLE_DIR / "malformed_events.jsonl"


def demo_settings(stack: EmbeddedStack, workdir: Path, **overrides) -> Settings:
    """Settings for a worker on the embedded stack (also used by the tests)."""
    base = dict(
        kafka_url=stack.kafka_url, redis_url=stack.redis_url, embedded_broker=True, fetch_max_wait_ms=20,
        data_dir=str(workdir / "worker-data"), web_port=free_port(),
        broker_session_timeout_s=3.0, broker_heartbeat_interval_s=0.5, commit_interval_s=0.5,
        log_level="warning",
    )
    base.update(overrides)
    return Settings.from_env(**base)


def all_topics(settings: Settings) -> list[str]:
    return [settings.events_topic, settings.recommendations_topic, settings.dead_letter_topic,
            settings.item_activity_topic, settings.alerts_topic, settings.training_samples_topic,
            settings.model_updates_topic]


async def _run(stack: EmbeddedStack, workdir: Path, n_users: int) -> None:
    settings = demo_settings(stack, workdir, app_id="reco-demo")
    await ensure_topics(stack.bootstrap, all_topics(settings), settings.partitions)
    store = RedisStore(settings.redis_url, prefix=settings.redis_prefix)
    await store.start()
    worker = WorkerProcess.start(settings, workdir / "worker.log")
    try:
        print(f"broker {stack.bootstrap} (tansu), redis {stack.redis_url}, worker pid {worker.process.pid}")
        started = time.monotonic()
        real = await replay_file(str(SAMPLE), "taobao", bootstrap=stack.bootstrap, topic=settings.events_topic)
        print(f"real sample: {real}")
        bad = await replay_file(str(MALFORMED), "jsonl", bootstrap=stack.bootstrap,
                                topic=settings.events_topic, progress=False)
        print(f"malformed (synthetic) sample: {bad}")
        counters = await wait_for_events(store, real.sent + bad.sent, worker)
        elapsed = time.monotonic() - started
        await asyncio.sleep(1.0)  # let the last batch's Redis write land
        counters = await store.counters()
        await _print_users(store, n_users)
        print(f"\nevents in {counters['events_in']} = processed {counters['processed']} + rejected "
              f"{counters['rejected']} + duplicates {counters['duplicates']}  ({elapsed:.1f} s end to end)")
    finally:
        code = worker.stop()
        await store.close()
        print(f"worker stopped (exit {code})")


async def _print_users(store: RedisStore, n_users: int) -> None:
    by_user: dict[str, int] = {}
    for ev in read_events(SAMPLE, "taobao"):
        by_user[ev.user_id] = by_user.get(ev.user_id, 0) + 1
    for user in sorted(by_user, key=lambda u: (-by_user[u], u))[:n_users]:
        rec = await store.recommendations(user)
        if rec is None:
            print(f"\nuser {user}: no recommendations in Redis")
            continue
        print(f"\nuser {user}: {rec['events_seen']} events seen, model {rec['model_version']}")
        for rank, item in enumerate(rec["items"], start=1):
            why = (f"co-visited with {item['because_of']}" if "because_of" in item else "popular")
            print(f"  {rank:2d}. item {item['item_id']:>8}  score {item['score']:.3f}  ({why})")


def run_demo(users: int = 3) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="reco-demo-"))
    try:
        with embedded_stack(workdir) as stack:
            asyncio.run(_run(stack, workdir, users))
        print("broker and redis stopped")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0
