"""Training samples: one per processed event, the user's history before it and the item touched.

The worker emits a sample for every event it scores (to a training-samples
topic, as JSON via ``to_dict``); the trainer (``models.online.learner``)
learns "given this history, the user next touched ``target``" from them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from models.data.events import Event
from models.history import History, split_history
from models.item_stats import EVENT_WEIGHTS


@dataclass(frozen=True)
class TrainingSample:
    """The user's latest ``items`` (oldest first) before touching ``target``, and who served them.

    ``weight`` scales the sample's loss (by default the event type's weight, as in
    popularity and co-visitation); ``model_version`` is the version that scored
    the event's micro-batch (the one the user saw, unless a swap came between
    the event and its batch); ``ts_ms`` is the event time in Unix ms.
    """

    user_id: str
    items: list[str] = field(hash=False)
    types: list[str] = field(hash=False)
    target: str
    event_type: str
    weight: float
    ts_ms: int
    model_version: str

    def __post_init__(self) -> None:
        if len(self.items) != len(self.types):
            raise ValueError(f"{len(self.items)} history items but {len(self.types)} event types")

    @property
    def ts(self) -> float:
        """Event time in Unix seconds (what ``Scorer.observe`` takes)."""
        return self.ts_ms / 1000.0

    @property
    def history(self) -> list[tuple[str, str]]:
        """The history as (item, event type) pairs, oldest first."""
        return list(zip(self.items, self.types))

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able wire form (a training-samples topic message)."""
        return {
            "user_id": self.user_id,
            "items": list(self.items),
            "types": list(self.types),
            "target": self.target,
            "event_type": self.event_type,
            "weight": self.weight,
            "ts_ms": self.ts_ms,
            "model_version": self.model_version,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainingSample:
        """The sample ``to_dict`` wrote; raises ``KeyError``/``ValueError``/``TypeError`` on a bad message."""
        return cls(
            user_id=str(d["user_id"]),
            items=[str(i) for i in d["items"]],
            types=[str(t) for t in d["types"]],
            target=str(d["target"]),
            event_type=str(d["event_type"]),
            weight=float(d["weight"]),
            ts_ms=int(d["ts_ms"]),
            model_version=str(d["model_version"]),
        )


def sample_time(ts: float) -> float:
    """``ts`` as a sample carries it (whole ms, ``TrainingSample.ts``). Whatever decides at an event whether it
    may train compares this, not ``ts``, with a quarantine's bounds, as the samples' release check does: an
    event under half a ms before a quarantine's end was held back or trained depending on when the alert came."""
    return _whole_ms(ts) / 1000.0


def _whole_ms(ts: float) -> int:
    return round(ts * 1000.0)


def sample_from(
    history: History,
    event: Event,
    model_version: str,
    max_len: int = 50,
    *,
    weights: Mapping[str, float] = EVENT_WEIGHTS,
) -> TrainingSample:
    """The sample for ``event`` given the user's ``history`` before it (only the latest ``max_len`` kept)."""
    items, types = split_history(history)
    keep = max(0, max_len)
    return TrainingSample(
        user_id=event.user_id,
        items=items[len(items) - keep :] if keep else [],
        types=types[len(types) - keep :] if keep else [],
        target=event.item_id,
        event_type=event.event_type,
        weight=float(weights.get(event.event_type, 1.0)),
        ts_ms=_whole_ms(event.ts),
        model_version=model_version,
    )


def log_samples(
    events: Sequence[Event],
    model_version: str = "",
    max_len: int = 50,
    *,
    histories: Mapping[str, History] | None = None,
) -> list[TrainingSample]:
    """One sample per event of a log, in time order (stable), each user's history advancing as it goes.

    ``histories``: users' events before the log. What the worker would have
    emitted had it processed the log (e.g. to seed the learner's replay buffer
    with the pre-training log).
    """
    state = {u: list(h) for u, h in (histories or {}).items()}
    out = []
    for ev in sorted(events, key=lambda e: e.ts):
        history = state.setdefault(ev.user_id, [])
        out.append(sample_from(history, ev, model_version, max_len))
        history.append((ev.item_id, ev.event_type))
        del history[: max(0, len(history) - max_len)]
    return out
