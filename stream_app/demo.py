"""The demo: embedded broker and Redis, a worker and a trainer, the bundled real sample replayed.

By default the first 60% of the sample (by time) pre-trains the ensemble
(transformer + co-visitation + popularity) offline; the worker serves it and
the trainer fine-tunes it on the remaining 40%, replayed as the live stream.
``baseline=True`` runs the skeleton instead: the popularity + co-visitation
recommender on the whole sample, no model, no trainer.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from models.data.eventlog import read_events
from models.data.events import Event
from models.data.timeline import split_by_time
from models.model_store import ModelStore
from models.pipeline import PipelineConfig, train_all
from models.sequence.config import SeqConfig, TrainConfig
from stream_app.embedded import EmbeddedStack, embedded_stack, free_port, stop_on_terminate
from stream_app.replay.producer import replay, replay_file
from stream_app.settings import Settings
from stream_app.sinks.redis import RedisStore
from stream_app.topics import prepare_all
from stream_app.worker_process import WorkerProcess, wait_for_events

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "data" / "sample"
SAMPLE = SAMPLE_DIR / "taobao_user_behavior.csv"
MALFORMED = SAMPLE_DIR / "malformed_events.jsonl"
PRETRAIN_FRACTION = 0.6


def demo_settings(stack: EmbeddedStack, workdir: Path, **overrides) -> Settings:
    """Settings for a worker on the embedded stack (also used by the tests)."""
    base = dict(
        kafka_url=stack.kafka_url, redis_url=stack.redis_url, embedded_broker=True, fetch_max_wait_ms=20,
        data_dir=str(workdir / "worker-data"), web_port=free_port(), trainer_web_port=free_port(),
        broker_session_timeout_s=3.0, broker_heartbeat_interval_s=0.5, commit_interval_s=0.5,
        broker_rebalance_timeout_s=3.0,  # as before it was a setting: the tests' rebalances are timed by it
        log_level="warning",
    )
    base.update(overrides)
    return Settings.from_env(**base)


def pretrain(events: list[Event], out: Path) -> Path:
    """Train the ensemble on ``events`` (seconds on a CPU) and save the checkpoint to ``out``."""
    config = PipelineConfig(scorers=("sequence", "covisitation", "popularity"), seq=SeqConfig(hidden=64),
                            train=TrainConfig(max_seconds=60.0, threads=2))
    started = time.monotonic()
    with contextlib.redirect_stdout(io.StringIO()):  # the per-epoch lines
        trained = train_all(events, config, progress=False)
    trained.ensemble.save(out)
    weights = ", ".join(f"{k} {v:.2f}" for k, v in trained.ensemble.weights.items())
    print(f"pre-trained the ensemble on the first {len(events):,} events in {time.monotonic() - started:.0f} s "
          f"(blend weights: {weights})")
    return out


async def _run(stack: EmbeddedStack, workdir: Path, n_users: int, baseline: bool) -> bool:
    """The demo; whether every event and sample was accounted for and every process exited cleanly."""
    settings = demo_settings(stack, workdir, app_id="reco-demo")
    events = read_events(SAMPLE, "taobao")
    trainer = None
    if baseline:
        live = events
    else:
        offline, live = split_by_time(events, PRETRAIN_FRACTION)
        settings = replace(settings, model_path=str(pretrain(offline, workdir / "pretrained")),
                           model_store=str(workdir / "model-store"), trainer_promote_every=400,
                           trainer_eval_slice=200, trainer_promote_every_s=5.0, trainer_rollback_window=400)
    await prepare_all(settings)
    store = RedisStore(settings.redis_url, prefix=settings.redis_prefix)
    worker = None
    clean, accounted = True, False
    try:  # whatever stops the demo (Ctrl-C, an error) stops what it started: the processes have own sessions
        if not baseline:
            trainer = WorkerProcess.start(settings, workdir / "trainer.log",
                                          [sys.executable, "-m", "stream_app", "trainer"])
            deadline = time.monotonic() + 120.0
            while ModelStore(settings.model_store).current() is None:  # the trainer stores the base version
                trainer.check()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the trainer stored no base version in 120 s:\n{trainer.log()[-2000:]}")
                await asyncio.sleep(0.2)
        await store.start()
        worker = WorkerProcess.start(settings, workdir / "worker.log")
        print(f"broker {stack.bootstrap} (tansu), redis {stack.redis_url}, worker pid {worker.process.pid}"
              + (f", trainer pid {trainer.process.pid}" if trainer else ""))
        started = time.monotonic()
        real = await replay(live, bootstrap=stack.bootstrap, topic=settings.events_topic)
        print(f"real sample{'' if baseline else ' (the later 40%, live)'}: {real}")
        bad = await replay_file(str(MALFORMED), "jsonl", settings, bootstrap=stack.bootstrap,
                                topic=settings.events_topic, progress=False)
        print(f"malformed (synthetic) sample: {bad}")
        counters = await wait_for_events(store, real.sent + bad.sent, worker)
        elapsed = time.monotonic() - started
        await asyncio.sleep(1.0)  # let the last batch's Redis write land
        if trainer is not None:
            await _wait_for_trainer(trainer, settings, timeout_s=20.0)
        counters = await store.counters()
        await _print_users(store, live, n_users)
        if trainer is not None:
            _print_model_log(settings)
        print(f"\nevents in {counters['events_in']} = processed {counters['processed']} + rejected "
              f"{counters['rejected']} + duplicates {counters['duplicates']}  ({elapsed:.1f} s end to end)")
        clean = _report_stop("worker", worker)  # a graceful stop sends the samples still held
        worker = None
        counters = await store.counters()
        print(_samples_line(counters))
        samples = sum(counters.get(k, 0) for k in ("quarantined", "samples_sent", "samples_dropped", "samples_lost"))
        counted = counters["processed"] + counters["rejected"]  # each event once, however often delivered
        accounted = (counters["events_in"] == counted + counters["duplicates"] and counted == real.sent + bad.sent
                     and counters["processed"] == samples)
    finally:
        # SIGTERM both before waiting on either, and each stop in a finally of the one before: a second Ctrl-C
        # cuts a wait short, and must not leave the trainer running or the store open
        for process in (worker, trainer):
            if process is not None:
                process.signal_stop()
        try:
            if worker is not None:
                _report_stop("worker", worker)
        finally:
            try:
                if trainer is not None:
                    clean = _report_stop("trainer", trainer) and clean
            finally:
                await store.close()
    if not accounted:
        print("NOT ACCOUNTED FOR: the counts above do not add up")
    return accounted and clean


def _samples_line(counters: dict[str, int]) -> str:
    """Where the training samples went: one per processed event not quarantined."""
    c = {k: counters.get(k, 0) for k in ("processed", "quarantined", "samples_sent", "samples_dropped",
                                          "samples_lost")}
    return (f"training samples: processed {c['processed']} - quarantined {c['quarantined']} = sent "
            f"{c['samples_sent']} + dropped {c['samples_dropped']} + lost {c['samples_lost']}")


def _report_stop(name: str, process: WorkerProcess) -> bool:
    """Stop ``process`` and print its exit code, with its log's tail when it did not exit cleanly; whether
    it exited cleanly."""
    code = process.stop()
    if process.ended_by_our_sigterm():  # interrupted while it started: our own stop, not its failure
        print(f"{name} stopped (while starting)")
        return True
    print(f"{name} stopped (exit {code})")
    if code != 0:
        print(f"--- {name} log (last 40 lines) ---\n" + "\n".join(process.log().splitlines()[-40:]))
    return code == 0


async def _wait_for_trainer(trainer: WorkerProcess, settings: Settings, timeout_s: float) -> None:
    """Give the trainer time to judge a candidate on the stream's samples (it logs each decision)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        trainer.check()
        if len(ModelStore(settings.model_store).log()) > 1 or "candidate not promoted" in trainer.log():
            return
        await asyncio.sleep(0.5)


def _print_model_log(settings: Settings) -> None:
    print("\nmodel store:")
    for entry in ModelStore(settings.model_store).log():
        metrics = entry.get("metrics") or {}
        judged = ""
        if "candidate" in metrics:
            judged = (f"  NDCG@10 on the newest samples: candidate {metrics['candidate']['ndcg@10']:.4f}"
                      f" vs serving {metrics['serving']['ndcg@10']:.4f}")
        what = entry.get("version") or entry.get("archive", "")  # a rotation names the archive of the older lines
        print(f"  {entry['action']:>8} {what}{judged}")


async def _print_users(store: RedisStore, events: list[Event], n_users: int) -> None:
    by_user: dict[str, int] = {}
    for ev in events:
        by_user[ev.user_id] = by_user.get(ev.user_id, 0) + 1
    for user in sorted(by_user, key=lambda u: (-by_user[u], u))[:n_users]:
        rec = await store.recommendations(user)
        if rec is None:
            print(f"\nuser {user}: no recommendations in Redis")
            continue
        print(f"\nuser {user}: {rec['events_seen']} events seen, model {rec['model_version']}")
        for rank, item in enumerate(rec["items"], start=1):
            # each scorer's part of the score, and (baseline) the history item that led to it
            why = " + ".join(f"{name} {v:.2f}" for name, v in item["contributions"].items() if v)
            if item.get("because_of"):
                why += f"; co-visited with {item['because_of']}"
            print(f"  {rank:2d}. item {item['item_id']:>8}  score {item['score']:6.3f}  ({why or 'no signal'})")


def run_demo(users: int = 3, baseline: bool = False) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="reco-demo-"))
    try:
        with stop_on_terminate(), embedded_stack(workdir) as stack:
            ok = asyncio.run(_run(stack, workdir, users, baseline))
        print("broker and redis stopped")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1
