"""Training samples sent while a worker stops: a closed producer ends the send, it does not crash the worker."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import orjson
import pytest
from faust.exceptions import ProducerSendError

from models.online.samples import TrainingSample
from stream_app.agents.events import publish_samples


class ClosingProducer:
    """Accepts ``accept`` messages, then fails as Faust's producer does once closed."""

    def __init__(self, accept: int) -> None:
        self.accept, self.sent = accept, []

    async def send(self, topic, key, value, partition, timestamp, headers):
        if len(self.sent) >= self.accept:
            raise ProducerSendError("Error while sending: ProducerClosed()")
        self.sent.append((topic, key, orjson.loads(value)["target"]))


def _samples(n: int) -> list[TrainingSample]:
    return [TrainingSample(f"u{i}", ["a"], ["view"], f"item{i}", "view", 1.0, i, "v1") for i in range(n)]


def _app(producer: ClosingProducer, stopping: bool) -> SimpleNamespace:
    return SimpleNamespace(producer=producer, should_stop=stopping)


TOPIC = SimpleNamespace(get_topic_name=lambda: "training-samples")


def test_all_samples_are_sent_in_order_keyed_by_user() -> None:
    producer = ClosingProducer(accept=10)
    assert asyncio.run(publish_samples(_app(producer, False), TOPIC, _samples(3))) == 3
    assert producer.sent == [("training-samples", b"u0", "item0"), ("training-samples", b"u1", "item1"),
                             ("training-samples", b"u2", "item2")]


def test_a_producer_closed_by_a_stopping_worker_ends_the_send_without_an_error(caplog) -> None:
    producer = ClosingProducer(accept=2)
    with caplog.at_level("INFO"):
        assert asyncio.run(publish_samples(_app(producer, True), TOPIC, _samples(5))) == 2
    assert "3 training samples not sent" in caplog.text


def test_a_send_error_while_running_is_raised() -> None:
    with pytest.raises(ProducerSendError):
        asyncio.run(publish_samples(_app(ClosingProducer(accept=1), False), TOPIC, _samples(3)))
