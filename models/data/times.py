"""Event times: the one rule the stream's validator and the log readers share.

A time is Unix seconds (a number, not a boolean) or an ISO-8601 string with a
time zone, and must come out positive and finite: a NaN time would break every
sort by time, and a boolean or a string of digits is a mistake, not a time.
"""

from __future__ import annotations

import math
from datetime import datetime


class BadTime(ValueError):
    """A value that is not an event time; the message says why (the stream's ``bad_time`` detail)."""


def parse_time(value: object) -> float:
    """Unix seconds of ``value``: a number, or an ISO-8601 string with a time zone; ``BadTime`` otherwise."""
    if isinstance(value, bool):
        raise BadTime("ts must be Unix seconds or ISO-8601, got a boolean")
    if isinstance(value, (int, float)):
        ts = float(value)
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise BadTime(f"unparseable time {value[:40]!r}") from None
        if parsed.tzinfo is None:
            raise BadTime(f"time {value[:40]!r} has no time zone")
        ts = parsed.timestamp()
    else:
        raise BadTime(f"ts must be Unix seconds or ISO-8601, got {type(value).__name__}")
    if not math.isfinite(ts) or ts <= 0:
        raise BadTime(f"ts {value!r} is not a positive finite time")
    return ts
