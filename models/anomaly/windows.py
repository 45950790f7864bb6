"""Window assignment and per-entity windowed counts: plain functions over JSON-able dicts.

Windows are ``[start, start + size)`` in event time, aligned to multiples of
``step`` from the Unix epoch, as in Faust: a tumbling window is a hopping one
with ``step == size``. A detector keeps, per entity, a ``Windows`` dict
``{str(window_start): value}`` (a count, or a list of distinct ids) of the
windows still open; ``live`` drops the ones that ended (expiry), so the dict
stays a handful of entries. On the stream this is the value of one key in a
Faust ``Table(...).hopping(size, step)`` (or ``.tumbling(size)``) table.

Functions never mutate their arguments: they return new dicts, so a table
value read by an agent can be written back as is. Distinct ids and rows are
tuples, not lists: a container holding only strings and numbers is skipped by
CPython's cyclic garbage collector, and a worker holds millions of them (a
JSON round trip turns them into lists, which every function here also takes).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Windows = dict[str, Any]  # str(window start) -> count (float) or distinct ids (tuple[str, ...])
Recent = Sequence[Sequence[Any]]  # newest last: compact rows of the entity's latest events


def check_window(size_s: int, step_s: int) -> None:
    """Raise ``ValueError`` unless ``step_s`` divides ``size_s`` (both positive whole seconds)."""
    if size_s <= 0 or step_s <= 0 or size_s % step_s:
        raise ValueError(f"window size {size_s} s must be a positive multiple of its step {step_s} s")


def tumbling_start(ts: float, size_s: int) -> int:
    """Start of the tumbling window of ``size_s`` seconds that holds ``ts``."""
    return int(ts // size_s) * size_s


def hopping_starts(ts: float, size_s: int, step_s: int) -> list[int]:
    """Starts of every hopping window (``size_s`` long, every ``step_s``) that holds ``ts``, oldest first."""
    last = tumbling_start(ts, step_s)
    return list(range(last - size_s + step_s, last + step_s, step_s))


def live(windows: Mapping[str, Any], ts: float, size_s: int) -> Windows:
    """The windows still open at ``ts`` (those with ``start + size_s > ts``); ``windows`` itself when all are."""
    oldest = ts - size_s
    if all(int(k) > oldest for k in windows):
        return windows  # the usual case: nothing ended since the entity's last event
    return {k: v for k, v in windows.items() if int(k) > oldest}


def add_count(windows: Mapping[str, Any], starts: Iterable[int], amount: float = 1.0) -> Windows:
    """``windows`` with ``amount`` added to each window in ``starts``."""
    out = dict(windows)
    for start in starts:
        key = str(start)
        out[key] = out.get(key, 0.0) + amount
    return out


def add_distinct(windows: Mapping[str, Any], starts: Iterable[int], value: str, cap: int) -> Windows:
    """``windows`` with ``value`` added to each window's distinct list (lists stop growing at ``cap``)."""
    out = dict(windows)
    for start in starts:
        key = str(start)
        ids = out.get(key, ())
        if value not in ids and len(ids) < cap:
            out[key] = (*ids, value)
    return out


def remember(recent: Recent, row: tuple[Any, ...], keep: int = 5) -> tuple[Any, ...]:
    """``recent`` with ``row`` appended, keeping the newest ``keep`` rows."""
    return (*recent[-(keep - 1):], row) if keep > 1 else (row,)
