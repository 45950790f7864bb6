"""Touches for the item-keyed detectors: wire form, and one item's touches always in one partition."""

from __future__ import annotations

import orjson
from aiokafka.partitioner import DefaultPartitioner

from models.anomaly.base import UserContext
from models.anomaly.monitor import AnomalyMonitor, MonitorConfig
from models.data.events import Event
from stream_app.agents.item_anomalies import item_alerts
from stream_app.anomaly import forget_moved_items
from stream_app.touches import by_partition, from_touch, partition_of, touch


def test_a_touch_comes_back_as_its_event_and_context() -> None:
    event = Event("u1", "i9", "purchase", 1_700_000_000.5, price=12.5)
    context = UserContext(first_seen_ts=1_699_990_000.0, flagged=True)
    assert from_touch(touch(event, context)) == (event, context)


def test_items_go_where_kafkas_default_partitioner_puts_their_key() -> None:
    for item in ("i1", "item-42", "B00ABC", "x" * 40):
        assert partition_of(item, 8) == DefaultPartitioner()(item.encode(), list(range(8)), list(range(8)))


def test_touches_are_grouped_by_their_items_partition_in_order() -> None:
    rows = [touch(Event(f"u{n}", f"i{n % 5}", "view", float(n)), UserContext(0.0)) for n in range(40)]
    grouped = by_partition(rows, 4)
    assert sorted(r[3] for part in grouped.values() for r in part) == [float(n) for n in range(40)]
    for partition, part in grouped.items():
        assert [r[3] for r in part] == sorted(r[3] for r in part)  # order kept
        assert {partition_of(r[0], 4) for r in part} == {partition}  # an item never splits


def test_an_unreadable_touches_message_is_logged_and_the_batch_still_counts(caplog) -> None:
    """Synthetic: 12 new accounts push one item, in two messages around a broken one."""
    rows = [touch(Event(f"fake{n}", "target", "add_to_cart", 1_700_000_400.0 + 150.0 * n),
                  UserContext(1_700_000_400.0 + 150.0 * n)) for n in range(12)]
    messages = [(orjson.dumps(rows[:6]), 0, 10), (b"not json", 0, 11), (orjson.dumps([["too", "short"]]), 0, 12),
                (orjson.dumps(rows[6:]), 0, 13)]
    alerts = item_alerts(AnomalyMonitor(items=True), messages)
    assert [(a.entity_id, a.detector) for a in alerts if a.entity_type == "item"] == [("target", "shilling")]
    assert "offset 11" in caplog.text and "offset 12" in caplog.text


def test_the_agents_table_carries_a_campaign_over_a_restart() -> None:
    """Synthetic: 12 new accounts push one item, 6 before and 6 after the agent restarts with an empty monitor."""
    rows = [touch(Event(f"fake{n}", "target", "add_to_cart", 1_700_000_400.0 + 150.0 * n),
                  UserContext(1_700_000_400.0 + 150.0 * n)) for n in range(12)]
    table: dict[bytes, dict] = {}
    assert item_alerts(AnomalyMonitor(items=True), [(orjson.dumps(rows[:6]), 0, 0)], table) == []
    assert set(table) == {b"target"}
    table = orjson.loads(orjson.dumps({k.decode(): v for k, v in table.items()}))  # the changelog's JSON codec
    table = {k.encode(): v for k, v in table.items()}
    after = item_alerts(AnomalyMonitor(items=True), [(orjson.dumps(rows[6:]), 0, 1)], table)
    assert [(a.entity_id, a.detector) for a in after if a.entity_type == "item"] == [("target", "shilling")]
    assert item_alerts(AnomalyMonitor(items=True), [(orjson.dumps(rows[6:]), 0, 1)], {}) == []  # without it


def test_an_unreadable_table_value_is_logged_and_the_item_starts_afresh(caplog) -> None:
    """Synthetic: 12 new accounts push one item whose table value is not a snapshot."""
    rows = [touch(Event(f"fake{n}", "target", "add_to_cart", 1_700_000_400.0 + 150.0 * n),
                  UserContext(1_700_000_400.0 + 150.0 * n)) for n in range(12)]
    for broken in ({"shilling": "not a state"}, {"alert": {"entity_type": "item"}}, ["a", "list"]):
        table = {b"target": broken}
        alerts = item_alerts(AnomalyMonitor(items=True), [(orjson.dumps(rows), 0, 0)], table)
        assert [(a.entity_id, a.detector) for a in alerts if a.entity_type == "item"] == [("target", "shilling")]
        assert "target" in caplog.text and table[b"target"]["shilling"]  # written back whole
        caplog.clear()


def test_the_table_forgets_an_item_once_the_monitor_does() -> None:
    """Synthetic: one touch on an item, then, two hours later, one on another: the first item's windows have
    all closed with no alert in force, so its table record is deleted (the table holds only active items)."""
    monitor = AnomalyMonitor(MonitorConfig(prune_min_events=1), items=True)
    first = touch(Event("u1", "quiet", "view", 1_700_000_400.0), UserContext(1_600_000_000.0))
    later = touch(Event("u2", "other", "view", 1_700_007_600.0), UserContext(1_600_000_000.0))
    table: dict[bytes, dict] = {}
    item_alerts(monitor, [(orjson.dumps([first]), 0, 0)], table)
    assert set(table) == {b"quiet"}
    item_alerts(monitor, [(orjson.dumps([later]), 0, 1)], table)
    assert set(table) == {b"other"} and not monitor.knows_item("quiet")


def test_an_item_forgotten_in_the_batch_that_touched_it_leaves_no_record() -> None:
    """Synthetic: one batch holds a touch two hours old (a worker catching up), then a new one on another
    item, whose time prunes the first: its empty state was written as ``{}`` and, no longer known to the
    monitor, never deleted (one record more per such batch, for good)."""
    monitor = AnomalyMonitor(MonitorConfig(prune_min_events=0), items=True)
    monitor.forgotten_items()  # as the agent does at start
    table: dict[bytes, dict] = {}
    for b in range(3):
        now = 1_800_000_000.0 + 7_200 * b
        rows = [touch(Event(f"u{b}", f"late{b}", "view", now - 7_200), UserContext(0.0)),
                touch(Event(f"v{b}", f"now{b}", "view", now), UserContext(0.0))]
        item_alerts(monitor, [(orjson.dumps(rows), 0, b)], table)
    assert all(table.values()), {k: v for k, v in table.items() if not v}
    assert set(table) == {item.encode() for item in monitor.known_items()}


def test_an_item_whose_partition_moved_away_and_back_is_restored_with_the_other_workers_touches() -> None:
    """Synthetic: 10 new accounts push one item, 6 on worker A, 3 on worker B while the item's partition is
    B's, the last on A again. A must forget the item when its partition leaves, or it scores the last touch
    on its stale state (6 accounts, no alert) and writes that back over B's (9)."""
    rows = [touch(Event(f"fake{n}", "target", "add_to_cart", 1_700_000_400.0 + 150.0 * n),
                  UserContext(1_700_000_400.0 + 150.0 * n)) for n in range(10)]
    a, b = AnomalyMonitor(items=True), AnomalyMonitor(items=True)
    table: dict[bytes, dict] = {}  # the changelog-backed table both workers see
    assert item_alerts(a, [(orjson.dumps(rows[:6]), 0, 0)], table) == []
    assert forget_moved_items(a, held=set(), partitions=1) == 1  # the rebalance that took the partition away
    assert item_alerts(b, [(orjson.dumps(rows[6:9]), 0, 1)], table) == []
    alerts = item_alerts(a, [(orjson.dumps(rows[9:]), 0, 2)], table)  # the partition came back
    assert [(x.entity_id, x.detector) for x in alerts if x.entity_type == "item"] == [("target", "shilling")]


def test_a_worker_does_not_delete_the_record_of_an_item_that_moved_to_another_worker() -> None:
    """Synthetic: A holds one quiet item; its partition moves to B, which touches it; hours later A, busy
    with another item, prunes what it holds. Without forgetting the moved item A would prune it too, and
    delete its record (a changelog tombstone over B's live state)."""
    a = AnomalyMonitor(MonitorConfig(prune_min_events=1), items=True)
    a.forgotten_items()  # as the agent does: from now on pruned items are listed for deletion
    quiet = touch(Event("u1", "quiet", "view", 1_700_000_400.0), UserContext(1_600_000_000.0))
    table: dict[bytes, dict] = {}
    item_alerts(a, [(orjson.dumps([quiet]), 0, 0)], table)
    forget_moved_items(a, held=set(), partitions=1)  # the partition went to B
    b = AnomalyMonitor(MonitorConfig(prune_min_events=1), items=True)
    b.forgotten_items()
    again = touch(Event("u3", "quiet", "view", 1_700_007_000.0), UserContext(1_600_000_000.0))
    item_alerts(b, [(orjson.dumps([again]), 0, 1)], table)
    later = touch(Event("u2", "other", "view", 1_700_007_600.0), UserContext(1_600_000_000.0))
    item_alerts(a, [(orjson.dumps([later]), 1, 0)], table)  # A's prune: it no longer holds "quiet"
    assert b"quiet" in table and table[b"quiet"]["shilling"]


def test_known_items_lists_what_the_monitor_holds_and_what_it_has_yet_to_report_pruned() -> None:
    monitor = AnomalyMonitor(MonitorConfig(prune_min_events=1), items=True)
    monitor.forgotten_items()
    monitor.observe_item(*from_touch(touch(Event("u1", "quiet", "view", 1_700_000_400.0),
                                           UserContext(1_600_000_000.0))))
    assert monitor.known_items() == ["quiet"]
    monitor.observe_item(*from_touch(touch(Event("u2", "other", "view", 1_700_007_600.0),
                                           UserContext(1_600_000_000.0))))  # prunes "quiet"
    assert sorted(monitor.known_items()) == ["other", "quiet"]  # "quiet": pruned, its deletion pending
    monitor.forget_item("quiet")
    assert monitor.known_items() == ["other"] and monitor.forgotten_items() == []
