"""Per-user rolling state and the item activity it emits."""

from __future__ import annotations

import copy

from models.data.events import Event
from models.item_stats import log_weight
from stream_app.state import (
    ItemActivity,
    StateConfig,
    apply_events,
    apply_item_activity,
    history_items,
    readable_stats,
)

CFG = StateConfig(history_len=3, covis_window=2, half_life_s=100.0)


def ev(item: str, kind: str = "view", ts: float = 1000.0) -> Event:
    return Event("u", item, kind, ts)


def test_history_is_bounded_and_counts_every_event():
    activity: dict[str, ItemActivity] = {}
    state, applied, dups = apply_events(None, [(i, ev(f"i{i}", ts=1000 + i)) for i in range(5)], activity, CFG)
    assert (applied, dups) == (5, 0)
    assert history_items(state) == ["i2", "i3", "i4"]
    assert state["seen"] == 5 and state["offset"] == 4


def test_redelivered_offsets_are_skipped_not_applied_twice():
    state, _, _ = apply_events(None, [(10, ev("a")), (11, ev("b"))], {}, CFG)
    state2, applied, dups = apply_events(state, [(11, ev("b")), (12, ev("c"))], {}, CFG)
    assert (applied, dups) == (1, 1)
    assert history_items(state2) == ["a", "b", "c"] and state2["seen"] == 3


def test_a_late_event_takes_its_place_by_event_time_and_learns_only_from_what_came_before_it():
    """An app sends a view it buffered offline an hour ago after the user's newest click: the click stays the
    newest item, and the view's co-visitation and training sample do not see the click that followed it."""
    cfg = StateConfig(history_len=10, covis_window=3, half_life_s=100.0)
    state, _, _ = apply_events(None, [(0, ev("a", ts=1000.0)), (1, ev("click", "click", ts=4600.0))], {}, cfg)
    activity: dict[str, ItemActivity] = {}
    samples: list = []
    state, applied, _ = apply_events(state, [(2, ev("late", ts=3600.0))], activity, cfg, samples)
    assert applied == 1 and history_items(state) == ["a", "late", "click"]
    [(history, late)] = samples
    assert late.item_id == "late" and [row[0] for row in history] == ["a"]
    assert set(activity["a"].neighbors) == {"late"} and set(activity["late"].neighbors) == {"a"}
    assert "click" not in activity  # no pair with the click that came after it
    state, _, _ = apply_events(state, [(3, ev("tie", ts=3600.0))], {}, cfg)  # same time: arrival order
    assert history_items(state) == ["a", "late", "tie", "click"]


def test_input_state_is_not_mutated():
    state, _, _ = apply_events(None, [(1, ev("a", "purchase"))], {}, CFG)
    before = copy.deepcopy(state)
    apply_events(state, [(2, ev("b", "purchase"))], {}, CFG)
    assert state == before


def test_purchases_are_remembered_for_exclusion():
    state, _, _ = apply_events(None, [(1, ev("a", "purchase")), (2, ev("b", "view"))], {}, CFG)
    assert state["bought"] == ["a"]


def test_re_orders_do_not_push_earlier_purchases_out_of_the_exclusion_list():
    """A shopper who re-orders coffee every week still has the shoes they bought once excluded."""
    orders = [(1, ev("shoes", "purchase"))] + [(2 + n, ev("coffee", "purchase")) for n in range(10)]
    state, _, _ = apply_events(None, orders + [(20, ev("socks", "purchase"))], {}, CFG)
    assert state["bought"] == ["shoes", "coffee", "socks"]  # each once, the latest purchase last
    state, _, _ = apply_events(state, [(21, ev("shoes", "purchase")), (22, ev("hat", "purchase"))], {}, CFG)
    assert state["bought"] == ["socks", "shoes", "hat"]  # history_len (3 here) distinct items, the oldest out


def test_covisitation_links_recent_items_forward_and_half_backward():
    activity: dict[str, ItemActivity] = {}
    apply_events(None, [(1, ev("a", ts=1000)), (2, ev("b", ts=1000))], activity, CFG)
    forward = activity["a"].neighbors["b"]
    backward = activity["b"].neighbors["a"]
    assert forward == log_weight(1000, 1.0, 100.0)
    assert backward == forward - 1.0  # half the weight, in log2
    assert activity["a"].popularity == activity["b"].popularity == log_weight(1000, 1.0, 100.0)


def test_purchase_weighs_more_than_view():
    activity: dict[str, ItemActivity] = {}
    apply_events(None, [(1, ev("a", "view")), (2, ev("b", "purchase"))], activity, CFG)
    assert activity["b"].popularity == activity["a"].popularity + 3.0  # weight 8 vs 1


def test_item_activity_accumulates_and_keeps_strongest_neighbours():
    stats = None
    for i in range(10):
        stats = apply_item_activity(stats, ItemActivity(popularity=float(i), neighbors={f"n{i}": float(i)}), 2)
    assert len(stats["nbrs"]) < 4  # pruned to 2 whenever it reaches 4
    assert "n9" in stats["nbrs"] and "n0" not in stats["nbrs"]
    assert 9.0 < stats["pop"] < 10.0  # log2(sum 2**i) for i < 10


def test_readers_get_only_the_strongest_neighbours():
    """The table prunes in bulk (up to 2 x max - 1 kept); what Redis publishes is the strongest ``max``."""
    stats = None
    for i in range(99):
        stats = apply_item_activity(stats, ItemActivity(popularity=0.0, neighbors={f"n{i}": float(i)}), 50)
    assert len(stats["nbrs"]) == 99
    readable = readable_stats(stats, 50)
    assert set(readable["nbrs"]) == {f"n{i}" for i in range(49, 99)} and readable["pop"] == stats["pop"]


def test_item_activity_round_trips_the_wire():
    act = ItemActivity(popularity=3.5, neighbors={"x": 1.0})
    assert ItemActivity.from_wire(act.to_wire()) == act
    assert ItemActivity.from_wire(ItemActivity().to_wire()) == ItemActivity()
