"""Create the service's topics up front, with the configured partition count, and check the counts."""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

TOPIC_ALREADY_EXISTS = 36  # Kafka's error code: another client created it meanwhile


class TopicError(RuntimeError):
    """The broker refused to create a topic, or a topic has another partition count than the settings'."""


async def ensure_topics(bootstrap: str, names: Iterable[str], partitions: int, replication: int = 1) -> None:
    """Create each topic unless it exists (existing topics are left as they are); ``TopicError`` if the
    broker refuses one (aiokafka reports such errors in the response, it does not raise them)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(n, partitions, replication) for n in dict.fromkeys(names) if n not in existing]
        if new:
            response = await admin.create_topics(new)
            refused = [(t[0], t[1], t[2] if len(t) > 2 else "") for t in response.topic_errors
                       if t[1] not in (0, TOPIC_ALREADY_EXISTS)]
            if refused:
                raise TopicError("the broker refused to create " + "; ".join(
                    f"{name} (error {code}{': ' + str(msg) if msg else ''})" for name, code, msg in refused))
    finally:
        await admin.close()


async def partition_counts(bootstrap: str, names: Iterable[str]) -> dict[str, int]:
    """How many partitions each existing topic has (topics that do not exist are left out)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(list(names))
    finally:
        await admin.close()
    return {t["topic"]: len(t["partitions"]) for t in described if not t.get("error_code") and t["partitions"]}


async def check_partitions(bootstrap: str, names: Iterable[str], partitions: int) -> None:
    """``TopicError`` unless each topic has ``partitions`` partitions: a user's events, their state's
    changelog and the item touches are placed by the partition count, so a topic with another count
    splits them (its events would be dead-lettered as ``wrong_partition``)."""
    counts = await partition_counts(bootstrap, names)
    wrong = {name: n for name, n in counts.items() if n != partitions}
    if wrong:
        raise TopicError(f"RECO_PARTITIONS is {partitions} but " + ", ".join(
            f"topic {name!r} has {n} partitions" for name, n in sorted(wrong.items()))
            + ": set RECO_PARTITIONS to the topics' count (or recreate them with it)")
