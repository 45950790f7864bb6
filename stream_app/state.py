"""Per-user rolling state and the item activity it produces: plain functions.

The user agent, the replay tool's offline path and the tests all call these.
A user's state is a JSON-able dict (the value of the ``user-state`` table):

    {"events": [(item_id, event_type, ts), ...],  # in event-time order, newest last, at most history_len
                                                  # (lists after JSON)
     "seen": int,        # events applied over the user's whole life
     "bought": [item_id, ...],  # most recent purchases, at most history_len
     "offset": int,      # source offset of the newest applied event
     "first_ts": ts,     # the earliest event time applied (absent from states written before 2026-12-07)
     "anomaly": {...}}   # optional: the anomaly monitor's part (AnomalyMonitor.user_snapshot)

A user lives on one partition, so ``offset`` makes re-delivered events
(at-least-once after a crash) detectable: they are skipped, not applied twice.
A late event (an app sending views it buffered offline) takes its place by
event time, so the newest click stays last, and its co-visitation pairs and
training sample see only the events before it in time.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from models.data.events import Event
from models.item_stats import EVENT_WEIGHTS, add_neighbor, covisit_pairs, log2_add, log_weight, strongest

UserState = dict[str, Any]


def new_state() -> UserState:
    """The state of a user nobody has seen yet."""
    return {"events": [], "seen": 0, "bought": [], "offset": -1}


def first_time(state: UserState) -> float:
    """The user's first event time: ``first_ts``, or in a state from before it, its oldest kept event."""
    return state["first_ts"] if "first_ts" in state else min(row[2] for row in state["events"])


def history_items(state: UserState) -> list[str]:
    """The user's item ids, oldest first."""
    return [e[0] for e in state["events"]]


@dataclass
class ItemActivity:
    """What one micro-batch contributes to one item's statistics (log2 forward decay).

    ``popularity`` is the item's own increment; ``neighbors`` are the items that
    users touched next to it and the co-visitation weight each gains.
    """

    popularity: float = float("-inf")
    neighbors: dict[str, float] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        return {"p": self.popularity if self.popularity != float("-inf") else None, "n": self.neighbors}

    @staticmethod
    def from_wire(d: Mapping[str, Any]) -> ItemActivity:
        p = d.get("p")
        return ItemActivity(float("-inf") if p is None else float(p), dict(d.get("n") or {}))


@dataclass(frozen=True)
class StateConfig:
    history_len: int = 50
    covis_window: int = 3
    half_life_s: float = 86_400.0
    event_weights: Mapping[str, float] = field(default_factory=lambda: dict(EVENT_WEIGHTS))


def apply_events(
    state: UserState | None,
    events: Iterable[tuple[int, Event]],
    activity: dict[str, ItemActivity] | None,
    config: StateConfig,
    applied_events: list[tuple[list[Sequence[Any]], Event]] | None = None,
    learn_from: Callable[[Event], bool] | None = None,
) -> tuple[UserState, int, int]:
    """Apply one user's events (with their source offsets, in order) to their state.

    Adds each event's popularity and co-visitation weight into ``activity``
    (item id -> ItemActivity; None: item statistics are not kept here).
    Appends ``(history before the event, event)`` per applied event to
    ``applied_events`` (the history as the state's ``[item, type, ts]`` rows) (what training samples are made of).
    "Before" is by event time: a late event is inserted where its time puts it (ties keep arrival order). Returns (new state,
    applied, duplicates); an event whose offset is not newer than the state's
    is a duplicate. Events ``learn_from`` rejects (quarantined traffic) still
    update the user's state but add no activity and no training sample.
    """
    st = new_state() if state is None else {**state, "events": list(state["events"]), "bought": list(state["bought"])}
    applied = duplicates = 0
    for offset, ev in events:
        if offset <= st["offset"]:
            duplicates += 1
            continue
        learn = learn_from is None or learn_from(ev)
        rows = st["events"]
        at = len(rows) if not rows or ev.ts >= rows[-1][2] else bisect_right(rows, ev.ts, key=itemgetter(2))
        before = rows if at == len(rows) else rows[:at]
        if activity is not None and learn:
            add_activity(activity, [row[0] for row in before], ev, config)
        if applied_events is not None and learn:
            applied_events.append((before[-config.history_len:], ev))
        rows.insert(at, (ev.item_id, ev.event_type, ev.ts))  # a tuple: untracked by the cyclic GC
        if ev.event_type == "purchase":  # each item once, the latest purchase last: re-orders keep the rest
            if ev.item_id in st["bought"]:
                st["bought"].remove(ev.item_id)
            st["bought"].append(ev.item_id)
        st["seen"] += 1
        st["offset"] = offset
        st["first_ts"] = min(first_time(st), ev.ts)
        applied += 1
    del st["events"][: -config.history_len]
    del st["bought"][: -config.history_len]
    return st, applied, duplicates


def add_activity(activity: dict[str, ItemActivity], history: list[str], ev: Event, config: StateConfig) -> None:
    """Add one event's popularity and co-visitation weight (``history``: the user's items before it)."""
    w = config.event_weights.get(ev.event_type, 1.0)
    log_w = log_weight(ev.ts, w, config.half_life_s)
    act = activity.setdefault(ev.item_id, ItemActivity())
    act.popularity = log2_add(act.popularity, log_w)
    for prev, pair_w in covisit_pairs(history, ev.item_id, config.covis_window):
        pair_log = log_weight(ev.ts, w * pair_w, config.half_life_s)
        fwd = activity.setdefault(prev, ItemActivity())
        fwd.neighbors[ev.item_id] = log2_add(fwd.neighbors.get(ev.item_id, float("-inf")), pair_log)
        # the reverse direction counts half: "bought after" is the stronger signal
        back = act.neighbors
        back[prev] = log2_add(back.get(prev, float("-inf")), pair_log - 1.0)


def readable_stats(stats: Mapping[str, Any], max_neighbors: int) -> dict[str, Any]:
    """An item's stats as readers get them (Redis): only its ``max_neighbors`` strongest neighbours (the
    table's copy may hold up to twice as many, pruned in bulk by ``add_neighbor``)."""
    return {**stats, "nbrs": strongest(stats["nbrs"], max_neighbors)}


def apply_item_activity(
    stats: Mapping[str, Any] | None, act: ItemActivity, max_neighbors: int
) -> dict[str, Any]:
    """Add one activity message to an item's stats ``{"pop": log2 | None, "nbrs": {item: log2}}``.

    Re-delivered messages (at-least-once) count again: item statistics are
    approximate by design, user state is exact.
    """
    pop = float("-inf") if not stats or stats.get("pop") is None else stats["pop"]
    pop = log2_add(pop, act.popularity)
    nbrs = dict(stats["nbrs"]) if stats else {}
    for item, log_w in act.neighbors.items():
        add_neighbor(nbrs, item, log_w, max_neighbors)
    return {"pop": None if pop == float("-inf") else pop, "nbrs": nbrs}
