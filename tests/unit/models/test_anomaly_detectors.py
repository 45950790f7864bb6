"""Each rule detector: fires on its attack pattern, stays quiet on a normal one, one alert per window."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Sequence

import orjson
import pytest

from models.anomaly.alerts import Alert
from models.anomaly.base import Detector, UserContext
from models.anomaly.detectors import (
    CartBurst,
    CartBurstConfig,
    DistinctItems,
    DistinctItemsConfig,
    PriceJump,
    PriceJumpConfig,
    RateBurst,
    RateBurstConfig,
    RegularTiming,
    RegularTimingConfig,
    Shilling,
    ShillingConfig,
)
from models.data.events import Event

T0 = 1_700_000_400.0  # a multiple of 600 s: window boundaries fall at T0 + k * 60, T0 + k * 600
Context = Callable[[Event], UserContext]


def ev(ts: float, item: str = "i1", event_type: str = "view", user: str = "u1", price: float | None = None) -> Event:
    return Event(user, item, event_type, T0 + ts, price=price)


def run(detector: Detector, events: Sequence[Event], context: Context | None = None) -> list[Alert]:
    alerts: list[Alert] = []
    for e in events:
        alerts += detector.observe(e, None if context is None else context(e))
    return alerts


def new_users(e: Event) -> UserContext:
    return UserContext(first_seen_ts=e.ts)


def old_users(e: Event) -> UserContext:
    return UserContext(first_seen_ts=e.ts - 30 * 86_400.0)


# rate burst -------------------------------------------------------------------------------------

def test_rate_burst_fires_once_per_window_on_a_click_script() -> None:
    alerts = run(RateBurst(RateBurstConfig(window_s=60, max_events=20)), [ev(n, "i9", "click") for n in range(50)])
    assert len(alerts) == 1
    a = alerts[0]
    assert (a.entity_type, a.entity_id, a.detector) == ("user", "u1", "rate_burst")
    assert (a.window_start, a.window_end, a.event_ts) == (T0, T0 + 60, T0 + 19)
    assert a.evidence["events_in_window"] == 20 and len(a.evidence["examples"]) == 5


def test_rate_burst_alerts_again_in_the_next_window() -> None:
    events = [ev(n * 2.0) for n in range(60)]  # 30 events a minute for two minutes
    alerts = run(RateBurst(RateBurstConfig(window_s=60, max_events=20)), events)
    assert [a.window_start for a in alerts] == [T0, T0 + 60]


def test_rate_burst_is_quiet_for_the_busiest_real_shopper() -> None:
    events = [ev(minute * 60 + k * 7.0) for minute in range(30) for k in range(8)]  # 8 a minute for 30 minutes
    assert run(RateBurst(RateBurstConfig()), events) == []


# regular timing ---------------------------------------------------------------------------------

def test_regular_timing_fires_on_a_metronome_bot() -> None:
    rng = random.Random(0)
    ts, events = 0.0, []
    for n in range(20):
        events.append(ev(ts, f"i{n}"))
        ts += rng.gauss(10.0, 0.2)
    alerts = run(RegularTiming(RegularTimingConfig()), events)
    assert len(alerts) == 1
    assert alerts[0].score <= 0.15 and alerts[0].evidence["gaps"] == 12
    assert alerts[0].event_ts == events[12].ts  # the 13th event completes 12 gaps


def test_regular_timing_is_quiet_for_human_gaps_and_day_steps() -> None:
    rng = random.Random(1)
    ts, human = 0.0, []
    for n in range(200):
        human.append(ev(ts, f"i{n}"))
        ts += min(rng.lognormvariate(2.5, 1.0), 110.0)
    day_steps = [ev(n * 86_400.0, f"i{n}", user="u2") for n in range(30)]  # a day-stepped replay
    assert run(RegularTiming(RegularTimingConfig()), human + day_steps) == []


def test_regular_timing_alerts_once_per_window() -> None:
    events = [ev(n * 2.0, f"i{n}") for n in range(250)]  # 500 s of clockwork inside one 600 s window
    assert len(run(RegularTiming(RegularTimingConfig(window_s=600)), events)) == 1


# distinct items ---------------------------------------------------------------------------------

def test_distinct_items_fires_on_a_crawler() -> None:
    events = [ev(n * 6.0, f"i{n}") for n in range(60)]  # 60 distinct items in 6 minutes
    alerts = run(DistinctItems(DistinctItemsConfig(max_items=40)), events)
    assert len(alerts) == 1
    a = alerts[0]
    assert a.evidence["distinct_items"] == 40 and a.event_ts == events[39].ts
    assert a.window_start <= a.event_ts < a.window_end


def test_distinct_items_ignores_many_events_on_few_items() -> None:
    events = [ev(n * 3.0, f"i{n % 20}") for n in range(200)]  # 200 events on 20 items in 10 minutes
    assert run(DistinctItems(DistinctItemsConfig(max_items=40)), events) == []


# cart / purchase burst --------------------------------------------------------------------------

def test_cart_burst_sees_a_burst_across_a_window_boundary() -> None:
    events = [ev(500.0 + n * 20.0, f"i{n}", "purchase", price=1.0) for n in range(10)]  # 10 buys over 600 s boundary
    alerts = run(CartBurst(CartBurstConfig(max_purchases=8)), events)
    assert len(alerts) == 1 and alerts[0].evidence["purchases"] == 8


def test_cart_burst_is_quiet_for_a_normal_checkout_and_for_views() -> None:
    checkout = [ev(n * 60.0, f"i{n}", "add_to_cart") for n in range(3)] + [
        ev(300.0 + n, f"i{n}", "purchase") for n in range(4)]
    views = [ev(1000.0 + n, f"v{n}", "view", user="u2") for n in range(100)]
    assert run(CartBurst(CartBurstConfig()), checkout + views) == []


# price jump -------------------------------------------------------------------------------------

def purchases(prices: Sequence[float], start: float = 0.0) -> list[Event]:
    return [ev(start + n * 86_400.0, f"i{n}", "purchase", price=p) for n, p in enumerate(prices)]


def test_price_jump_fires_on_a_purchase_far_above_usual_and_never_learns_it() -> None:
    detector = PriceJump(PriceJumpConfig())
    usual = [19.0, 21.0, 20.0, 22.0, 18.0, 20.5]
    alerts = run(detector, purchases(usual + [300.0]))
    assert len(alerts) == 1
    assert alerts[0].evidence["median_price"] == 20.25 and alerts[0].score >= 6.0
    assert 300.0 not in detector.states["u1"]["prices"]
    later = run(detector, [ev(40 * 86_400.0, "i99", "purchase", price=310.0)])  # still anomalous: not learned
    assert len(later) == 1


def test_price_jump_quiet_on_normal_prices_short_history_and_missing_prices() -> None:
    detector = PriceJump(PriceJumpConfig())
    assert run(detector, purchases([1000.0, 5.0, 900.0])) == []  # under min_history
    assert run(detector, purchases([20.0] * 6 + [45.0], start=1e6)) == []  # 2.25x the median: under min_ratio
    before = copy.deepcopy(detector.states["u1"])
    assert run(detector, [ev(2e6, "i1", "purchase"), ev(2e6 + 1, "i2", "view", price=999.0)]) == []
    assert detector.states["u1"] == before


# shilling ---------------------------------------------------------------------------------------

def touches(users: Sequence[str], item: str = "target", start: float = 0.0, gap: float = 120.0) -> list[Event]:
    return [ev(start + n * gap, item, "add_to_cart", user=u) for n, u in enumerate(users)]


def test_shilling_fires_on_an_item_pushed_by_new_accounts() -> None:
    fake = [f"fake{n}" for n in range(12)]
    alerts = run(Shilling(ShillingConfig(min_suspects=10)), touches(fake), new_users)
    assert len(alerts) == 1
    a = alerts[0]
    assert (a.entity_type, a.entity_id, a.detector) == ("item", "target", "shilling")
    assert a.evidence["suspects"] == fake[:10] and a.event_ts == T0 + 9 * 120.0


def test_shilling_counts_touches_that_arrive_out_of_order() -> None:
    """Two workers' micro-batches interleave: the later half of a campaign arrives first (30 minutes apart
    in event time); the earlier touches still count in the windows they share, and one alert follows."""
    fake = touches([f"fake{n}" for n in range(12)], gap=150.0)
    arrived = fake[6:] + fake[:6]
    alerts = run(Shilling(ShillingConfig(min_suspects=10)), arrived, new_users)
    assert [(a.entity_id, len(a.evidence["suspects"])) for a in alerts] == [("target", 10)]
    # a touch later than every window that holds it is too late: it counts nowhere
    detector = Shilling(ShillingConfig(min_suspects=10))
    run(detector, touches(["x"], start=3 * 3600.0), new_users)
    assert run(detector, touches([f"late{n}" for n in range(12)], gap=1.0), new_users) == []
    assert all("late0" not in users for users in detector.states["target"]["users"].values())


def test_shilling_is_quiet_for_established_users_and_when_suspects_are_a_minority() -> None:
    detector = Shilling(ShillingConfig(min_suspects=10))
    assert run(detector, touches([f"old{n}" for n in range(30)]), old_users) == []
    mixed = [f"new{n}" if n % 3 == 0 else f"old{n}" for n in range(36)]  # 12 new among 36 in 70 minutes
    context = lambda e: new_users(e) if e.user_id.startswith("new") else old_users(e)  # noqa: E731
    assert run(detector, touches(mixed, item="popular", gap=60.0), context) == []


def test_shilling_judges_the_share_on_the_users_it_kept() -> None:
    """Past ``max_users`` distinct users a window stops keeping them; a suspect is counted only among the kept
    ones, so a best-seller whose later touches come from ordinary new customers (30 %) is not a campaign."""
    regulars, customers = [f"old{n}" for n in range(40)], [f"new{n}" for n in range(30)]
    context = lambda e: new_users(e) if e.user_id.startswith("new") else old_users(e)  # noqa: E731
    detector = Shilling(ShillingConfig(min_suspects=10, max_users=20))
    assert run(detector, touches(regulars[:20] + customers[:10] + regulars[20:] + customers[10:], gap=1.0),
               context) == []
    assert len(detector.states["target"]["users"][str(int(T0))]) == 20
    assert detector.states["target"]["suspects"].get(str(int(T0)), ()) == ()


def test_a_late_touch_does_not_make_a_campaigns_item_look_idle() -> None:
    """Idle is judged by the newest touch, not the last to arrive: a lagging worker's touch from 40 minutes
    back must not let the prune drop a campaign's windows halfway."""
    context = lambda e: old_users(e) if e.user_id == "regular" else new_users(e)  # noqa: E731
    detector = Shilling(ShillingConfig(min_suspects=10))
    run(detector, touches([f"fake{n}" for n in range(9)], start=3000.0, gap=1.0), context)
    run(detector, touches(["regular"], start=600.0), context)  # arrives last, dated 40 minutes back
    assert detector.expire(T0 + 5600.0) == 0 and "target" in detector.states
    alerts = run(detector, touches(["fake9"], start=5700.0), context)
    assert [(a.entity_id, len(a.evidence["suspects"])) for a in alerts] == [("target", 10)]


def test_flagged_established_users_count_as_suspects() -> None:
    flagged = lambda e: UserContext(first_seen_ts=e.ts - 30 * 86_400.0, flagged=True)  # noqa: E731
    assert len(run(Shilling(ShillingConfig(min_suspects=10)), touches([f"f{n}" for n in range(10)]), flagged)) == 1


def test_shilling_names_the_suspects_already_flagged_when_they_touched_the_item() -> None:
    """The monitor alerts a campaign's suspects, but not those flagged already: on the stream the item side
    only knows that from each touch's context."""
    users = [f"f{n}" for n in range(12)]
    context = lambda e: UserContext(first_seen_ts=e.ts, flagged=e.user_id in {"f1", "f4"})
    detector = Shilling(ShillingConfig(min_suspects=10))
    alerts = run(detector, touches(users), context)
    assert len(alerts) == 1 and alerts[0].evidence["flagged"] == ["f1", "f4"]
    resumed = Shilling(ShillingConfig(min_suspects=10))  # a state saved before "flagged" existed still works
    resumed.states = {"target": {k: v for k, v in detector.states["target"].items() if k != "flagged"}}
    assert run(resumed, touches(["late"], start=12 * 120.0), context) == []


def test_shilling_needs_the_user_context() -> None:
    with pytest.raises(ValueError):
        Shilling(ShillingConfig()).observe(ev(0.0))


# contract over every rule detector --------------------------------------------------------------

ATTACKS: dict[str, tuple[Callable[[], Detector], Callable[[], list[Event]], Context | None]] = {
    "rate_burst": (lambda: RateBurst(RateBurstConfig()), lambda: [ev(n * 0.5) for n in range(100)], None),
    "regular_timing": (
        lambda: RegularTiming(RegularTimingConfig()), lambda: [ev(n * 5.0, f"i{n}") for n in range(40)], None),
    "distinct_items": (
        lambda: DistinctItems(DistinctItemsConfig()), lambda: [ev(n * 2.0, f"i{n}") for n in range(90)], None),
    "cart_burst": (
        lambda: CartBurst(CartBurstConfig()), lambda: [ev(n * 10.0, f"i{n}", "purchase") for n in range(30)], None),
    "price_jump": (lambda: PriceJump(PriceJumpConfig()), lambda: purchases([10.0] * 8 + [500.0, 600.0]), None),
    "shilling": (
        lambda: Shilling(ShillingConfig()), lambda: touches([f"f{n}" for n in range(40)], gap=30.0), new_users),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_step_leaves_its_input_state_alone(name: str) -> None:
    make, events, context = ATTACKS[name]
    detector = make()
    state = None
    for e in events():
        before = copy.deepcopy(state)
        new, _ = detector.step(state, e, None if context is None else context(e))
        assert state == before
        state = new


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_state_through_json_gives_the_same_alerts(name: str) -> None:
    make, events, context = ATTACKS[name]
    stream = events()
    whole = run(make(), stream, context)
    assert whole, "the attack must raise an alert"
    half = len(stream) // 2
    first = make()
    alerts = run(first, stream[:half], context)
    resumed = make()
    resumed.states = orjson.loads(orjson.dumps(first.states))  # what a Faust table stores (orjson codec)
    alerts += run(resumed, stream[half:], context)
    assert [a.to_dict() for a in alerts] == [a.to_dict() for a in whole]


def test_expire_drops_idle_states_and_price_histories_an_hour_after_the_last_purchase() -> None:
    rate = RateBurst(RateBurstConfig(window_s=60))
    run(rate, [ev(0.0, user="idle"), ev(100.0, user="active")])
    assert rate.expire(T0 + 130.0) == 1
    assert set(rate.states) == {"active"}
    assert rate.expire(T0 + 1000.0, keep={"active"}) == 0 and set(rate.states) == {"active"}
    prices = PriceJump(PriceJumpConfig())
    run(prices, purchases([10.0] * 3))  # the last one on day 2
    assert prices.expire(T0 + 2 * 86_400.0 + 3000.0) == 0 and list(prices.states["u1"]["prices"]) == [10.0] * 3
    assert prices.expire(T0 + 2 * 86_400.0 + 4000.0) == 1 and prices.states == {}
    prices.states["u2"] = {"prices": (10.0,) * 3, "muted_until": 0.0, "recent": ()}  # restored from a snapshot
    assert prices.expire(T0, keep={"u2"}) == 0  # the monitor keeps it while the user is active
    assert prices.expire(T0) == 1  # then no purchase of its own holds it: the snapshot still has the prices
