"""What every detector shares: a keyed, JSON-able state per entity and a pure ``step``.

``step(state, event, context) -> (new_state, alert | None)`` is the whole
detector: the stream reads ``state`` from a table keyed by ``key(event)``,
calls ``step`` and writes the new state back; ``observe`` does the same over
an in-memory dict (``states``) for replay, evaluation and tests. ``step``
never mutates ``state``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Container
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from models.anomaly.alerts import Alert
from models.anomaly.windows import Recent
from models.data.events import Event

State = dict[str, Any]
Step = tuple[State | None, Alert | None]  # what ``Detector.step`` returns
ConfigT = TypeVar("ConfigT")


@dataclass(frozen=True, slots=True)
class UserContext:
    """What the user side knows about an event's user when an item-keyed detector sees the event.

    On the stream the user agent attaches it (``to_dict``) when it re-keys the
    event by item, since item-keyed state cannot read the user table.
    """

    first_seen_ts: float  # the user's first event ever seen
    flagged: bool = False  # the user is quarantined by an earlier alert

    def to_dict(self) -> dict[str, Any]:
        return {"first_seen_ts": self.first_seen_ts, "flagged": self.flagged}


def event_row(event: Event) -> tuple[Any, ...]:
    """A compact JSON-able row of an event, kept as alert evidence."""
    return (event.user_id, event.item_id, event.event_type, event.ts, event.price)


def examples(recent: Recent) -> list[dict[str, Any]]:
    """Example events (``Event.to_dict``) from compact rows."""
    return [Event(user_id=u, item_id=i, event_type=t, ts=ts, price=p).to_dict() for u, i, t, ts, p in recent]


class Detector(ABC, Generic[ConfigT]):
    """One anomaly rule over one kind of entity (user or item)."""

    name: ClassVar[str]
    entity_type: ClassVar[str] = "user"

    def __init__(self, config: ConfigT) -> None:
        self.config = config
        self.states: dict[str, State] = {}  # entity id -> state: the in-memory twin of a Faust table

    def key(self, event: Event) -> str:
        """The entity whose state this event updates."""
        return event.user_id if self.entity_type == "user" else event.item_id

    @property
    def horizon_s(self) -> float:
        """How long after an entity's latest event its state still matters (its window size by default)."""
        return float(self.config.window_s)  # type: ignore[attr-defined]

    @abstractmethod
    def step(self, state: State | None, event: Event, context: UserContext | None = None) -> Step:
        """The entity's state after ``event`` and the alert it triggers, if any (``state`` unchanged).

        An event the detector ignores returns ``state`` as it was (``None`` for an unseen entity).
        """

    def observe(self, event: Event, context: UserContext | None = None) -> list[Alert]:
        """``step`` against the in-memory states."""
        key = self.key(event)
        state, alert = self.step(self.states.get(key), event, context)
        if state is not None:
            self.states[key] = state
        return [] if alert is None else [alert]

    def is_idle(self, state: State, now: float) -> bool:
        """Whether the entity's latest event is more than ``horizon_s`` before ``now`` (never, without one).

        Latest by event time, not arrival: one late event must not make an active entity look idle.
        """
        if not state["recent"]:
            return False
        latest = max(state.get("newest", float("-inf")), *(row[3] for row in state["recent"]))
        return latest + self.horizon_s < now

    def expire(self, now: float, keep: Container[str] = frozenset()) -> int:
        """Drop the states of idle entities (``is_idle``) not in ``keep`` (what table expiry does); returns how many."""
        idle = [key for key, state in self.states.items() if key not in keep and self.is_idle(state, now)]
        for key in idle:
            del self.states[key]
        return len(idle)

    def alert(
        self, event: Event, window: tuple[float, float], score: float, evidence: dict[str, Any], recent: Recent,
        severity: str,
    ) -> Alert:
        """An alert on this event's entity with example events; ``expires_ts`` is set by a ``QuarantinePolicy``."""
        return Alert(
            entity_type=self.entity_type,
            entity_id=self.key(event),
            detector=self.name,
            severity=severity,
            score=float(score),
            window_start=float(window[0]),
            window_end=float(window[1]),
            event_ts=event.ts,
            evidence={**evidence, "examples": examples(recent)},
            expires_ts=event.ts,
        )
