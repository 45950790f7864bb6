"""One micro-batch through validation, state, scoring and counters (in-memory store)."""

from __future__ import annotations

import asyncio

import orjson

from models.anomaly.alerts import Alert
from models.anomaly.monitor import AnomalyMonitor
from models.data.events import Event
from models.online.samples import sample_from
from stream_app.anomaly import forget_moved_users
from stream_app.pipeline import (
    Incoming,
    apply_batch_states,
    count_deliveries,
    counted_rejections,
    deliveries_of,
    offset_gaps,
    process_batch,
)
from stream_app.scoring import HeuristicRecommender
from stream_app.settings import Settings
from stream_app.sinks.memory import MemoryStore
from stream_app.touches import partition_of

SETTINGS = Settings(top_k=3, partitions=1)  # one partition: every user's events on partition 0
NOW = 1_700_000_000.0


def msg(offset: int, user: str, item: str, kind: str = "view", ts: float = NOW - 100) -> Incoming:
    value = orjson.dumps({"user_id": user, "item_id": item, "event_type": kind, "ts": ts})
    return Incoming(value, user.encode(), partition_of(user, SETTINGS.partitions), offset)


def run(batch, table, store):
    rec = HeuristicRecommender(store, SETTINGS)
    return asyncio.run(process_batch(batch, table, rec, SETTINGS, clock=lambda: NOW))


def write(store, batch, out) -> dict[int, int]:
    """As the events agent does: the store counts the batch, then the worker's counters follow the store's."""
    before = asyncio.run(store.write_recommendations(out.records, {"events_in": len(batch)}, deliveries_of(batch, out)))
    return count_deliveries(batch, out, before)


def test_counters_add_up_and_each_user_is_scored_once():
    store, table = MemoryStore(), {}
    batch = [msg(0, "u1", "a"), msg(1, "u1", "b"), Incoming(b"not json", None, 0, 2), msg(3, "u2", "a")]
    out = run(batch, table, store)
    assert out.counters == {"events_in": 4, "processed": 3, "rejected": 1, "duplicates": 0}
    assert sorted(r["user_id"] for r in out.records) == ["u1", "u2"]
    assert [d.rejection.code for d in out.dead_letters] == ["not_json"]
    assert out.dead_letters[0].message.value == b"not json"


def test_last_click_changes_the_list_at_once():
    """u1 went a -> b before; u2 now clicks a: b must be recommended, because of a."""
    store, table = MemoryStore(), {}
    out = run([msg(0, "u1", "a"), msg(1, "u1", "b")], table, store)
    apply_batch_states(table, out)
    asyncio.run(store.publish_item_stats({i: {"pop": a.popularity, "nbrs": a.neighbors}
                                          for i, a in out.activity.items()}))
    out2 = run([msg(2, "u2", "a", ts=NOW - 50)], table, store)
    (rec,) = out2.records
    assert rec["items"][0]["item_id"] == "b"
    assert rec["items"][0]["because_of"] == "a"
    assert rec["event_ts"] == NOW - 50 and rec["model_version"] == "popcovis-1"


def test_bought_items_are_excluded():
    store, table = MemoryStore(), {}
    asyncio.run(store.publish_item_stats({"x": {"pop": 100.0, "nbrs": {}}, "y": {"pop": 99.0, "nbrs": {}}}))
    out = run([msg(0, "u1", "x", "purchase")], table, store)
    items = [i["item_id"] for i in out.records[0]["items"]]
    assert "x" not in items and items[0] == "y"


def test_duplicates_are_counted_not_applied_and_the_user_is_rescored():
    """A re-delivery after a crash: state unchanged, but Redis gets the list of that state."""
    store, table = MemoryStore(), {}
    apply_batch_states(table, run([msg(5, "u1", "a")], table, store))
    out = run([msg(5, "u1", "a")], table, store)
    assert out.counters["duplicates"] == 1 and out.counters["processed"] == 0
    assert out.states == {}
    (rec,) = out.records
    assert rec["user_id"] == "u1" and rec["events_seen"] == 1


def run_monitored(batch, table, store, monitor):
    rec = HeuristicRecommender(store, SETTINGS)
    return asyncio.run(process_batch(batch, table, rec, SETTINGS, monitor=monitor, clock=lambda: NOW))


def test_a_restarted_worker_resumes_detection_from_the_table_and_ignores_redeliveries():
    """A synthetic click bot, 30 clicks in 30 s: 15 before a restart, all 30 delivered again after it."""
    clicks = [msg(k, "bot", f"i{k}", "click", ts=NOW - 100 + k + (0.4 if k % 2 else 0.0)) for k in range(30)]
    store, table = MemoryStore(), {}
    out = run_monitored(clicks[:15], table, store, AnomalyMonitor())
    assert out.alerts == [] and out.states[b"bot"]["anomaly"]["first_seen"] == NOW - 100
    apply_batch_states(table, out)

    restarted = AnomalyMonitor()  # a new process: empty memory, the table survived (changelog)
    out = run_monitored(clicks, table, store, restarted)  # at least once: the first 15 again
    assert out.counters["duplicates"] == 15 and out.counters["processed"] == 15
    assert [a.detector for a in out.alerts if a.detector == "rate_burst"] == ["rate_burst"]
    assert out.alerts[0].evidence["events_in_window"] == 20  # counted once each, not 35
    assert out.counters["quarantined"] >= 10  # the clicks from the alert on are kept out of learning


def test_a_crash_between_the_changelog_and_the_counters_still_counts_each_event_once():
    """The state kept a batch whose counts were lost: re-delivered, it is counted as processed, not duplicate."""
    store, table = MemoryStore(), {}
    first = [msg(0, "u1", "a"), msg(1, "u1", "b"), Incoming(b"not json", None, 0, 2)]
    out = run(first, table, store)
    apply_batch_states(table, out)  # the changelog landed; the crash came before the store write
    again = first + [msg(3, "u2", "a")]
    out = run(again, table, store)
    assert out.counters["duplicates"] == 2  # by the state: u1's two events were applied already
    assert write(store, again, out) == {0: 3}
    assert out.counters == {"events_in": 4, "processed": 3, "rejected": 1, "duplicates": 0}
    # and the batch delivered once more (the offsets commit was lost too): all of it counted already
    out = run(again, table, store)
    assert write(store, again, out) == {}
    assert out.counters == {"events_in": 4, "processed": 0, "rejected": 0, "duplicates": 4}
    assert asyncio.run(store.counters()) == {"events_in": 8, "processed": 3, "rejected": 1, "duplicates": 4}


def test_counts_landed_but_the_state_did_not():
    """The opposite crash: re-applied to the state, but counted as a duplicate delivery."""
    store, table = MemoryStore(), {}
    batch = [msg(5, "u1", "a"), msg(6, "u1", "b")]
    write(store, batch, run(batch, {}, store))  # the first delivery's counts; its state was lost
    out = run(batch, table, store)
    assert out.counters["processed"] == 2 and out.states  # the state needs them again
    write(store, batch, out)
    assert out.counters == {"events_in": 2, "processed": 0, "rejected": 0, "duplicates": 2}


class HoldsEverything:
    """A fake monitor: every user is under an alert, so every applied event is kept out of learning."""

    items = True

    def observe(self, event):
        return []

    def holds_back(self, user, item, ts):
        return True

    def user_snapshot(self, user):
        return {}

    def knows(self, user):
        return True


def test_a_batch_redelivered_after_a_failed_send_counts_its_quarantined_events_once():
    """Counters written, a send failed, the states never were: the re-delivery is held back again, but
    counted once, so processed - quarantined still equals the samples that leave (none here)."""
    store, table = MemoryStore(), {}
    batch = [msg(k, "bot", f"i{k}", "click", ts=NOW - 100 + k) for k in range(5)]
    totals: dict[str, int] = {}
    for _ in range(2):  # the first delivery's states are not written (its send failed)
        out = asyncio.run(process_batch(batch, table, HeuristicRecommender(store, SETTINGS), SETTINGS,
                                        monitor=HoldsEverything(), clock=lambda: NOW))
        write(store, batch, out)
        for k, v in out.counters.items():
            totals[k] = totals.get(k, 0) + v
    assert not out.samples
    assert (totals["processed"], totals["quarantined"], totals["duplicates"]) == (5, 5, 5)


def test_offset_gaps_names_the_offsets_a_batch_jumps_over():
    batch = [Incoming(None, None, 0, 7), Incoming(None, None, 1, 3), Incoming(None, None, 0, 5),
             Incoming(None, None, 1, 4), Incoming(None, None, 2, 9)]
    # partition 0 counted up to 3: 4 and 6 are missing; 1 follows on; 2 has nothing counted yet
    assert offset_gaps(batch, {0: 3, 1: 2, 2: -1}) == [(0, 4, 4), (0, 6, 6)]
    assert offset_gaps(batch, {0: 7, 1: 4}) == []  # a re-delivery of what was counted: no gap


def test_a_redelivered_event_sends_its_touch_again():
    """Synthetic: a worker died after the state reached the changelog but before the batch's touches left.
    After the restart the re-delivered events raise nothing, but their touches go to the item side again."""
    batch = [msg(k, f"new{k}", "target", "add_to_cart", ts=NOW - 100 + k) for k in range(3)]
    store, table = MemoryStore(), {}
    out = run_monitored(batch, table, store, AnomalyMonitor(items=False))
    assert [row[1] for row in out.touches] == ["new0", "new1", "new2"]
    apply_batch_states(table, out)
    again = run_monitored(batch, table, store, AnomalyMonitor(items=False))  # restarted: a fresh monitor
    assert again.counters["duplicates"] == 3 and again.alerts == []
    assert again.touches == out.touches  # the same touches, first-seen times from the restored snapshots


def test_an_event_off_its_users_partition_is_dead_lettered_with_how_to_produce_it():
    """A producer keyed otherwise (librdkafka's CRC32, a session key, no key) puts a user's events on
    another partition than their state's: each such event is refused, none is dropped as a duplicate."""
    settings = Settings(top_k=3, partitions=4)
    home = partition_of("u1", 4)
    elsewhere = (home + 1) % 4
    value = orjson.dumps({"user_id": "u1", "item_id": "a", "event_type": "view", "ts": NOW - 100})
    batch = [Incoming(value, b"u1", home, 5), Incoming(value, b"session-9", elsewhere, 2)]
    rec = HeuristicRecommender(MemoryStore(), settings)
    out = asyncio.run(process_batch(batch, {}, rec, settings, clock=lambda: NOW))
    assert out.counters == {"events_in": 2, "processed": 1, "rejected": 1, "duplicates": 0}
    [dead] = out.dead_letters
    assert dead.message.offset == 2 and dead.rejection.code == "wrong_partition"
    assert f"partition {home} of 4, not {elsewhere}" in dead.rejection.detail and "murmur2" in dead.rejection.detail


def test_a_user_whose_partition_went_away_and_came_back_is_restored_with_the_other_workers_events():
    """A synthetic click bot (30 clicks in 30 s) whose partition moves from worker A to B and back:
    A must pick up B's part from the user state, so it alerts at the same click one worker would."""
    clicks = [msg(k, "bot", f"i{k}", "click", ts=NOW - 100 + k + (0.4 if k % 2 else 0.0)) for k in range(30)]
    one = run_monitored(clicks, {}, MemoryStore(), AnomalyMonitor())
    [expected] = [a for a in one.alerts if a.detector == "rate_burst"]

    store, table, a, b = MemoryStore(), {}, AnomalyMonitor(), AnomalyMonitor()
    apply_batch_states(table, run_monitored(clicks[:8], table, store, a))
    assert forget_moved_users(a, held=set(), partitions=1) == 1  # the rebalance that took the partition away
    apply_batch_states(table, run_monitored(clicks[8:16], table, store, b))
    back = run_monitored(clicks[16:], table, store, a)
    [alert] = [x for x in back.alerts if x.detector == "rate_burst"]
    assert alert.event_ts == expected.event_ts and alert.evidence == expected.evidence


def test_a_shopper_whose_state_predates_detection_is_not_new():
    """Detection switched on over existing states (no snapshot in them): twelve long-standing shoppers
    viewing one best-seller are not a shilling campaign of new accounts."""
    table = {f"loyal{n}".encode(): {"events": [(f"old{j}", "view", NOW - 90 * 86_400 + j) for j in range(50)],
                                     "seen": 200, "bought": [], "offset": 199} for n in range(12)}
    batch = [Incoming(msg(200, f"loyal{n}", "bestseller", ts=NOW - 100 + 30 * n).value, f"loyal{n}".encode(), 0, 200)
             for n in range(12)]
    monitor = AnomalyMonitor()
    out = run_monitored(batch, table, MemoryStore(), monitor)
    assert out.alerts == [] and out.counters["quarantined"] == 0
    assert monitor.first_seen["loyal0"] == NOW - 90 * 86_400
    assert out.states[b"loyal0"]["anomaly"]["first_seen"] == NOW - 90 * 86_400


def test_a_shopper_with_more_events_than_kept_is_dated_from_their_first_event_when_detection_starts():
    """A state written with detection off keeps its first event's time, so switching detection on later does
    not date a shopper from the oldest of the 50 events kept (until 2026-12-07 it did)."""
    table, store = {}, MemoryStore()
    first = NOW - 300 * 86_400
    visits = [msg(k, "veteran", f"i{k}", ts=first + k * 86_400) for k in range(60)]
    apply_batch_states(table, run(visits, table, store))  # detection off: no snapshot in the state
    assert "anomaly" not in table[b"veteran"] and len(table[b"veteran"]["events"]) == SETTINGS.history_len
    monitor = AnomalyMonitor()
    run_monitored([msg(60, "veteran", "bestseller")], table, store, monitor)
    assert monitor.first_seen["veteran"] == first


def test_a_state_from_before_first_ts_is_dated_from_its_oldest_kept_event_not_its_next_one():
    """A state written before ``first_ts`` existed gets it from its oldest kept event: the first cut of
    ``first_ts`` took the next event's own time, so switching detection on made old shoppers new again."""
    first = NOW - 300 * 86_400
    table = {b"veteran": {"events": [(f"old{j}", "view", first + j * 86_400) for j in range(50)],
                          "seen": 200, "bought": [], "offset": 199}}
    store = MemoryStore()
    apply_batch_states(table, run([msg(200, "veteran", "x", ts=NOW - 50)], table, store))  # detection off
    assert table[b"veteran"]["first_ts"] == first
    monitor = AnomalyMonitor()
    run_monitored([msg(201, "veteran", "bestseller")], table, store, monitor)
    assert monitor.first_seen["veteran"] == first


def test_a_late_event_does_not_replace_the_last_click_in_a_users_list():
    """A view buffered offline an hour ago arrives after the user's click: the list still follows the click,
    and its record's event time stays the click's (it went back an hour until 2026-12-07)."""
    store, table = MemoryStore(), {}
    asyncio.run(store.publish_item_stats({"A": {"pop": 1.0, "nbrs": {"after-A": 10.0}},
                                          "OLD": {"pop": 1.0, "nbrs": {"after-OLD": 10.0}},
                                          "after-A": {"pop": 1.0, "nbrs": {}}, "after-OLD": {"pop": 1.0, "nbrs": {}}}))
    apply_batch_states(table, run([msg(0, "u", "A", "click", ts=NOW - 5)], table, store))
    out = run([msg(1, "u", "OLD", "view", ts=NOW - 3600)], table, store)
    [record] = out.records
    assert record["items"][0]["item_id"] == "after-A" and record["items"][0]["because_of"] == "A"
    assert record["event_ts"] == NOW - 5


def test_the_baseline_does_not_recommend_what_the_user_just_viewed_unless_the_list_would_be_short():
    store, table = MemoryStore(), {}
    asyncio.run(store.publish_item_stats({"A": {"pop": 5.0, "nbrs": {"B": 10.0, "C": 5.0}},
                                          "B": {"pop": 5.0, "nbrs": {"A": 10.0}}, "C": {"pop": 1.0, "nbrs": {}},
                                          "D": {"pop": 2.0, "nbrs": {}}, "E": {"pop": 1.5, "nbrs": {}}}))
    viewed = [msg(0, "u", "B", ts=NOW - 20), msg(1, "u", "A", ts=NOW - 10)]
    out = run(viewed, table, store)
    assert [i["item_id"] for i in out.records[0]["items"]] == ["C", "D", "E"]
    # only C besides what the user viewed: the viewed items fill the list after it, rather than leave it short
    store, table = MemoryStore(), {}
    asyncio.run(store.publish_item_stats({"A": {"pop": 5.0, "nbrs": {"B": 10.0, "C": 5.0}},
                                          "B": {"pop": 5.0, "nbrs": {"A": 10.0}}, "C": {"pop": 1.0, "nbrs": {}}}))
    out = run(viewed, table, store)
    items = [i["item_id"] for i in out.records[0]["items"]]
    assert items[0] == "C" and sorted(items[1:]) == ["A", "B"]


def test_a_redelivered_rejection_is_not_counted_again_by_reason():
    """reco_dead_letters{reason} adds what the Redis counters add: a rejection once, however often delivered."""
    store, table = MemoryStore(), {}
    batch = [msg(0, "u1", "a"), Incoming(b"not json", None, 0, 1)]
    out = run(batch, table, store)
    assert counted_rejections(out, {0: -1}) == ["not_json"]
    again = run(batch, table, store)  # re-delivered after the counts (up to offset 1) landed
    assert counted_rejections(again, {0: 1}) == []


def test_the_batch_and_the_samples_release_agree_on_events_within_a_ms_of_a_quarantines_end():
    """A sample carries its event's time in whole ms, and the release check compares that with quarantines; the
    batch compared the exact time, so an event under half a ms before a quarantine's end was held back if the
    alert came before its batch and trained if the alert came while its sample waited."""
    end = NOW - 100 + 0.0008  # a quarantine ending between two whole ms
    for before_end in (0.0002, 0.0006):  # rounds to after the end, and to before it
        monitor = AnomalyMonitor()
        monitor.apply(Alert("user", "bot", "rate_burst", "low", 1.0, NOW - 160, NOW - 100, NOW - 100,
                            expires_ts=end))
        event_ts = end - before_end
        out = run_monitored([msg(0, "bot", "x", "click", ts=event_ts)], {}, MemoryStore(), monitor)
        held_in_batch = out.counters["quarantined"] == 1
        sample = sample_from([], Event(user_id="bot", item_id="x", event_type="click", ts=event_ts), "v")
        held_at_release = monitor.holds_back(sample.user_id, sample.target, sample.ts)
        assert held_in_batch == held_at_release == (before_end > 0.0005), (before_end, held_in_batch)
