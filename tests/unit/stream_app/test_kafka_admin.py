"""Topic creation reports what the broker refused (aiokafka puts it in the response, it does not raise)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import CreateTopicsResponse_v3

from stream_app.kafka_admin import TopicError, ensure_topics
from stream_app.settings import Settings
from stream_app.topics import all_topics, topic_configs


def broker_answering(monkeypatch, code: int, message: str) -> list:
    """A fake admin client: no topics exist, and every creation is answered with ``code``."""
    asked: list = []

    async def nothing(self) -> None:
        return None

    async def no_topics(self) -> list[str]:
        return []

    async def create(self, request):
        asked.extend(t[0] for t in request.create_topic_requests)
        return CreateTopicsResponse_v3(throttle_time_ms=0, topic_errors=[
            (t[0], code, message) for t in request.create_topic_requests])

    monkeypatch.setattr(AIOKafkaAdminClient, "start", nothing)
    monkeypatch.setattr(AIOKafkaAdminClient, "close", nothing)
    monkeypatch.setattr(AIOKafkaAdminClient, "list_topics", no_topics)
    monkeypatch.setattr(AIOKafkaAdminClient, "_send_to_controller", create)
    return asked


def test_a_topic_the_broker_refuses_to_create_is_an_error(monkeypatch) -> None:
    broker_answering(monkeypatch, 38, "Replication factor: 3 larger than available brokers: 1.")
    with pytest.raises(TopicError, match="events \\(error 38: Replication factor: 3"):
        asyncio.run(ensure_topics("127.0.0.1:1", ["events"], 8, 3))


def test_a_topic_another_client_created_meanwhile_is_fine(monkeypatch) -> None:
    asked = broker_answering(monkeypatch, 36, "Topic 'events' already exists.")
    asyncio.run(ensure_topics("127.0.0.1:1", ["events", "alerts", "events"], 8))
    assert asked == ["events", "alerts"]


def test_the_model_updates_topic_is_created_compacted_and_the_others_with_the_brokers_defaults(monkeypatch) -> None:
    created: dict = {}

    async def create(self, request):
        created.update({t[0]: dict(t[-1]) for t in request.create_topic_requests})  # (name, ..., configs)
        return CreateTopicsResponse_v3(throttle_time_ms=0, topic_errors=[
            (t[0], 0, None) for t in request.create_topic_requests])

    broker_answering(monkeypatch, 0, "")
    monkeypatch.setattr(AIOKafkaAdminClient, "_send_to_controller", create)
    settings = Settings()
    asyncio.run(ensure_topics("127.0.0.1:1", all_topics(settings), 4, configs=topic_configs(settings)))
    assert created.pop(settings.model_updates_topic) == {"cleanup.policy": "compact"}
    assert set(created) == set(all_topics(settings)) - {settings.model_updates_topic}
    assert all(configs == {} for configs in created.values())
