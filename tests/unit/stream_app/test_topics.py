"""Topic preparation: every topic whose partition count places users or items is checked."""

from __future__ import annotations

import asyncio

from stream_app import kafka_admin, topics
from stream_app.settings import Settings


def test_prepare_all_checks_the_count_of_every_topic_that_places_keys(monkeypatch) -> None:
    asked = {}

    async def prepare_topics(bootstrap, names, partitions, replication, placed, configs, compacted):
        asked.update(names=list(names), placed=list(placed), configs=configs, compacted=list(compacted))

    monkeypatch.setattr(kafka_admin, "prepare_topics", prepare_topics)
    settings = Settings()
    asyncio.run(topics.prepare_all(settings))
    # events place users; item-touches and item-activity (the item-stats table's source) place items
    assert set(asked["placed"]) == {settings.events_topic, settings.item_touches_topic, settings.item_activity_topic}
    assert set(asked["placed"]) <= set(asked["names"])
    assert asked["configs"][settings.model_updates_topic]["cleanup.policy"] == "compact"
    # the topics that must stay compacted: model-updates and every table's changelog, as Faust names them
    assert asked["compacted"] == [settings.model_updates_topic, "reco-user-state-changelog",
                                  "reco-item-stats-changelog", "reco-item-anomaly-state-changelog"]
