"""A worker refuses to start on an events topic whose partition count is not RECO_PARTITIONS, or on a
changelog that is not compacted."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from stream_app.kafka_admin import TopicError, ensure_topics, partition_counts
from stream_app.tables import changelog_topics
from stream_app.topics import prepare_all
from tests.integration.test_redis_outage import exit_code

pytestmark = pytest.mark.integration


def test_a_worker_refuses_an_events_topic_with_another_partition_count(stack, settings, start_worker):
    """Users are placed by the partition count (their events, their state's changelog): a topic with
    another count would dead-letter most events as wrong_partition, so the worker says so and stops."""
    two = replace(settings, events_topic=f"{settings.events_topic}-two",
                  item_touches_topic=f"{settings.item_touches_topic}-new")
    asyncio.run(ensure_topics(stack.bootstrap, [two.events_topic], 2))
    worker = start_worker(two)
    code = asyncio.run(exit_code(worker.process, 60.0))
    assert code == 2, worker.log()[-3000:]
    assert f"topic '{two.events_topic}' has 2 partitions" in worker.log()
    assert f"RECO_PARTITIONS is {two.partitions}" in worker.log()
    # the topics it would have used and that did not exist were created with RECO_PARTITIONS
    assert asyncio.run(partition_counts(stack.bootstrap, [two.item_touches_topic])) == {
        two.item_touches_topic: two.partitions}


def test_a_changelog_the_broker_keeps_under_time_retention_is_refused(stack, settings):
    """A changelog that existed before the first worker (the broker auto-created it for a client that asked
    for its metadata, or someone made it by hand) keeps the broker's default policy, delete after a week,
    and Faust leaves it so: a worker rebuilding its tables then finds only the last week of every user."""
    loose = replace(settings, app_id=f"{settings.app_id}-loose")
    users_changelog = changelog_topics(loose)[0]
    asyncio.run(ensure_topics(stack.bootstrap, [users_changelog], loose.partitions,
                              configs={users_changelog: {"cleanup.policy": "delete"}}))
    with pytest.raises(TopicError, match=f"topic '{users_changelog}' has cleanup.policy='delete'"):
        asyncio.run(prepare_all(loose))
    tight = replace(settings, app_id=f"{settings.app_id}-tight")
    asyncio.run(ensure_topics(stack.bootstrap, changelog_topics(tight), tight.partitions,
                              configs={c: {"cleanup.policy": "compact"} for c in changelog_topics(tight)}))
    asyncio.run(prepare_all(tight))  # compacted, as Faust creates them: fine
