"""Where a restarted trainer reads each partition from: the serving version's offset, else the beginning."""

from __future__ import annotations

import asyncio

import orjson
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


class RefusingConsumer(FakeConsumer):
    """A consumer whose seek to the beginning fails (a broker error, say)."""

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        raise OSError("broker refused ListOffsets")


def test_a_failed_seek_is_kept_and_raised_by_check() -> None:
    listener = ResumeAt(RefusingConsumer(), {0: 35})  # type: ignore[arg-type]
    listener.check()  # nothing failed yet
    try:
        assign(listener, 0, 1)
    except OSError:
        pass  # aiokafka logs what the listener raises and goes on; the listener keeps it too
    try:
        listener.check()
    except RuntimeError as exc:
        assert "ListOffsets" in str(exc)
    else:
        raise AssertionError("check() did not raise after a failed seek")


def test_the_trainer_stops_without_learning_when_its_seek_failed(tmp_path, monkeypatch) -> None:
    """aiokafka swallows the listener's error and fetches from the committed offset: nothing of that is learnt."""
    import stream_app.trainer as trainer_process
    from stream_app.settings import Settings

    tiny_ensemble().save(tmp_path / "base")
    fetched = TrainingSample("u1", ["a"], ["view"], "b", "purchase", 8.0, 1_700_000_000_000, "v0001")
    learnt: list[int] = []
    stop = asyncio.Event()  # set after one fetch, so a trainer that goes on still ends

    class Consumer(RefusingConsumer):
        def __init__(self, **_: object) -> None:
            super().__init__()
            self.listener: ResumeAt | None = None

        async def start(self) -> None: ...
        async def stop(self) -> None: ...
        async def commit(self) -> None: ...

        def subscribe(self, topics: list[str], listener: ResumeAt) -> None:
            self.listener = listener

        async def getmany(self, **_: object) -> dict:
            assert self.listener is not None
            try:  # the rebalance inside getmany: aiokafka logs the listener's exception and fetches anyway
                await self.listener.on_partitions_assigned({TopicPartition(TOPIC, 0)})
            except OSError:
                pass
            stop.set()
            record = type("Record", (), {"value": orjson.dumps(fetched.to_dict()), "timestamp": 0,
                                         "partition": 0, "offset": 17, "topic": TOPIC, "key": b"u1"})
            return {TopicPartition(TOPIC, 0): [record]}

    class Producer:
        def __init__(self, **_: object) -> None: ...
        async def start(self) -> None: ...
        async def stop(self) -> None: ...
        async def flush(self) -> None: ...
        async def send_and_wait(self, *_: object, **__: object) -> None: ...

    def on_samples(self, samples, *_: object) -> list:  # noqa: ANN001
        learnt.append(len(samples))
        return []

    monkeypatch.setattr(trainer_process, "AIOKafkaConsumer", Consumer)
    monkeypatch.setattr(trainer_process, "AIOKafkaProducer", Producer)
    monkeypatch.setattr("stream_app.model_updates.AIOKafkaProducer", Producer)
    monkeypatch.setattr(OnlineTrainer, "on_samples", on_samples)

    async def no_broker_to_prepare(_settings) -> None:
        return None

    monkeypatch.setattr(trainer_process, "prepare_all", no_broker_to_prepare)
    settings = Settings(model_store=str(tmp_path / "store"), model_path=str(tmp_path / "base"))
    try:
        asyncio.run(trainer_process.run_trainer(settings, stop=stop))
    except RuntimeError as exc:
        assert "seeking the samples topic" in str(exc)
    else:
        raise AssertionError("the trainer went on after a failed seek")
    assert learnt == []
