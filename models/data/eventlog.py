"""Readers for historical event logs, one per supported format.

Every reader yields :class:`Event` records, or for a line it cannot parse a
:class:`BadLine` carrying the original text, so that a replay can forward it
unchanged and let the stream's validation reject it with a reason. Times are
judged by the stream's own rule (``models.data.times.parse_time``: Unix seconds
or ISO-8601 with a zone, positive and finite; until 2026-12-07 the readers took
any ``float()``, a NaN included, and refused ISO-8601).

Formats:
- ``jsonl``: the project's own format, one JSON event per line (see ``Event``); ``ts`` as the stream takes it.
- ``taobao``: Taobao UserBehavior CSV ``user_id,item_id,category_id,behavior,unix_ts``.
  Behaviours map pv->view, fav->click, cart->add_to_cart, buy->purchase
  (``fav`` is an explicit interaction short of a cart, so it counts as a click).
- ``otto``: OTTO sessions JSON lines; the session id is the user id,
  clicks->click, carts->add_to_cart, orders->purchase, ``ts`` in ms.
- ``sequences``: one user per line, ``user_id item item ...`` oldest first
  (Amazon Beauty). These carry no times or types: each interaction becomes a
  ``purchase`` at the synthetic time ``SEQUENCE_EPOCH + position * SEQUENCE_STEP_S``,
  so position k of every user happens at the same moment and a replay
  interleaves users round by round while keeping each user's order.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from models.data.events import EVENT_TYPES, Event
from models.data.times import parse_time

SEQUENCE_EPOCH = 1_388_534_400.0  # 2014-01-01T00:00:00Z, inside the Amazon review years
SEQUENCE_STEP_S = 86_400.0  # one synthetic day between a user's consecutive items

TAOBAO_TYPES = {"pv": "view", "fav": "click", "cart": "add_to_cart", "buy": "purchase"}
OTTO_TYPES = {"clicks": "click", "carts": "add_to_cart", "orders": "purchase"}


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line a reader could not turn into an event, kept verbatim."""

    line_no: int
    text: str
    reason: str


def unreadable(path: str | Path) -> str | None:
    """Why ``path`` cannot be read as a log (for a one-line error), or None; a pipe or /dev/stdin is fine."""
    if os.path.isdir(path):
        return "a directory"
    if not os.access(path, os.R_OK):
        return "no such file, or not readable"
    return None


def log_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of each non-blank line; bytes that are not UTF-8 kept as surrogates, a byte-order
    mark at the start dropped (it would join the first user's id)."""
    with open(path, encoding="utf-8-sig", errors="surrogateescape") as fh:
        for n, line in enumerate(fh, start=1):
            line = line.rstrip("\n")
            if line.strip():
                yield n, line


def read_jsonl(path: Path) -> Iterator[Event | BadLine]:
    """The project's own JSON-lines format; invalid lines come back as ``BadLine``."""
    for n, line in log_lines(path):
        try:
            d = orjson.loads(line)
            ev = Event(
                user_id=_id(d["user_id"]),
                item_id=_id(d["item_id"]),
                event_type=str(d["event_type"]),
                ts=parse_time(d["ts"]),
                session_id=None if d.get("session_id") is None else str(d["session_id"]),
                price=None if d.get("price") is None else float(d["price"]),
                quantity=None if d.get("quantity") is None else int(d["quantity"]),
                category=None if d.get("category") is None else str(d["category"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            yield BadLine(n, line, f"{type(exc).__name__}: {exc}")
            continue
        if ev.event_type not in EVENT_TYPES:
            yield BadLine(n, line, f"unknown event_type {ev.event_type!r}")
            continue
        yield ev


def _id(value: object) -> str:
    """A user, item or session id: a string or an integer (not null, a boolean or an object)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TypeError(f"an id must be a string or integer, got {value!r:.40}")
    return str(value)


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number, got {value!r:.40}")
    return float(value)


def read_taobao(path: Path) -> Iterator[Event | BadLine]:
    """Taobao UserBehavior CSV (no header)."""
    for n, line in log_lines(path):
        try:
            user, item, cat, behavior, ts = next(csv.reader(io.StringIO(line)))
            yield Event(user, item, TAOBAO_TYPES[behavior], parse_time(float(ts)), category=cat)
        except (ValueError, KeyError, csv.Error) as exc:  # csv.Error: e.g. a field over csv's size limit
            yield BadLine(n, line, f"{type(exc).__name__}: {exc}")


def read_otto(path: Path) -> Iterator[Event | BadLine]:
    """OTTO sessions: one session per line with its events."""
    for n, line in log_lines(path):
        try:
            d = orjson.loads(line)
            session = _id(d["session"])
            events = [
                Event(session, _id(e["aid"]), OTTO_TYPES[e["type"]], parse_time(_number(e["ts"]) / 1000.0),
                      session_id=session)
                for e in d["events"]
            ]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            yield BadLine(n, line, f"{type(exc).__name__}: {exc}")
            continue
        yield from events


def read_sequences(path: Path) -> Iterator[Event | BadLine]:
    """One user per line, items oldest first, as synthetic-time purchases."""
    for n, line in log_lines(path):
        user, *items = line.split()
        if not items:
            yield BadLine(n, line, "user with no items")
            continue
        for pos, item in enumerate(items):
            yield Event(user, item, "purchase", SEQUENCE_EPOCH + pos * SEQUENCE_STEP_S)


FORMATS = {
    "jsonl": read_jsonl,
    "taobao": read_taobao,
    "otto": read_otto,
    "sequences": read_sequences,
}


def read_log(path: str | Path, fmt: str) -> Iterator[Event | BadLine]:
    """Read a log in one of ``FORMATS``; raises ``ValueError`` for an unknown format."""
    try:
        reader = FORMATS[fmt]
    except KeyError:
        raise ValueError(f"unknown log format {fmt!r}; expected one of {sorted(FORMATS)}") from None
    return reader(Path(path))


def read_events(path: str | Path, fmt: str) -> list[Event]:
    """All parseable events of a log, in file order (bad lines dropped: for training only)."""
    return [e for e in read_log(path, fmt) if isinstance(e, Event)]
