"""The one event record type shared by the stream, replay, training and evaluation."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

EVENT_TYPES: tuple[str, ...] = ("view", "click", "add_to_cart", "purchase")


@dataclass(frozen=True, slots=True)
class Event:
    """One shopper interaction with an item.

    ``ts`` is the event time in Unix seconds (float). Ids are strings so that
    numeric and opaque ids from different shops share one type.
    """

    user_id: str
    item_id: str
    event_type: str
    ts: float
    session_id: str | None = None
    price: float | None = None
    quantity: int | None = None
    category: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The wire form: optional fields that are unset are left out. (Every field is a plain value, so
        ``dataclasses.asdict``'s recursive deep copy, 80% of a replay's live check, is not needed.)"""
        return {k: v for k in _FIELDS if (v := getattr(self, k)) is not None}


_FIELDS = tuple(f.name for f in fields(Event))
