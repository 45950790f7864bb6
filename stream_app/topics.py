"""The topics the service reads and writes. Keys and values are raw bytes."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass

import faust
from aiokafka.errors import KafkaConnectionError
from faust.types import RecordMetadata, TopicT

from stream_app import kafka_admin
from stream_app.settings import Settings
from stream_app.tables import changelog_topics
from stream_app.tansu_compat import bootstrap_from_url


@dataclass(frozen=True)
class Topics:
    events: TopicT  # in: one JSON event per message, keyed by user id
    recommendations: TopicT  # out: one record per scored user, keyed by user id
    dead_letters: TopicT  # out: rejected events, original bytes, reason in headers
    item_activity: TopicT  # internal re-partition: item activity keyed by item id
    item_touches: TopicT  # internal re-partition: events with their user's context, by item (stream_app.touches)
    alerts: TopicT  # out: fraud/anomaly alerts (filled by the detectors)
    training_samples: TopicT  # out: training samples (filled by the trainer loop)


def all_topics(settings: Settings) -> list[str]:
    """Every topic the service reads or writes (Faust's own changelog topics aside)."""
    return [settings.events_topic, settings.recommendations_topic, settings.dead_letter_topic,
            settings.item_activity_topic, settings.item_touches_topic, settings.alerts_topic,
            settings.training_samples_topic, settings.model_updates_topic]


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """Kafka settings of the topics that need their own: model-updates is compacted (every announcement
    has the key ``model``), so a starting worker reads the latest, not every version ever announced."""
    return {settings.model_updates_topic: {"cleanup.policy": "compact"}}


class BrokerUnreachable(ConnectionError):
    """The broker did not answer when a worker or the trainer prepared its topics, at start."""


async def prepare_all(settings: Settings) -> None:
    """Create every missing topic (``RECO_PARTITIONS``, ``RECO_REPLICATION_FACTOR``, ``topic_configs``);
    ``TopicError`` if the broker refuses one, if model-updates or a table's changelog exists uncompacted,
    or if the events, item-touches or item-activity topic has another partition count: users and items are
    placed by that count (item-activity feeds the item-stats table, whose keys are placed by the producer's
    partitioner, so Faust's own check skips it). Workers and the trainer run it at start; ``BrokerUnreachable``
    if the broker does not answer."""
    placed = [settings.events_topic, settings.item_touches_topic, settings.item_activity_topic]
    compacted = [settings.model_updates_topic, *changelog_topics(settings)]
    bootstrap = bootstrap_from_url(settings.kafka_url)
    try:
        await kafka_admin.prepare_topics(bootstrap, all_topics(settings), settings.partitions,
                                         settings.replication_factor, placed, topic_configs(settings), compacted)
    except KafkaConnectionError as exc:  # only here: a connection lost later is not a wrong RECO_KAFKA_URL
        raise BrokerUnreachable(f"cannot reach the broker at {bootstrap} (RECO_KAFKA_URL): {exc}") from exc


def declare_topics(app: faust.App, settings: Settings) -> Topics:
    def topic(name: str) -> TopicT:
        return app.topic(name, key_type=bytes, value_type=bytes, partitions=settings.partitions,
                         key_serializer="raw", value_serializer="raw")

    return Topics(
        events=topic(settings.events_topic),
        recommendations=topic(settings.recommendations_topic),
        dead_letters=topic(settings.dead_letter_topic),
        item_activity=topic(settings.item_activity_topic),
        item_touches=topic(settings.item_touches_topic),
        alerts=topic(settings.alerts_topic),
        training_samples=topic(settings.training_samples_topic),
    )


async def publish(app: faust.App, topic: TopicT, key: bytes | None, value: bytes) -> Awaitable[RecordMetadata]:
    """Hand one raw message to the app's producer, keyed partitioning as ``topic.send`` does; returns its
    delivery (awaiting it waits for the broker's ack, and raises the error of a send that failed).

    For the per-event outputs (recommendations, training samples, item
    activity): ``topic.send`` wraps each message in Faust's future and
    callback bookkeeping, which cost ~10% of a busy worker's time.
    """
    return await app.producer.send(topic.get_topic_name(), key, value, None, None, None)
