"""The trainer process: training samples in, fine-tuned versions promoted and announced.

A plain aiokafka consumer group (not a Faust app: it keeps no tables and
sends nothing per message) reads the training-samples topic in batches and
hands each batch to ``models.online.trainer.OnlineTrainer`` on a worker
thread, so the consumer keeps heart-beating while torch trains. Each
promotion or rollback the trainer decides is written to the model store
first, then announced on the model-updates topic for workers to swap to.

Offsets are committed after each batch is learnt. A restarted trainer
starts again from the store's serving version, so what it learnt since the
last promotion is lost (its samples are not read again); the serving
weights never are.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

import orjson
import torch
from aiokafka import AIOKafkaConsumer

from models.model_store import ModelStore
from models.online.learner import OnlineConfig
from models.online.samples import TrainingSample
from models.online.trainer import OnlineTrainer, TrainerConfig, ensure_base
from stream_app.model_updates import announce
from stream_app.settings import Settings
from stream_app.tansu_compat import bootstrap_from_url

log = logging.getLogger(__name__)


def trainer_configs(settings: Settings) -> tuple[OnlineConfig, TrainerConfig]:
    learner = OnlineConfig(lr=settings.trainer_lr, batch_size=settings.trainer_batch,
                           replay_size=settings.trainer_replay_size, eval_slice=settings.trainer_eval_slice)
    trainer = TrainerConfig(eval_slice=settings.trainer_eval_slice, promote_every=settings.trainer_promote_every,
                            promote_every_s=settings.trainer_promote_every_s,
                            promote_tolerance=settings.trainer_promote_tolerance,
                            rollback_window=settings.trainer_rollback_window,
                            rollback_margin=settings.trainer_rollback_margin)
    return learner, trainer


def parse_samples(values: list[bytes]) -> tuple[list[TrainingSample], int]:
    """Samples from message values, and how many were unreadable (logged and skipped)."""
    samples, bad = [], 0
    for value in values:
        try:
            samples.append(TrainingSample.from_dict(orjson.loads(value)))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            bad += 1
            log.warning("unreadable training sample skipped: %s", exc)
    return samples, bad


async def run_trainer(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Consume samples until ``stop`` is set (or forever)."""
    if not settings.model_store:
        raise ValueError("RECO_MODEL_STORE must name the model store directory")
    torch.set_num_threads(settings.torch_threads)
    store = ModelStore(settings.model_store)
    base = ensure_base(store, settings.model_path)
    if base is not None:
        await announce(settings, base)
    learner_cfg, trainer_cfg = trainer_configs(settings)
    trainer = OnlineTrainer(store, learner_cfg, trainer_cfg)
    log.info("trainer starts from %s", trainer.serving_version)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trainer")
    loop = asyncio.get_running_loop()
    consumer = AIOKafkaConsumer(
        settings.training_samples_topic, bootstrap_servers=bootstrap_from_url(settings.kafka_url),
        group_id=f"{settings.app_id}-trainer", auto_offset_reset="earliest", enable_auto_commit=False,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        session_timeout_ms=int(settings.broker_session_timeout_s * 1000),
        heartbeat_interval_ms=int(settings.broker_heartbeat_interval_s * 1000))
    await consumer.start()
    try:
        while stop is None or not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=settings.trainer_batch)
            msgs = [m for part in batches.values() for m in part]
            samples, _ = parse_samples([m.value for m in msgs])
            kafka_ms = [m.timestamp for m, _ in zip(msgs, samples)] if len(samples) == len(msgs) else None
            entries = await loop.run_in_executor(pool, trainer.on_samples, samples, kafka_ms)
            for entry in entries:
                log.info("%s %s", entry["action"], entry["version"])
                await announce(settings, entry)
            if msgs:
                await consumer.commit()
    finally:
        await consumer.stop()
        pool.shutdown(wait=True)


def main(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(run_trainer(settings))
