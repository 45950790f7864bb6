"""Users' histories: from event logs to per-user, time-ordered (item, event type) lists, and to rows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from models.data.events import EVENT_TYPES, Event
from models.vocab import ItemVocab

TYPE_INDEX = {t: i + 1 for i, t in enumerate(EVENT_TYPES)}  # 0 is padding
DEFAULT_TYPE = "purchase"

# One user's history, oldest first: item ids, or (item id, event type) pairs.
History = Sequence[str] | Sequence[tuple[str, str]]


def user_histories(events: Iterable[Event]) -> dict[str, list[tuple[str, str]]]:
    """Each user's (item, event type) pairs ordered by time (stable for equal times)."""
    by_user: dict[str, list[tuple[float, int, str, str]]] = {}
    for n, ev in enumerate(events):
        by_user.setdefault(ev.user_id, []).append((ev.ts, n, ev.item_id, ev.event_type))
    return {u: [(item, t) for _, _, item, t in sorted(evs)] for u, evs in by_user.items()}


def split_history(history: History) -> tuple[list[str], list[str]]:
    """Item ids and event types of a history given either way (pairs may carry more fields, e.g. a time)."""
    if history and not isinstance(history[0], str):
        return [entry[0] for entry in history], [entry[1] for entry in history]  # type: ignore[index]
    items: list[str] = []
    types: list[str] = []
    for entry in history:
        if isinstance(entry, str):
            items.append(entry)
            types.append(DEFAULT_TYPE)
        else:
            items.append(entry[0])
            types.append(entry[1])
    return items, types


def encode(vocab: ItemVocab, history: History) -> tuple[list[int], list[int]]:
    """Rows and type indices of the known items of a history (unknown items dropped)."""
    items, types = split_history(history)
    rows: list[int] = []
    kinds: list[int] = []
    for item, kind in zip(items, types):
        row = vocab.row(item)
        if row:
            rows.append(row)
            kinds.append(TYPE_INDEX.get(kind, TYPE_INDEX[DEFAULT_TYPE]))
    return rows, kinds
