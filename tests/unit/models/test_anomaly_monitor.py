"""The monitor: every detector on one stream, one alert per key, quarantines that expire."""

from __future__ import annotations

import orjson

from models.anomaly.alerts import Alert, QuarantinePolicy
from models.anomaly.base import UserContext
from models.anomaly.monitor import AnomalyMonitor, MonitorConfig
from models.data.events import Event

T0 = 1_700_000_400.0
DAY = 86_400.0


def observe_all(monitor: AnomalyMonitor, events: list[Event]) -> list[Alert]:
    return [a for e in sorted(events, key=lambda e: e.ts) for a in monitor.observe(e)]


def clicks(user: str, start: float, n: int, gap: float, item: str = "i1") -> list[Event]:
    return [Event(user, item, "click", T0 + start + k * gap) for k in range(n)]


def test_a_click_bot_is_alerted_once_per_window_and_quarantined_until_expiry() -> None:
    monitor = AnomalyMonitor(MonitorConfig(quarantine=QuarantinePolicy(medium_s=3600.0)))
    shopper = [Event("shopper", f"s{k}", "view", T0 + k * 40.0 + (k % 3) * 15.0) for k in range(30)]  # irregular
    alerts = observe_all(monitor, clicks("bot", 0.0, 300, 0.5) + shopper)  # 2 clicks a second for 150 s
    rate = [a for a in alerts if a.detector == "rate_burst"]
    assert [a.window_start for a in rate] == [T0, T0 + 60, T0 + 120]
    assert {a.entity_id for a in alerts} == {"bot"}
    assert len({a.key for a in alerts}) == len(alerts)
    first = rate[0]
    assert first.expires_ts == first.event_ts + 3600.0
    until = max(a.expires_ts for a in alerts)  # the clockwork clicks also raise regular_timing (high: 24 h)
    assert until == max(a.event_ts for a in alerts if a.severity == "high") + 24 * 3600.0
    assert monitor.is_quarantined("bot", first.event_ts + 10.0)
    assert monitor.is_quarantined("bot", until - 1.0)
    assert not monitor.is_quarantined("bot", until + 1.0)
    assert not monitor.is_quarantined("shopper", T0 + 100.0)


def test_a_redelivered_burst_raises_nothing_new() -> None:
    monitor = AnomalyMonitor()
    burst = clicks("bot", 0.0, 40, 1.0)
    assert len(observe_all(monitor, burst)) >= 1
    for detector in monitor.user_detectors:  # state lost and events delivered again (at least once)
        detector.states.clear()
    assert observe_all(monitor, burst) == []


def test_a_shilling_campaign_alerts_the_item_and_its_fake_accounts() -> None:
    monitor = AnomalyMonitor()
    regular = [Event("regular", "target", "view", T0 - 10 * DAY)]  # an established shopper
    fakes = [Event(f"fake{n}", "target", "add_to_cart", T0 + n * 150.0) for n in range(12)]
    alerts = observe_all(monitor, regular + fakes)
    item = [a for a in alerts if a.entity_type == "item"]
    assert [(a.entity_id, a.detector) for a in item] == [("target", "shilling")]
    members = {a.entity_id for a in alerts if a.detector == "shilling_member"}
    assert members == {f"fake{n}" for n in range(12)}  # the first 10 named by the item alert, then each later one
    assert monitor.is_item_quarantined("target", T0 + 2000.0)
    late = [Event("fake-late", "target", "view", T0 + 3000.0), Event("regular", "target", "view", T0 + 3001.0)]
    assert [(a.entity_id, a.detector) for a in observe_all(monitor, late)] == [("fake-late", "shilling_member")]
    # two hours on, fake0's hour of quarantine is over and the item's day is not: touching it again counts
    again = T0 + 2 * 3600.0
    assert not monitor.is_quarantined("fake0", again) and monitor.is_item_quarantined("target", again)
    assert [(a.entity_id, a.detector) for a in observe_all(monitor, [Event("fake0", "target", "view", again)])] == [
        ("fake0", "shilling_member")]
    assert monitor.is_quarantined("fake0", again + 1.0)


def test_a_suspect_is_quarantined_again_after_each_lapse_of_a_short_member_quarantine() -> None:
    """Members quarantined for 10 minutes (severity low): each touch of the quarantined item after a lapse
    quarantines the suspect again, however many lapses fall in one hour."""
    monitor = AnomalyMonitor(MonitorConfig(member_severity="low"))
    observe_all(monitor, [Event(f"fake{n}", "target", "add_to_cart", T0 + n * 150.0) for n in range(12)])
    hour = T0 // 3600 * 3600 + 3 * 3600
    for t in (hour + 10.0, hour + 1510.0, hour + 3010.0):
        assert not monitor.is_quarantined("fake0", t)
        assert [a.detector for a in observe_all(monitor, [Event("fake0", "target", "view", t)])] == ["shilling_member"]
        assert monitor.is_quarantined("fake0", t + 1.0)


def test_split_monitors_see_a_campaign_spread_over_two_workers_as_one_does() -> None:
    """Users on two workers' monitors (items=False), their touches through one item-side monitor whose
    alerts every worker applies: the same alerts as one monitor seeing everything, and the quarantines hold
    on the worker that keeps each user out of training."""
    events = [Event("regular", "target", "view", T0 - 10 * DAY)]
    events += [Event(f"fake{n}", "target", "add_to_cart", T0 + n * 150.0) for n in range(12)]
    events += [Event("fake-late", "target", "view", T0 + 3000.0), Event("regular", "target", "view", T0 + 3001.0)]
    whole = {(a.entity_type, a.entity_id, a.detector) for a in observe_all(AnomalyMonitor(), events)}
    workers = [AnomalyMonitor(items=False), AnomalyMonitor(items=False)]
    item_side = AnomalyMonitor()
    split = set()
    for e in events:  # each worker holds alternate fake accounts: neither sees 10 of them alone
        user_side = workers[int(e.user_id[-1]) % 2 if e.user_id[-1].isdigit() else 0]
        alerts, context = user_side.observe_user(e)
        alerts += item_side.observe_item(e, context)
        for worker in workers:  # the alerts topic reaches every worker
            for a in alerts:
                worker.apply(a)
        split |= {(a.entity_type, a.entity_id, a.detector) for a in alerts}
    assert ("item", "target", "shilling") in whole
    assert split == whole
    assert workers[1].holds_back("fake1", "target", T0 + 2000.0)
    assert workers[0].holds_back("regular", "target", T0 + 2000.0)  # the item is quarantined everywhere
    # a worker alone sees too few new accounts on the item to alert
    alone = AnomalyMonitor()
    assert not any(a.detector == "shilling" for e in events if e.user_id[-1] in "13579" for a in alone.observe(e))


def test_flagged_users_feed_the_shilling_detector() -> None:
    monitor = AnomalyMonitor()
    users = [f"u{n}" for n in range(10)]
    history = [Event(u, f"old{n}", "view", T0 - 30 * DAY + n * DAY) for n, u in enumerate(users)]  # established
    bursts = [e for n, u in enumerate(users) for e in clicks(u, n * 100.0, 25, 0.5, item="other")]
    pushes = [Event(u, "pushed", "add_to_cart", T0 + 1200.0 + n * 60.0) for n, u in enumerate(users)]
    alerts = observe_all(monitor, history + bursts + pushes)
    assert all(monitor.is_quarantined(u, T0 + 1200.0) for u in users)
    assert ("item", "pushed", "shilling") in {(a.entity_type, a.entity_id, a.detector) for a in alerts}


def test_established_users_on_a_popular_item_raise_nothing() -> None:
    monitor = AnomalyMonitor()
    users = [f"u{n}" for n in range(40)]
    history = [Event(u, f"old{n}", "view", T0 - 30 * DAY + n * DAY / 2) for n, u in enumerate(users)]
    views = [Event(u, "hit", "view", T0 + n * 30.0) for n, u in enumerate(users)]
    assert observe_all(monitor, history + views) == []


def test_a_user_snapshot_restored_in_a_new_monitor_carries_on_detection() -> None:
    """What a restarted worker does: the bot's half-seen burst is completed, not restarted, and not re-alerted.

    The snapshot holds only what the user's latest events cannot rebuild; the
    windows come back from those events (the user state keeps them anyway).
    """
    times = [T0 + 1.75 * (k // 2) * 2 + (0.5 if k % 2 else 0.0) for k in range(25)]  # irregular: gaps 0.5 s, 3 s
    burst = [Event("bot", f"i{k}", "click", ts) for k, ts in enumerate(times)]  # 25 clicks within 42 s
    first_half, second_half = burst[:15], burst[15:]
    old = AnomalyMonitor()
    assert observe_all(old, first_half) == []  # 15 clicks in a minute: under the 20 of rate_burst
    snapshot = orjson.loads(orjson.dumps(old.user_snapshot("bot")))  # through a table's JSON codec
    assert set(snapshot) == {"first_seen"}  # nothing raised, no prices: the rest is in the events
    restored = AnomalyMonitor()
    restored.restore_user("bot", snapshot, first_half)
    assert restored.knows("bot") and not AnomalyMonitor().knows("bot")
    assert restored.user_detectors[0].states["bot"]["windows"] == old.user_detectors[0].states["bot"]["windows"]
    alerts = observe_all(restored, second_half)
    assert [a.detector for a in alerts if a.detector == "rate_burst"] == ["rate_burst"]
    fresh = AnomalyMonitor()  # without the history the same 10 clicks look harmless
    fresh.restore_user("bot", snapshot)
    assert [a for a in observe_all(fresh, second_half) if a.detector == "rate_burst"] == []
    again = AnomalyMonitor()  # the alert's key and quarantine travel in the snapshot
    again.restore_user("bot", orjson.loads(orjson.dumps(restored.user_snapshot("bot"))), burst)
    assert again.is_quarantined("bot", second_half[-1].ts)
    assert [a for a in observe_all(again, second_half[-3:]) if a.detector == "rate_burst"] == []


def test_purchase_prices_travel_in_the_snapshot() -> None:
    """price_jump compares with the user's last 50 purchase prices, which the event history does not hold."""
    buys = [Event("u", f"i{k}", "purchase", T0 + k * DAY, price=10.0 + k % 3) for k in range(8)]
    old = AnomalyMonitor()
    observe_all(old, buys)
    snapshot = orjson.loads(orjson.dumps(old.user_snapshot("u")))
    assert snapshot["prices"] == [b.price for b in buys]
    restored = AnomalyMonitor()
    restored.restore_user("u", snapshot, [Event("u", b.item_id, "purchase", b.ts) for b in buys])  # no prices
    spike = Event("u", "gold", "purchase", T0 + 9 * DAY, price=500.0)
    assert [a.detector for a in observe_all(restored, [spike])] == ["price_jump"]


def test_an_item_snapshot_restored_in_a_new_monitor_carries_on_a_campaign() -> None:
    """What a restarted item-anomalies agent does: a campaign half-seen before the restart is completed, not
    started again, and neither the item nor a member already alerted is alerted twice."""
    fakes = [Event(f"fake{n}", "target", "add_to_cart", T0 + n * 150.0) for n in range(16)]
    context = {e.user_id: UserContext(e.ts) for e in fakes}  # new accounts, as the worker's monitor says

    def run(monitor: AnomalyMonitor, events: list[Event]) -> list[tuple[str, str, str]]:
        return [(a.entity_type, a.entity_id, a.detector) for e in events for a in monitor.observe_item(e, context[e.user_id])]

    def through_table(monitor: AnomalyMonitor) -> dict:
        return orjson.loads(orjson.dumps(monitor.item_snapshot("target")))  # the table's JSON codec

    whole = run(AnomalyMonitor(items=True), fakes)
    assert ("item", "target", "shilling") in whole and len(whole) == 1 + 16
    before = AnomalyMonitor(items=True)
    assert run(before, fakes[:8]) == []  # 8 new accounts: under the 10 that alert
    restored = AnomalyMonitor(items=True)
    assert not restored.knows_item("target")
    restored.restore_item("target", through_table(before))
    assert restored.knows_item("target")
    assert run(restored, fakes[8:12]) == whole[:1 + 12]  # the 10th account completes the campaign begun before
    assert run(AnomalyMonitor(items=True), fakes[8:12]) == []  # what a restart without the table saw
    again = AnomalyMonitor(items=True)  # a second restart, after the alert: it and its members travel too
    again.restore_item("target", through_table(restored))
    assert again.is_item_quarantined("target", fakes[12].ts) and again.is_quarantined("fake3", fakes[12].ts)
    assert run(again, fakes[:12]) == []  # re-delivered touches raise nothing new
    assert run(again, fakes[12:]) == whole[1 + 12:]  # later accounts are still named, one by one


# the stream's worker: users forgotten when idle, restored from their table snapshots ----------------------------

def stream_batch(monitor: AnomalyMonitor, events: list[Event], table: dict[str, dict]) -> list[Alert]:
    """What a worker does with a micro-batch: restores each user it does not know from the table, observes the
    events, then writes every observed user's snapshot back (through the table's JSON codec)."""
    alerts = []
    for e in events:
        if e.user_id in table and not monitor.knows(e.user_id):
            monitor.restore_user(e.user_id, table[e.user_id])
        alerts += monitor.observe_user(e)[0]
    for user in {e.user_id for e in events}:
        table[user] = orjson.loads(orjson.dumps(monitor.user_snapshot(user)))
    return alerts


def forgetful_worker() -> AnomalyMonitor:
    return AnomalyMonitor(MonitorConfig(forget_idle_users=True, prune_min_events=1), items=False)


def test_a_prune_within_a_batch_keeps_the_first_seen_of_a_user_observed_earlier_in_it() -> None:
    """A prune runs on a later event of a batch, whose time may be past an earlier user's windows: that user's
    snapshot, written at the batch's end, must still hold their first-seen time, or they look new ever after."""
    monitor, table = forgetful_worker(), {}
    stream_batch(monitor, [Event("veteran", "a", "view", T0 - 30 * DAY)], table)
    late = Event("veteran", "b", "view", T0 - 7200.0)  # synced late, then another user's event two hours on
    stream_batch(monitor, [late, Event("other", "c", "view", T0)], table)
    assert table["veteran"]["first_seen"] == T0 - 30 * DAY
    stream_batch(monitor, [Event("other", "c", "view", T0 + 7200.0)], table)
    assert not monitor.knows("veteran")  # saved now, so forgotten by the next prune
    stream_batch(monitor, [Event("veteran", "d", "view", T0 + 7300.0)], table)
    assert monitor.user_context("veteran", T0 + 7300.0).first_seen_ts == T0 - 30 * DAY


def test_idle_buyers_are_forgotten_and_their_prices_come_back_with_them() -> None:
    """A buyer's prices stay in memory an hour after their last purchase, then only in the table."""
    monitor, table = forgetful_worker(), {}
    for k in range(8):
        stream_batch(monitor, [Event("buyer", f"i{k}", "purchase", T0 + k * DAY, price=10.0 + k % 3)], table)
    stream_batch(monitor, [Event("other", "x", "view", T0 + 40 * DAY)], table)
    assert not monitor.knows("buyer") and "buyer" not in monitor.price_jump.states
    assert table["buyer"]["prices"] == [10.0 + k % 3 for k in range(8)]
    spike = Event("buyer", "gold", "purchase", T0 + 41 * DAY, price=500.0)
    assert [a.detector for a in stream_batch(monitor, [spike], table)] == ["price_jump"]
    stream_batch(monitor, [Event("other", "x", "view", T0 + 80 * DAY)], table)
    stream_batch(monitor, [Event("buyer", "y", "view", T0 + 81 * DAY)], table)  # restored, prices and all
    assert monitor.knows("buyer") and table["buyer"]["prices"] == [10.0 + k % 3 for k in range(8)]
    stream_batch(monitor, [Event("other", "x", "view", T0 + 82 * DAY)], table)
    assert not monitor.knows("buyer")  # no purchase since the restore: the snapshot alone keeps the prices


def test_a_buyer_still_active_keeps_their_prices_in_memory_long_after_their_last_purchase() -> None:
    """Prices go only with the rest of the user: dropped alone, they would drop out of the next snapshot."""
    monitor, table = forgetful_worker(), {}
    for k in range(8):
        stream_batch(monitor, [Event("buyer", f"i{k}", "purchase", T0 + k * DAY, price=10.0)], table)
    for k in range(1, 37):  # three hours of browsing, a view every 5 minutes, and others' events pruning
        ts = T0 + 7 * DAY + k * 300.0
        stream_batch(monitor, [Event("buyer", f"v{k}", "view", ts), Event("other", "x", "view", ts + 200.0)], table)
    assert table["buyer"]["prices"] == [10.0] * 8
    spike = Event("buyer", "gold", "purchase", T0 + 7 * DAY + 3 * 3600.0 + 250.0, price=500.0)
    assert [a.detector for a in stream_batch(monitor, [spike], table)] == ["price_jump"]


# the item side skips users already flagged ---------------------------------------------------------------------

def test_split_monitors_alert_no_member_already_flagged_on_its_worker() -> None:
    """As one monitor does: quarantined users push an item; the item side sees no user-side alert, only the
    flag in each touch's context, and still alerts none of them as the campaign's members."""
    users = [f"u{n}" for n in range(10)]
    history = [Event(u, f"old{n}", "view", T0 - 30 * DAY + n * DAY) for n, u in enumerate(users)]
    bursts = [e for n, u in enumerate(users) for e in clicks(u, n * 100.0, 25, 0.5, item="other")]
    pushes = [Event(u, "pushed", "add_to_cart", T0 + 1200.0 + n * 60.0) for n, u in enumerate(users)]
    events = sorted(history + bursts + pushes, key=lambda e: e.ts)
    whole = {(a.entity_type, a.entity_id, a.detector) for a in observe_all(AnomalyMonitor(), events)}
    worker, item_side = AnomalyMonitor(items=False), AnomalyMonitor()
    split = set()
    for e in events:
        alerts, context = worker.observe_user(e)
        alerts += item_side.observe_item(e, context)
        split |= {(a.entity_type, a.entity_id, a.detector) for a in alerts}
    assert ("item", "pushed", "shilling") in whole
    assert not [a for a in whole if a[2] == "shilling_member"]
    assert split == whole


def test_the_item_side_skips_the_users_whose_touch_says_flagged() -> None:
    monitor = AnomalyMonitor()
    touches = [(Event(f"u{n}", "X", "click", T0 + n * 60.0), UserContext(T0 + n * 60.0 - 5.0, flagged=n < 3))
               for n in range(12)]
    touches += [(Event("flagged-late", "X", "click", T0 + 1000.0), UserContext(T0 - 30 * DAY, flagged=True)),
                (Event("new-late", "X", "click", T0 + 1001.0), UserContext(T0 + 1000.0))]
    alerts = [a for e, context in touches for a in monitor.observe_item(e, context)]
    assert [a.entity_id for a in alerts if a.detector == "shilling"] == ["X"]
    members = {a.entity_id for a in alerts if a.detector == "shilling_member"}
    assert members == {f"u{n}" for n in range(3, 12)} | {"new-late"}


def test_a_returning_users_last_window_is_learnt_once() -> None:
    """The learned detector learns an idle user's clean window when the prune forgets them. When they come back
    the worker rebuilds that window from their kept events, and their next window's start closes it: until
    2026-12-07 that learnt it a second time."""
    monitor, table = forgetful_worker(), {}
    visit = [Event("regular", f"i{j}", "view", T0 + j * 30.0) for j in range(4)]  # features [4, 4, 0, 1.0]
    stream_batch(monitor, visit, table)
    stream_batch(monitor, [Event("other", "x", "view", T0 + DAY)], table)
    assert not monitor.knows("regular")

    def learnt_visits() -> int:
        return sum(row == [4.0, 4.0, 0.0, 1.0] for row in monitor.learned.population["ring"])

    assert learnt_visits() == 1
    monitor.restore_user("regular", table["regular"], visit)  # as ``observe_new`` does, from the user's state
    for k in (2, 3):  # the first closes the rebuilt window, the second one watched from its start
        monitor.observe_user(Event("regular", f"j{k}", "view", T0 + k * DAY))
    assert learnt_visits() == 1
    assert monitor.learned.population["ring"][-1] == [1.0, 1.0, 0.0, 0.0]


def test_a_backdated_first_event_does_not_make_a_fake_account_look_established() -> None:
    """Each fake account first sends one event dated 1970: until 2026-12-07 that made it decades old to the
    shilling detector, and its campaign on the target went unseen."""
    monitor = AnomalyMonitor()
    observe_all(monitor, [Event("shopper", "x", "view", T0 - 10.0)])  # the stream is at T0
    alerts = []
    for n in range(16):
        alerts += monitor.observe(Event(f"fake{n}", "decoy", "view", 1.0))
        alerts += monitor.observe(Event(f"fake{n}", "target", "add_to_cart", T0 + n * 150.0))
    assert ("item", "target", "shilling") in {(a.entity_type, a.entity_id, a.detector) for a in alerts}
    assert monitor.first_seen["fake0"] == T0 - 10.0 - monitor.config.first_seen_max_lag_s
