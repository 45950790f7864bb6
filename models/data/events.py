"""The one event record type shared by the stream, replay, training and evaluation."""

from __future__ import annotations

from dataclasses import asdict, dataclass
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
        """The wire form: optional fields that are unset are left out."""
        return {k: v for k, v in asdict(self).items() if v is not None}
