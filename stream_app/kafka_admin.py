"""Create the service's topics up front, with the configured partition count, and check the counts and the
compacted topics' cleanup policy."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

TOPIC_ALREADY_EXISTS = 36  # Kafka's error code: another client created it meanwhile


class TopicError(RuntimeError):
    """The broker refused to create a topic, or a topic has another partition count than the settings', or a
    topic that must be compacted is not."""


@contextlib.asynccontextmanager
async def admin_client(bootstrap: str) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def ensure_topics(bootstrap: str, names: Iterable[str], partitions: int, replication: int = 1,
                        configs: Mapping[str, Mapping[str, str]] | None = None) -> None:
    """Create each topic unless it exists (existing topics are left as they are), with its ``configs`` (topic
    name -> Kafka topic settings); ``TopicError`` if the broker refuses one (aiokafka reports such errors in
    the response, it does not raise them)."""
    async with admin_client(bootstrap) as admin:
        await _create_missing(admin, names, partitions, replication, configs or {})


async def partition_counts(bootstrap: str, names: Iterable[str]) -> dict[str, int]:
    """How many partitions each existing topic has (topics that do not exist are left out)."""
    async with admin_client(bootstrap) as admin:
        return await _partition_counts(admin, names)


async def prepare_topics(bootstrap: str, names: Iterable[str], partitions: int, replication: int,
                         placed: Iterable[str], configs: Mapping[str, Mapping[str, str]] | None = None,
                         compacted: Iterable[str] = ()) -> None:
    """``ensure_topics``, then ``TopicError`` unless each ``placed`` topic has ``partitions`` partitions: a
    user's events, their state's changelog and the item touches are placed by the partition count, so a
    topic with another count splits them (its events would be dead-lettered as ``wrong_partition``). Also
    ``TopicError`` if a ``compacted`` topic that exists is not compacted (see ``_not_compacted``)."""
    async with admin_client(bootstrap) as admin:
        existing = await _create_missing(admin, names, partitions, replication, configs or {})
        counts = await _partition_counts(admin, placed)
        loose = await _not_compacted(admin, [n for n in dict.fromkeys(compacted) if n in existing])
    wrong = {name: n for name, n in counts.items() if n != partitions}
    if wrong:
        raise TopicError(f"RECO_PARTITIONS is {partitions} but " + ", ".join(
            f"topic {name!r} has {n} partitions" for name, n in sorted(wrong.items()))
            + ": set RECO_PARTITIONS to the topics' count (or recreate them with it)")
    if loose:
        raise TopicError(", ".join(f"topic {name!r} has cleanup.policy={policy!r}" for name, policy in
                                   sorted(loose.items()))
                         + ": it must be compacted (a changelog under time retention loses users' state once "
                         "its records expire): set cleanup.policy=compact on it, e.g. with kafka-configs.sh")


async def _not_compacted(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, str]:
    """The topics of ``names`` (existing ones) whose ``cleanup.policy`` lacks ``compact``, with that policy.

    Faust, like ``_create_missing``, leaves a topic that exists as it is: one
    created earlier by the broker's auto-creation (a client that asked for
    its metadata first) or by hand gets the broker's default, ``delete``
    with a week's retention, and keeps it. A topic that does not exist yet
    is created compacted. A broker that cannot say is not held against it.
    """
    if not names:
        return {}
    responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
    loose = {}
    for response in responses:
        for error_code, _, _, name, entries, *_ in response.resources:
            policy = next((e[1] for e in entries if e[0] == "cleanup.policy"), None) if not error_code else None
            if policy is not None and "compact" not in policy.split(","):
                loose[name] = policy
    return loose


async def _create_missing(admin: AIOKafkaAdminClient, names: Iterable[str], partitions: int, replication: int,
                          configs: Mapping[str, Mapping[str, str]]) -> set[str]:
    """Create the topics of ``names`` that do not exist; returns every topic that exists now."""
    existing = set(await admin.list_topics())
    new = [NewTopic(n, partitions, replication, topic_configs=dict(configs.get(n, {})))
           for n in dict.fromkeys(names) if n not in existing]
    if not new:
        return existing
    response = await admin.create_topics(new)
    refused = [(t[0], t[1], t[2] if len(t) > 2 else "") for t in response.topic_errors
               if t[1] not in (0, TOPIC_ALREADY_EXISTS)]
    if refused:
        raise TopicError("the broker refused to create " + "; ".join(
            f"{name} (error {code}{': ' + str(msg) if msg else ''})" for name, code, msg in refused))
    return existing | {t.name for t in new}


async def _partition_counts(admin: AIOKafkaAdminClient, names: Iterable[str]) -> dict[str, int]:
    described = await admin.describe_topics(list(names))
    return {t["topic"]: len(t["partitions"]) for t in described if not t.get("error_code") and t["partitions"]}
