"""The trainer process: training samples in, fine-tuned versions promoted and announced.

A plain aiokafka consumer group (not a Faust app: it keeps no tables and
sends nothing per message) reads the training-samples topic in batches and
hands each batch to ``models.online.trainer.OnlineTrainer`` on a worker
thread, so the consumer keeps heart-beating while torch trains. Each
promotion or rollback the trainer decides is written to the model store
first, then announced on the model-updates topic for workers to swap to.

An unreadable sample goes, unchanged, to the dead-letter topic (reason
``bad_sample`` and its origin in headers, as for events) before its offset is
committed. Offsets are committed after each batch is handed over (for lag
monitoring), but a restarted trainer never resumes there: it starts from the
store's serving version and seeks each partition to the offset that version
was promoted with (``sample_offsets`` in its log entry), so the samples learnt
since the last promotion, and those held out, are read and learnt again
instead of being lost. A partition the version has no offset for had nothing
of it learnt by the version (a trainer records a partition's offset from the
first sample of it that it reads), so it is read from its beginning (the
oldest sample the topic still keeps). The pre-trained base (``ensure_base``:
no ``sample_offsets`` at all) learnt nothing from the topic: while it serves,
before the first promotion or after a rollback to it, a restarted trainer
reads every partition from its beginning. Samples are thus learnt at least
once per lineage (those the topic still keeps); a dead-lettered sample after
the last learnt one is dead-lettered again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import orjson
import torch
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.structs import ConsumerRecord, TopicPartition

from models.model_store import ModelStore
from models.online.blend import BlendRefitConfig
from models.online.learner import OnlineConfig
from models.online.samples import TrainingSample
from models.online.trainer import OnlineTrainer, TrainerConfig, ensure_base
from stream_app import records
from stream_app.model_updates import announce
from stream_app.records import Rejection
from stream_app.settings import AIOKAFKA_REQUEST_TIMEOUT_S, Settings
from stream_app.tansu_compat import bootstrap_from_url
from stream_app.topics import prepare_all
from stream_app.trainer_web import TrainerMetrics, serve

log = logging.getLogger(__name__)


def trainer_configs(settings: Settings) -> tuple[OnlineConfig, TrainerConfig]:
    learner = OnlineConfig(lr=settings.trainer_lr, batch_size=settings.trainer_batch,
                           replay_size=settings.trainer_replay_size, eval_slice=settings.trainer_eval_slice,
                           blend=BlendRefitConfig(every=settings.trainer_blend_every), device=settings.trainer_device)
    trainer = TrainerConfig(eval_slice=settings.trainer_eval_slice, promote_every=settings.trainer_promote_every,
                            promote_every_s=settings.trainer_promote_every_s,
                            promote_tolerance=settings.trainer_promote_tolerance,
                            rollback_window=settings.trainer_rollback_window,
                            rollback_margin=settings.trainer_rollback_margin,
                            keep_versions=settings.model_store_keep,
                            log_max_lines=settings.model_store_log_lines)
    return learner, trainer


def parse_samples(values: list[bytes | None]) -> tuple[list[TrainingSample], list[tuple[int, Rejection]]]:
    """Samples from message values, and each unreadable one's index and reason (for the dead-letter topic)."""
    samples: list[TrainingSample] = []
    rejected: list[tuple[int, Rejection]] = []
    for n, value in enumerate(values):
        try:
            samples.append(TrainingSample.from_dict(orjson.loads(value or b"")))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            rejected.append((n, Rejection("bad_sample", f"{type(exc).__name__}: {exc}"[:200])))
    return samples, rejected


async def dead_letter(producer: AIOKafkaProducer, settings: Settings, msg: ConsumerRecord, why: Rejection) -> None:
    """Send an unreadable sample to the dead-letter topic (unchanged unless huge: ``records.dead_letter``) with
    its reason and origin in headers, and wait for the broker's ack (its offset is committed after this)."""
    log.warning("dead letter %s at partition %d offset %d: %s", why.code, msg.partition, msg.offset, why.detail)
    key, value, headers = records.dead_letter(msg.key, msg.value, why, msg.topic, msg.partition, msg.offset)
    await producer.send_and_wait(settings.dead_letter_topic, value=value, key=key, headers=headers)


class ResumeAt(ConsumerRebalanceListener):
    """Seeks each partition, the first time it is assigned, to the offset the serving version learnt up to,
    or to its beginning where the version has no offset for it (it learnt nothing of it).

    aiokafka logs and swallows a listener's exception, and the partition then
    starts at its committed offset, past samples the serving version never
    learnt. So a failed seek is kept in ``failed``; ``check`` raises it, and the
    trainer calls it after every fetch, before it learns anything fetched.
    """

    def __init__(self, consumer: AIOKafkaConsumer, offsets: dict[int, int]) -> None:
        self.consumer, self.offsets = consumer, offsets
        self.started: set[TopicPartition] = set()
        self.failed: BaseException | None = None

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        pass

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        fresh = sorted(assigned - self.started)
        try:
            for tp in fresh:
                if tp.partition in self.offsets:
                    self.consumer.seek(tp, self.offsets[tp.partition])
            unlearnt = [tp for tp in fresh if tp.partition not in self.offsets]
            if unlearnt:  # not the committed offset: the samples before it the version never learnt would be skipped
                await self.consumer.seek_to_beginning(*unlearnt)
        except Exception as exc:  # noqa: BLE001 - kept for ``check``: aiokafka would only log it
            self.failed = exc
            raise
        self.started.update(fresh)

    def check(self) -> None:
        """Raise if a seek failed: the trainer must stop (and be restarted) rather than learn from wrong offsets."""
        if self.failed is not None:
            raise RuntimeError(f"seeking the samples topic to {self.offsets or 'its beginning'} failed: "
                               f"{type(self.failed).__name__}: {self.failed}") from self.failed


async def run_trainer(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Consume samples until ``stop`` is set (or forever)."""
    if not settings.model_store:
        raise ValueError("RECO_MODEL_STORE must name the model store directory")
    torch.set_num_threads(settings.torch_threads)
    await prepare_all(settings)  # before anything is sent: a topic the broker auto-created would lack its settings
    store = ModelStore(settings.model_store)
    # what serves, announced again: a promotion or rollback whose announcement was lost (the trainer or
    # ``reco rollback`` stopped between the store and the topic) reaches the workers now; a worker already
    # serving it ignores it
    serving = ensure_base(store, settings.model_path) or store.serving_entry()
    if serving is not None:
        await announce(settings, serving)
    learner_cfg, trainer_cfg = trainer_configs(settings)
    trainer = OnlineTrainer(store, learner_cfg, trainer_cfg)
    log.info("trainer starts from %s, fine-tuning on %s", trainer.serving_version, trainer.learner.device)
    metrics = TrainerMetrics(trainer)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trainer")
    loop = asyncio.get_running_loop()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_from_url(settings.kafka_url),
        group_id=f"{settings.app_id}-trainer", auto_offset_reset="earliest", enable_auto_commit=False,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        session_timeout_ms=int(settings.broker_session_timeout_s * 1000),
        heartbeat_interval_ms=int(settings.broker_heartbeat_interval_s * 1000),
        # as the workers' (``create_app``): a trainer finishing a fine-tuning step keeps its partitions through
        # a rebalance, and the JoinGroup request outlasts the wait (aiokafka's default was the session timeout)
        rebalance_timeout_ms=int(settings.broker_rebalance_timeout_s * 1000),
        request_timeout_ms=int(settings.join_request_timeout_s(AIOKAFKA_REQUEST_TIMEOUT_S) * 1000))
    resume = dict(trainer.sample_offsets)  # at start: the serving version's (read from the store's log once)
    log.info("trainer reads samples from %s", f"{trainer.serving_version}'s offsets {resume} (other partitions "
             "from their beginning)" if resume else f"each partition's beginning ({trainer.serving_version} "
             "learnt nothing from the topic)")
    # acks="all", as Faust's producer: a dead letter is acknowledged before its sample's offset is committed,
    # and with replicas aiokafka's default (the leader alone) could lose it in a leader failover
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_from_url(settings.kafka_url), acks="all")
    async with contextlib.AsyncExitStack() as started:  # stops whatever started, in reverse, even if one stop fails
        started.callback(pool.shutdown, wait=True)
        await consumer.start()
        started.push_async_callback(consumer.stop)
        resume_at = ResumeAt(consumer, resume)
        consumer.subscribe([settings.training_samples_topic], listener=resume_at)
        await producer.start()
        started.push_async_callback(producer.stop)
        if settings.trainer_web_port:
            started.push_async_callback((await serve(metrics, settings.web_bind, settings.trainer_web_port)).cleanup)
        while stop is None or not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=settings.trainer_batch)
            resume_at.check()  # before anything fetched is learnt or committed
            began = time.perf_counter()
            msgs = [m for part in batches.values() for m in part]
            samples, rejected = parse_samples([m.value for m in msgs])
            for n, why in rejected:
                await dead_letter(producer, settings, msgs[n], why)
            bad = {n for n, _ in rejected}
            good = [m for n, m in enumerate(msgs) if n not in bad]
            entries = await loop.run_in_executor(pool, trainer.on_samples, samples, [m.timestamp for m in good],
                                                 [(m.partition, m.offset) for m in good])
            for entry in entries:
                log.info("%s %s", entry["action"], entry["version"])
                await announce(settings, entry, producer)
            if msgs:  # dead letters were each awaited (``dead_letter``): a failed one raised before this commit
                await consumer.commit()
                metrics.observe_batch(len(msgs), len(rejected), time.perf_counter() - began)


def main(settings: Settings) -> None:
    """Run the trainer until SIGTERM or SIGINT; the batch in hand is finished and committed first."""
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def until_signalled() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_trainer(settings, stop=stop)
        log.info("trainer stopped")

    asyncio.run(until_signalled())
