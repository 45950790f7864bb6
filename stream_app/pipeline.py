"""One micro-batch of raw events in, state updates and recommendations out.

Plain code with no Faust in it: the agents call it with their table and
topics, the offline replay path calls it with dicts, and tests call it directly.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from models.data.events import Event
from models.heuristic import Scored
from models.anomaly.alerts import Alert
from models.anomaly.base import UserContext
from models.anomaly.monitor import AnomalyMonitor
from models.online.samples import TrainingSample, sample_from, sample_time
from stream_app.delivery_counts import PROCESSED, QUARANTINED, REJECTED, Deliveries, tally
from stream_app.records import Rejection, decode_event, recommendation_record
from stream_app.settings import Settings
from stream_app.state import ItemActivity, StateConfig, UserState, apply_events, first_time
from stream_app.touches import Touch, partition_of, touch


@dataclass(frozen=True, slots=True)
class Incoming:
    """One raw message as read from the events topic."""

    value: bytes | None
    key: bytes | None = None
    partition: int = 0
    offset: int = 0
    timestamp_ms: int | None = None  # the Kafka message timestamp, for event-to-Redis latency


@dataclass(frozen=True, slots=True)
class DeadLetter:
    message: Incoming
    rejection: Rejection


class Recommender(Protocol):
    """Scores users from their state: the baseline (``scoring``) or the ensemble (``model_scoring``)."""

    model_version: str
    uses_item_activity: bool  # whether ``recommend`` reads item statistics kept by the stream

    async def recommend(
        self, users: Mapping[str, UserState], fresh: Mapping[str, ItemActivity]
    ) -> dict[str, list[Scored]]:
        """Top-k for each user; ``fresh`` is this batch's item activity, not yet in the store."""
        ...


@dataclass
class BatchOutput:
    """Everything a batch produced; the caller emits it."""

    states: dict[bytes, UserState] = field(default_factory=dict)
    activity: dict[str, ItemActivity] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    samples: list[TrainingSample] = field(default_factory=list)  # one per applied event, in order per user
    alerts: list[Alert] = field(default_factory=list)  # anomaly alerts this batch raised
    touches: list[Touch] = field(default_factory=list)  # observed events for the item-keyed detectors
    counters: Counter[str] = field(default_factory=Counter)
    quarantined_at: list[tuple[int, int]] = field(default_factory=list)  # (partition, offset) kept out of learning
    scoring_s: float = 0.0
    scored: list[Incoming] = field(default_factory=list)  # the messages of the scored events (re-deliveries too)


def deliveries_of(batch: Sequence[Incoming], out: BatchOutput) -> Deliveries:
    """Each of the batch's events by partition, with the kind ``tally`` counts it as."""
    rejected = {(d.message.partition, d.message.offset) for d in out.dead_letters}
    held = set(out.quarantined_at)
    kinds: Deliveries = defaultdict(list)
    for m in batch:
        at = (m.partition, m.offset)
        kinds[m.partition].append((m.offset, REJECTED if at in rejected else QUARANTINED if at in held else PROCESSED))
    return dict(kinds)


def count_deliveries(batch: Sequence[Incoming], out: BatchOutput, counted: Mapping[int, int],
                     deliveries: Deliveries | None = None) -> dict[int, int]:
    """Re-count ``out``'s events (``deliveries``, by default ``deliveries_of(batch, out)``) against the
    store's counted offsets (``tally``); returns the offsets to raise them to.

    The user state and the counters are written to different systems (the
    changelog, the store), so a crash can keep one and lose the other. The
    state decides what is applied; the counters follow the store: an event at
    or below its partition's counted offset was counted on an earlier delivery
    and is a duplicate here, any other one is counted now (processed or
    rejected), even if the state already held it. The store counts with
    the offsets it holds when it writes (``Store.write_recommendations``);
    the worker calls this afterwards with the offsets the store says it
    counted against, so its own figures (metrics, logs) are the store's.
    This keeps events_in == processed + rejected + duplicates and counts
    every event as processed or rejected exactly once, even when two
    workers briefly own one partition. ``quarantined`` is re-counted the
    same way: a batch whose delivery failed after its counters were
    written comes again with its states unwritten, and its quarantined
    events are held back again, so counting them again broke processed -
    quarantined = samples sent + dropped + lost.
    """
    counts, newest = tally(deliveries_of(batch, out) if deliveries is None else deliveries, counted)
    out.counters.pop("quarantined", None)
    for name, n in {**counts, "events_in": len(batch)}.items():
        out.counters[name] = n
    return newest


def counted_rejections(out: BatchOutput, counted: Mapping[int, int]) -> list[str]:
    """The reasons of the batch's rejections ``count_deliveries`` counts now (a re-delivered one, counted
    on its first delivery, is not counted again): what ``reco_dead_letters{reason}`` adds."""
    return [d.rejection.code for d in out.dead_letters if d.message.offset > counted.get(d.message.partition, -1)]


def counted_kafka_times_ms(out: BatchOutput, counted: Mapping[int, int]) -> list[int]:
    """The Kafka timestamps of the batch's scored events ``count_deliveries`` counts as processed now: what
    ``reco_event_to_redis_seconds`` observes. A re-delivered event, counted on its first delivery, is left
    out: observed again, it added the outage before its re-delivery as latency."""
    return [m.timestamp_ms for m in out.scored if m.timestamp_ms and m.offset > counted.get(m.partition, -1)]


def offset_gaps(batch: Sequence[Incoming], counted: Mapping[int, int]) -> list[tuple[int, int, int]]:
    """Offsets a batch jumps over, as ``(partition, first missing, last missing)``.

    A partition's messages should follow on from its counted offset (-1: none
    counted yet, so where it starts is unknown) and from each other. On Apache
    Kafka a gap can be legitimate (transaction markers, compaction); anywhere
    else it means events were never delivered to this worker.
    """
    gaps = []
    last = {p: o for p, o in counted.items() if o >= 0}
    for m in sorted(batch, key=lambda m: (m.partition, m.offset)):
        before = last.get(m.partition)
        if before is not None and m.offset > before + 1:
            gaps.append((m.partition, before + 1, m.offset - 1))
        last[m.partition] = m.offset if before is None else max(before, m.offset)
    return gaps


def on_its_partition(event: Event, partition: int, partitions: int) -> Event | Rejection:
    """``event``, or a ``wrong_partition`` rejection if it is not on its user's partition.

    A user's state, and its duplicate check (one source offset per user),
    assume all of the user's events come through one partition: the one
    Kafka's default partitioner (murmur2 of the key, as the Java client and
    aiokafka) gives the user id, where the user-state changelog puts the
    state too. Events from a producer keyed otherwise (another key, no key,
    or librdkafka's default CRC32 partitioner) would split a user over
    partitions: later events dropped as duplicates, state recovered on the
    wrong worker. They are refused with a reason that says how to produce
    them instead.
    """
    expected = partition_of(event.user_id, partitions)
    if partition == expected:
        return event
    return Rejection("wrong_partition", f"user {event.user_id!r} belongs to partition {expected} of {partitions}, "
                     f"not {partition}: key events by user_id with Kafka's default (murmur2) partitioner "
                     "(librdkafka: partitioner=murmur2_random)")


def state_config(settings: Settings) -> StateConfig:
    return StateConfig(
        history_len=settings.history_len,
        covis_window=settings.covis_window,
        half_life_s=settings.popularity_half_life_s,
    )


async def process_batch(
    batch: Sequence[Incoming],
    table: Mapping[bytes, UserState],
    recommender: Recommender,
    settings: Settings,
    *,
    monitor: AnomalyMonitor | None = None,
    clock: Callable[[], float] = time.time,
) -> BatchOutput:
    """Validate, run the anomaly detectors, apply each user's events in order, then score every touched user once.

    ``table`` is read, never written: the caller stores ``out.states``. Each
    state carries the monitor's snapshot of its user (``"anomaly"``), so a
    restarted worker's monitor carries on from the table; a re-delivered event
    is never observed twice.
    Counters satisfy events_in == processed + rejected + duplicates, as the
    user states see it (the store counts against its counted offsets when
    the worker writes, ``count_deliveries``); ``quarantined`` counts processed
    events kept out of learning (users or items under an alert).
    """
    out = BatchOutput()
    now = clock()
    by_user: dict[str, list[tuple[int, Event]]] = defaultdict(list)
    messages: dict[str, list[Incoming]] = defaultdict(list)
    position: dict[int, tuple[int, int]] = {}  # id(event) -> (partition, offset)
    for msg in batch:
        ev = decode_event(
            msg.value, max_bytes=settings.max_event_bytes, now=now,
            max_future_skew_s=settings.max_future_skew_s,
        )
        if not isinstance(ev, Rejection):
            ev = on_its_partition(ev, msg.partition, settings.partitions)
        if isinstance(ev, Rejection):
            out.dead_letters.append(DeadLetter(msg, ev))
        else:
            by_user[ev.user_id].append((msg.offset, ev))
            messages[ev.user_id].append(msg)
            position[id(ev)] = (msg.partition, msg.offset)
            if monitor is not None:
                alerts, context = observe_new(monitor, table.get(ev.user_id.encode()), msg.offset, ev)
                out.alerts += alerts
                if context is not None:
                    out.touches.append(touch(ev, context))
    out.counters["events_in"] = len(batch)
    out.counters["rejected"] = len(out.dead_letters)

    def out_of_quarantine(ev: Event) -> bool:
        assert monitor is not None
        if monitor.holds_back(ev.user_id, ev.item_id, sample_time(ev.ts)):
            out.counters["quarantined"] += 1
            out.quarantined_at.append(position[id(ev)])
            return False
        return True

    cfg = state_config(settings)
    activity = out.activity if recommender.uses_item_activity else None
    applied_events: list[tuple[list[Sequence[Any]], Event]] | None = (
        [] if settings.emit_training_samples else None)
    touched: dict[str, UserState] = {}
    newest_ts: dict[str, float] = {}
    for user, events in by_user.items():
        key = user.encode()
        state, applied, dups = apply_events(table.get(key), events, activity, cfg, applied_events,
                                            learn_from=None if monitor is None else out_of_quarantine)
        out.counters["processed"] += applied
        out.counters["duplicates"] += dups
        if applied:
            out.states[key] = state
        if applied or dups:  # a re-delivery after a crash re-scores, so Redis catches up with the state
            touched[user] = state
            newest_ts[user] = state["events"][-1][2]  # the newest by event time: a late event does not lower it
            out.scored.extend(messages[user])

    if monitor is not None:
        for key, state in out.states.items():
            state["anomaly"] = monitor.user_snapshot(key.decode())  # the monitor's part travels with the user
    out.samples = [sample_from(history, ev, recommender.model_version, settings.history_len)
                   for history, ev in applied_events or ()]
    if touched:
        started = time.perf_counter()
        ranked = await recommender.recommend(touched, out.activity)
        out.scoring_s = time.perf_counter() - started
        scored_at = clock()
        for user, items in ranked.items():
            out.records.append(recommendation_record(
                user_id=user,
                items=[item_json(s) for s in items],
                model_version=recommender.model_version,
                event_ts=newest_ts[user],
                scored_at=scored_at,
                events_seen=touched[user]["seen"],
            ))
    return out


def item_json(s: Scored) -> dict[str, Any]:
    """One recommended item as JSON (unrounded: rounding every figure cost ~7% of a busy worker's time)."""
    d: dict[str, Any] = {"item_id": s.item_id, "score": s.score, "contributions": s.contributions}
    if s.because_of is not None:
        d["because_of"] = s.because_of
    return d


def observe_new(monitor: AnomalyMonitor, state: UserState | None, offset: int, event: Event
                ) -> tuple[list[Alert], UserContext | None]:
    """The monitor's alerts for ``event``, unless it is a re-delivery the user's state already holds, and,
    where the item-keyed detectors run elsewhere (``monitor.items`` false), the user's context to send them.

    A user the monitor does not hold (a restart, a partition that moved) is
    first restored from the snapshot and the latest events kept in their state
    (without a snapshot, first seen at the state's ``first_ts``, or in a state
    written before it existed the oldest of those events).
    A re-delivery raises nothing, but its touch is sent again: a worker that
    died after the state reached its changelog may not have sent it, and the
    item-keyed windows count distinct users, so a second copy changes nothing.
    """
    redelivered = state is not None and offset <= state["offset"]
    if redelivered and monitor.items:
        return [], None
    if state is not None and (state.get("anomaly") or state["events"]) and not monitor.knows(event.user_id):
        history = (Event(user_id=event.user_id, item_id=item, event_type=kind, ts=ts) for item, kind, ts in state["events"])
        # a state without a snapshot (written while detection was off): the user is as old as their first event
        # (their oldest kept one in a state older than ``first_ts``), not new from now on (every long-standing
        # shopper would be a shilling suspect for hours)
        snapshot = state.get("anomaly") or {"first_seen": first_time(state)}
        monitor.restore_user(event.user_id, snapshot, history)
    if redelivered:
        return [], monitor.user_context(event.user_id, event.ts)
    if monitor.items:
        return monitor.observe(event), None
    return monitor.observe_user(event)


def apply_batch_states(table: MutableMapping[bytes, UserState], out: BatchOutput) -> None:
    """Write a batch's new user states into the table (one write per user)."""
    for key, state in out.states.items():
        table[key] = state
