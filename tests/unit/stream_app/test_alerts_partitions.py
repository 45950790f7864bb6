"""The alerts reader follows partitions added to the alerts topic (tansu cannot add partitions: a fake consumer)."""

from __future__ import annotations

import asyncio

from aiokafka.structs import TopicPartition

from stream_app.agents.item_anomalies import follow_new_partitions

TOPIC = "alerts"


class Consumer:
    """What ``follow_new_partitions`` uses of AIOKafkaConsumer; ``assign`` forgets positions as aiokafka's does."""

    def __init__(self, partitions: set[int], positions: dict[TopicPartition, int]) -> None:
        self.partitions, self.positions, self.assigned = partitions, dict(positions), list(positions)
        self.assign_calls = 0

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions if topic == TOPIC else set()

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    def assign(self, tps: list[TopicPartition]) -> None:
        self.assigned, self.positions, self.assign_calls = list(tps), {}, self.assign_calls + 1

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    async def seek_to_beginning(self, *tps: TopicPartition) -> None:
        for tp in tps:
            self.positions[tp] = 0


def test_a_partition_added_later_is_read_from_its_beginning_and_the_others_carry_on(caplog) -> None:
    p0, p1, p2 = (TopicPartition(TOPIC, p) for p in range(3))
    consumer = Consumer({0, 1}, {p0: 40, p1: 7})
    assert asyncio.run(follow_new_partitions(consumer, TOPIC, [p0, p1])) == [p0, p1]
    assert consumer.assign_calls == 0  # nothing new: nothing touched
    consumer.partitions = {0, 1, 2}  # the topic grew; the metadata refresh shows it
    with caplog.at_level("WARNING"):
        assert asyncio.run(follow_new_partitions(consumer, TOPIC, [p0, p1])) == [p0, p1, p2]
    assert consumer.assigned == [p0, p1, p2] and consumer.positions == {p0: 40, p1: 7, p2: 0}
    assert "1 new partitions (2)" in caplog.text
