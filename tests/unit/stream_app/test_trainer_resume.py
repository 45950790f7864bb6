"""Where a restarted trainer reads each partition from: the serving version's offset, else the beginning."""

from __future__ import annotations

import asyncio

from aiokafka.structs import TopicPartition

from models.model_store import ModelStore
from models.online.learner import OnlineConfig
from models.online.samples import TrainingSample
from models.online.trainer import OnlineTrainer, TrainerConfig, ensure_base
from stream_app.trainer import ResumeAt
from tests.unit.models.test_model_store import tiny_ensemble

TOPIC = "training-samples"


class FakeConsumer:
    """Records the seeks a listener makes (aiokafka's ``seek`` is plain, ``seek_to_beginning`` a coroutine)."""

    def __init__(self) -> None:
        self.seeks: dict[int, int | str] = {}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks[tp.partition] = offset

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        self.seeks.update({tp.partition: "beginning" for tp in partitions})


def assign(listener: ResumeAt, *partitions: int) -> None:
    asyncio.run(listener.on_partitions_assigned({TopicPartition(TOPIC, p) for p in partitions}))


def test_partitions_without_an_offset_are_read_from_their_beginning() -> None:
    consumer = FakeConsumer()
    listener = ResumeAt(consumer, {0: 35, 2: 100})  # type: ignore[arg-type]
    assign(listener, 0, 1, 2)
    assert consumer.seeks == {0: 35, 1: "beginning", 2: 100}
    consumer.seeks.clear()
    assign(listener, 0, 1, 2, 3)  # a rebalance: only the partition assigned for the first time is sought
    assert consumer.seeks == {3: "beginning"}


def test_a_trainer_restarted_while_the_base_serves_reads_every_partition_from_its_beginning(tmp_path) -> None:
    store = ModelStore(tmp_path / "store")
    tiny_ensemble().save(tmp_path / "base")
    ensure_base(store, str(tmp_path / "base"))
    configs = (OnlineConfig(train_sequence=False, batch_size=10),
               TrainerConfig(eval_slice=10, promote_every=50, promote_every_s=1e9))
    trainer = OnlineTrainer(store, *configs)
    samples = [TrainingSample(f"u{i}", ["a"], ["view"], "b", "purchase", 8.0, 1_700_000_000_000 + i, "v0001")
               for i in range(40)]
    trainer.on_samples(samples, positions=[(i % 2, i // 2) for i in range(40)])  # learnt and held out, no promotion
    assert trainer.learner.seen == 30 and store.current() == "v0001"
    restarted = OnlineTrainer(store, *configs)  # the consumer group has committed offsets 20 and 20 by now
    consumer = FakeConsumer()
    assign(ResumeAt(consumer, dict(restarted.sample_offsets)), 0, 1)  # type: ignore[arg-type]
    assert consumer.seeks == {0: "beginning", 1: "beginning"}  # the 40 samples are read (and learnt) again
