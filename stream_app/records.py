"""Wire schemas: incoming events (with validation), recommendations, dead letters.

``decode_event`` turns the raw bytes of one Kafka message into an
:class:`~models.data.events.Event` or a :class:`Rejection` with a precise
reason; nothing is dropped silently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson

from models.data.events import EVENT_TYPES, Event
from models.data.times import BadTime, parse_time

REQUIRED = ("user_id", "item_id", "event_type", "ts")
OPTIONAL_STR = ("session_id", "category")


# A dead letter carries the rejected message's bytes; beyond this many they are cut (see ``dead_letter``).
# Well under what a producer sends in one request (Faust's 1,000,000 bytes; Kafka's default message limit
# is about 1 MiB), so an event the broker took always fits in its dead letter, headers and all.
DEAD_LETTER_MAX_BYTES = 512 * 1024
# ...and its key (the original key, a user id when keyed right) beyond this many: a key is not checked
# against the limit above, and a huge one beside a value near it did not fit in a producer request either.
DEAD_LETTER_MAX_KEY_BYTES = 1024


# Every rejection code an event can get (``decode_event``'s, and ``pipeline.on_its_partition``'s): the worker's
# metrics start a zero series for each. The trainer's ``bad_sample`` is not an event's.
REJECTION_CODES = ("empty", "oversize", "not_json", "not_object", "missing_field", "bad_field", "unknown_event_type",
                   "bad_time", "wrong_partition")


# A rejection's detail is cut to this many characters: it often quotes the event (an unknown event type, a
# user id), and uncut it made a dead letter's header as large as the event, beyond what a producer sends.
DETAIL_MAX_CHARS = 200


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an event was refused. ``code`` is stable; ``detail`` is for people, at most ``DETAIL_MAX_CHARS``."""

    code: str
    detail: str

    def __post_init__(self) -> None:
        if len(self.detail) > DETAIL_MAX_CHARS:
            object.__setattr__(self, "detail", self.detail[: DETAIL_MAX_CHARS - 3] + "...")

    def headers(self) -> list[tuple[str, bytes]]:
        """Kafka headers that carry the reason next to the original bytes."""
        return [("dlq-reason", self.code.encode()), ("dlq-detail", self.detail.encode())]


def dead_letter(key: bytes | None, value: bytes | None, why: Rejection, topic: str, partition: int, offset: int
                ) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
    """A rejected message's dead-letter key, value and headers: its bytes, the reason, and where it came from.

    Value bytes beyond ``DEAD_LETTER_MAX_BYTES`` are cut, and the headers
    say so (``dlq-truncated``, ``dlq-original-bytes``), as are key bytes
    beyond ``DEAD_LETTER_MAX_KEY_BYTES`` (``dlq-key-truncated``,
    ``dlq-original-key-bytes``); the whole message stays in its topic at
    the offset the headers give. Sent whole, an event near the broker's
    limit did not fit in a producer request beside its headers: the send
    failed, the worker stopped, and the same batch stopped it again at
    every restart.
    """
    headers = why.headers() + [("source-topic", topic.encode()), ("source-partition", str(partition).encode()),
                               ("source-offset", str(offset).encode())]
    if value is not None and len(value) > DEAD_LETTER_MAX_BYTES:
        headers += [("dlq-truncated", b"true"), ("dlq-original-bytes", str(len(value)).encode())]
        value = value[:DEAD_LETTER_MAX_BYTES]
    if key is not None and len(key) > DEAD_LETTER_MAX_KEY_BYTES:
        headers += [("dlq-key-truncated", b"true"), ("dlq-original-key-bytes", str(len(key)).encode())]
        key = key[:DEAD_LETTER_MAX_KEY_BYTES]
    return key, value, headers


def decode_event(
    raw: bytes | None, *, max_bytes: int, now: float, max_future_skew_s: float
) -> Event | Rejection:
    """Validate one message value; see ``Rejection`` codes in the README."""
    if raw is None or len(raw) == 0:
        return Rejection("empty", "message has no value")
    if len(raw) > max_bytes:
        return Rejection("oversize", f"{len(raw)} bytes > limit {max_bytes}")
    try:
        d = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Rejection("not_json", str(exc)[:200])
    if not isinstance(d, dict):
        return Rejection("not_object", f"expected a JSON object, got {type(d).__name__}")
    for name in REQUIRED:
        if d.get(name) is None or d.get(name) == "":
            return Rejection("missing_field", name)
    for name in ("user_id", "item_id"):
        if isinstance(d[name], float) and d[name].is_integer() and abs(d[name]) >= 2 ** 63:
            return Rejection("bad_field", f"{name} is an integer beyond 64 bits: send it as a string")
        if not isinstance(d[name], (str, int)) or isinstance(d[name], bool):
            return Rejection("bad_field", f"{name} must be a string or integer")
    if d["event_type"] not in EVENT_TYPES:
        return Rejection("unknown_event_type", f"{d['event_type']!r} not in {list(EVENT_TYPES)}")
    ts = _parse_time(d["ts"])
    if isinstance(ts, Rejection):
        return ts
    if ts > now + max_future_skew_s:
        return Rejection("bad_time", f"ts {ts:.0f} is {ts - now:.0f} s in the future")
    optional = _optional_fields(d)
    if isinstance(optional, Rejection):
        return optional
    return Event(str(d["user_id"]), str(d["item_id"]), d["event_type"], ts, **optional)


def _parse_time(value: Any) -> float | Rejection:
    """Unix seconds (number) or an ISO-8601 string with a time zone (``models.data.times``, the rule the
    log readers share)."""
    try:
        return parse_time(value)
    except BadTime as exc:
        return Rejection("bad_time", str(exc))


def _optional_fields(d: dict[str, Any]) -> dict[str, Any] | Rejection:
    out: dict[str, Any] = {}
    for name in OPTIONAL_STR:
        if d.get(name) is not None:
            if not isinstance(d[name], (str, int)) or isinstance(d[name], bool):
                return Rejection("bad_field", f"{name} must be a string or integer")
            out[name] = str(d[name])
    price = d.get("price")
    if price is not None:
        if isinstance(price, bool) or not isinstance(price, (int, float)) or not math.isfinite(price) or price < 0:
            return Rejection("bad_field", "price must be a non-negative number")
        out["price"] = float(price)
    quantity = d.get("quantity")
    if quantity is not None:
        # 2.0 as well: what a producer that writes every number as a float (Python's json.dumps of a float) sends
        whole = isinstance(quantity, float) and math.isfinite(quantity) and quantity.is_integer()
        if isinstance(quantity, bool) or not (isinstance(quantity, int) or whole) or quantity <= 0:
            return Rejection("bad_field", f"quantity must be a positive whole number, not {quantity!r}")
        out["quantity"] = int(quantity)
    return out


def recommendation_record(
    *,
    user_id: str,
    items: list[dict[str, Any]],
    model_version: str,
    event_ts: float | None,
    scored_at: float,
    events_seen: int | None,
) -> dict[str, Any]:
    """The results-topic message and the Redis value for one user.

    ``items``: [{"item_id", "score", "contributions": {scorer: share}, "because_of"}].
    ``event_ts``: event time of the newest event that triggered this list.
    ``events_seen``: how many of the user's events the state has applied.
    Both are None in the list for a user without one (``cold_start``).
    """
    return {
        "user_id": user_id,
        "items": items,
        "model_version": model_version,
        "event_ts": event_ts,
        "scored_at": scored_at,
        "events_seen": events_seen,
    }
