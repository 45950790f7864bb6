"""Rule detectors: each a frozen config of thresholds and a pure ``step`` over one entity's state.

Default thresholds sit at about twice the most extreme real shopper in the
real Taobao sample (43 users) and the OTTO sample (20 sessions): at most 8
events in a minute, 24 distinct items, 4 purchases and 7 carts+purchases in
10 minutes, and a gap coefficient of variation of at least 0.37 over 12
consecutive sub-2-minute gaps. ``benchmarks/fraud_eval.py`` checks them
against injected attacks.

User states (value of a table keyed by user id), all JSON-able:

- ``rate_burst``:     {"windows": {start: count}, "muted_until": ts, "recent": rows}
- ``regular_timing``: {"last_ts": ts | None, "gaps": [s, ...], "muted_until": ts, "recent": rows}
- ``distinct_items``: {"windows": {start: [item, ...]}, "muted_until": ts, "recent": rows}
- ``cart_burst``:     {"carts": {start: count}, "purchases": {start: count}, "muted_until": ts, "recent": rows}
- ``price_jump``:     {"prices": [price, ...], "muted_until": ts, "recent": rows} (idle ``idle_s`` after the last purchase)

Item state (keyed by item id):

- ``shilling``: {"users": {start: [user, ...]}, "suspects": {start: [user, ...]}, "flagged": {start: [user, ...]},
  "newest": ts, "muted_until": ts, "recent": rows}. ``flagged`` holds the
  suspects already quarantined when they touched the item (their touch's
  ``UserContext.flagged``), named in the alert's evidence so that
  ``AnomalyMonitor`` does not alert them again (states saved before it
  existed have none). Its touches come from every worker, each sending a
  micro-batch's at once, so they arrive out of event-time order: windows
  close by the newest time seen (``newest``), a late touch still counts in
  its windows that are open, and the fullest of those is checked.

``muted_until`` is the end of the last window holding the alerted event: an
entity raises one alert per detector and window, and the hopping windows that
overlap an alerted one (sharing its events) stay quiet.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from models.anomaly.base import Detector, State, Step, UserContext, event_row
from models.anomaly.windows import add_count, add_distinct, check_window, hopping_starts, live, remember, tumbling_start
from models.data.events import Event


def fresh_state(**fields: object) -> State:
    """A detector's state for an entity it has not seen: ``fields`` plus the shared ones."""
    return {**fields, "muted_until": 0.0, "recent": ()}  # finite: JSON codecs turn -inf into null


@dataclass(frozen=True)
class RateBurstConfig:
    """Too many events from one user in a tumbling window (scripted clicking)."""

    window_s: int = 60
    max_events: int = 20  # alert when a window reaches this many events
    severity: str = "medium"


class RateBurst(Detector[RateBurstConfig]):
    name = "rate_burst"

    def step(self, state: State | None, event: Event, context: UserContext | None = None) -> Step:
        cfg = self.config
        st = state or fresh_state(windows={})
        start = tumbling_start(event.ts, cfg.window_s)
        windows = add_count(live(st["windows"], event.ts, cfg.window_s), [start])
        new = {**st, "windows": windows, "recent": remember(st["recent"], event_row(event))}
        count = windows[str(start)]
        if count < cfg.max_events or event.ts < st["muted_until"]:
            return new, None
        window = (start, start + cfg.window_s)
        new["muted_until"] = window[1]
        return new, self.alert(event, window, count, {"events_in_window": count}, new["recent"], cfg.severity)


@dataclass(frozen=True)
class RegularTimingConfig:
    """Machine-regular timing: consecutive short gaps with a tiny coefficient of variation."""

    min_gaps: int = 12  # gaps looked at (the latest ones); fewer: no decision
    max_gap_s: float = 120.0  # a longer gap ends the run (sessions, and day-stepped replays)
    max_cv: float = 0.15  # alert when std/mean of the gaps is at most this
    window_s: int = 600  # tumbling window used for one-alert-per-window
    severity: str = "high"


class RegularTiming(Detector[RegularTimingConfig]):
    name = "regular_timing"

    @property
    def horizon_s(self) -> float:
        return max(self.config.max_gap_s, float(self.config.window_s))

    def step(self, state: State | None, event: Event, context: UserContext | None = None) -> Step:
        cfg = self.config
        st = state or fresh_state(last_ts=None, gaps=())
        gaps: tuple[float, ...] = ()
        if st["last_ts"] is not None and event.ts - st["last_ts"] <= cfg.max_gap_s:
            gaps = (*st["gaps"][-(cfg.min_gaps - 1):], event.ts - st["last_ts"])
        new = {**st, "last_ts": event.ts, "gaps": gaps, "recent": remember(st["recent"], event_row(event))}
        if len(gaps) < cfg.min_gaps or event.ts < st["muted_until"]:
            return new, None
        mean = statistics.fmean(gaps)
        if mean <= 0.0:  # same-second events: a burst, not a rhythm (rate_burst's job)
            return new, None
        cv = statistics.pstdev(gaps, mu=mean) / mean
        if cv > cfg.max_cv:
            return new, None
        start = tumbling_start(event.ts, cfg.window_s)
        window = (start, start + cfg.window_s)
        new["muted_until"] = window[1]
        evidence = {"gaps": len(gaps), "mean_gap_s": mean, "gap_cv": cv}
        return new, self.alert(event, window, cv, evidence, new["recent"], cfg.severity)


@dataclass(frozen=True)
class DistinctItemsConfig:
    """Too many distinct items in a short hopping window (catalogue scraping)."""

    window_s: int = 600
    step_s: int = 120
    max_items: int = 40  # alert when a window holds this many distinct items
    severity: str = "medium"

    def __post_init__(self) -> None:
        check_window(self.window_s, self.step_s)


class DistinctItems(Detector[DistinctItemsConfig]):
    name = "distinct_items"

    def step(self, state: State | None, event: Event, context: UserContext | None = None) -> Step:
        cfg = self.config
        st = state or fresh_state(windows={})
        starts = hopping_starts(event.ts, cfg.window_s, cfg.step_s)
        windows = add_distinct(live(st["windows"], event.ts, cfg.window_s), starts, event.item_id, cfg.max_items)
        new = {**st, "windows": windows, "recent": remember(st["recent"], event_row(event))}
        start = starts[0]  # the oldest window holds every other window's items up to now
        count = len(windows[str(start)])
        if count < cfg.max_items or event.ts < st["muted_until"]:
            return new, None
        window = (start, start + cfg.window_s)
        new["muted_until"] = starts[-1] + cfg.window_s  # every window holding this event
        return new, self.alert(event, window, count, {"distinct_items": count}, new["recent"], cfg.severity)


@dataclass(frozen=True)
class CartBurstConfig:
    """Many add-to-carts/purchases in a hopping window (card testing: many small purchases fast)."""

    window_s: int = 600
    step_s: int = 120  # hopping, so a burst across a window boundary is still seen whole
    max_purchases: int = 8  # alert at this many purchases in one window
    max_cart_or_purchase: int = 15  # ... or this many add-to-carts and purchases together
    severity: str = "high"

    def __post_init__(self) -> None:
        check_window(self.window_s, self.step_s)


class CartBurst(Detector[CartBurstConfig]):
    name = "cart_burst"

    def step(self, state: State | None, event: Event, context: UserContext | None = None) -> Step:
        cfg = self.config
        if event.event_type not in ("add_to_cart", "purchase"):
            return state, None
        st = state or fresh_state(carts={}, purchases={})
        starts = hopping_starts(event.ts, cfg.window_s, cfg.step_s)
        carts = live(st["carts"], event.ts, cfg.window_s)
        purchases = live(st["purchases"], event.ts, cfg.window_s)
        if event.event_type == "purchase":
            purchases = add_count(purchases, starts)
        else:
            carts = add_count(carts, starts)
        new = {**st, "carts": carts, "purchases": purchases, "recent": remember(st["recent"], event_row(event))}
        start = starts[0]  # the oldest open window holds the most
        n_buy, n_cart = purchases.get(str(start), 0.0), carts.get(str(start), 0.0)
        hot = n_buy >= cfg.max_purchases or n_buy + n_cart >= cfg.max_cart_or_purchase
        if not hot or event.ts < st["muted_until"]:
            return new, None
        window = (start, start + cfg.window_s)
        new["muted_until"] = starts[-1] + cfg.window_s  # every window holding this event
        evidence = {"purchases": n_buy, "add_to_carts": n_cart}
        return new, self.alert(event, window, n_buy + n_cart, evidence, new["recent"], cfg.severity)


@dataclass(frozen=True)
class PriceJumpConfig:
    """A purchase priced far above the user's usual purchases (robust: median and MAD).

    Events without a price are ignored; a flagged price never enters the history.
    """

    history: int = 50  # past purchase prices kept
    min_history: int = 5  # no decision before this many
    z_threshold: float = 6.0  # (price - median) / (1.4826 * MAD) at least this ...
    min_ratio: float = 3.0  # ... and price at least this many times the median
    mad_floor: float = 0.05  # MAD is at least this share of the median (users with one usual price)
    window_s: int = 3600  # tumbling window used for one-alert-per-window
    # A buyer's prices stay in memory this long after their latest purchase: as long as this detector's own
    # window (its mute) and the longest of the user windows, so an idle buyer leaves memory with the rest of
    # their state, like any user. ``AnomalyMonitor.user_snapshot`` (the stream's user table) keeps the prices,
    # and ``restore_user`` brings them back with the buyer: the in-memory copy only saves that restore.
    idle_s: float = 3600.0
    severity: str = "high"


class PriceJump(Detector[PriceJumpConfig]):
    name = "price_jump"

    @property
    def horizon_s(self) -> float:
        return self.config.idle_s

    def is_idle(self, state: State, now: float) -> bool:
        """Also prices restored from a snapshot with no purchase since: the snapshot still holds them."""
        return not state["recent"] or super().is_idle(state, now)

    def step(self, state: State | None, event: Event, context: UserContext | None = None) -> Step:
        cfg = self.config
        if event.event_type != "purchase" or event.price is None or event.price <= 0:
            return state, None
        st = state or fresh_state(prices=())
        prices: tuple[float, ...] = st["prices"]
        new = {**st, "recent": remember(st["recent"], event_row(event))}
        z, median = self.zscore(prices, event.price)
        if z < cfg.z_threshold or event.price < cfg.min_ratio * median:
            new["prices"] = (*prices[-(cfg.history - 1):], event.price)
            return new, None
        if event.ts < st["muted_until"]:
            return new, None
        start = tumbling_start(event.ts, cfg.window_s)
        window = (start, start + cfg.window_s)
        new["muted_until"] = window[1]
        evidence = {"price": event.price, "median_price": median, "history": len(prices)}
        return new, self.alert(event, window, z, evidence, new["recent"], cfg.severity)

    def zscore(self, prices: Sequence[float], price: float) -> tuple[float, float]:
        """Robust z of ``price`` against ``prices`` and their median; z is 0 with too little history."""
        if len(prices) < self.config.min_history:
            return 0.0, float("inf")
        median = statistics.median(prices)
        mad = statistics.median(abs(p - median) for p in prices)
        scale = max(1.4826 * mad, self.config.mad_floor * median, 1e-9)
        return (price - median) / scale, median


@dataclass(frozen=True)
class ShillingConfig:
    """An item suddenly touched by many new (first seen recently) or flagged users: a shilling campaign."""

    window_s: int = 3600
    step_s: int = 600
    new_user_s: float = 6 * 3600.0  # a user first seen less than this long ago is new
    min_suspects: int = 10  # alert when a window holds this many distinct new/flagged users ...
    min_share: float = 0.5  # ... who are at least this share of the item's distinct users there
    max_users: int = 500  # distinct users kept per window (a cap on state size; the share is judged on them)
    severity: str = "high"

    def __post_init__(self) -> None:
        check_window(self.window_s, self.step_s)


class Shilling(Detector[ShillingConfig]):
    """Item-keyed: needs the ``UserContext`` of each event's user."""

    name = "shilling"
    entity_type = "item"

    def step(self, state: State | None, event: Event, context: UserContext | None = None) -> Step:
        if context is None:
            raise ValueError("shilling needs the user's context (first-seen time, flagged)")
        cfg = self.config
        st = state or fresh_state(users={}, suspects={}, flagged={})
        newest = max(st.get("newest", event.ts), event.ts)  # the windows' clock: touches arrive out of order
        starts = [s for s in hopping_starts(event.ts, cfg.window_s, cfg.step_s) if s + cfg.window_s > newest]
        if not starts:  # later than every window holding it: too late to count
            return {**st, "newest": newest}, None
        users = add_distinct(live(st["users"], newest, cfg.window_s), starts, event.user_id, cfg.max_users)
        suspects = live(st["suspects"], newest, cfg.window_s)
        flagged = live(st.get("flagged", {}), newest, cfg.window_s)  # absent from states saved before it existed
        # suspects and flagged users are counted among the window's kept users only, so their share is one of
        # the same users: past ``max_users`` a window judges the share on its first ``max_users`` distinct users
        suspect = self.is_suspect(event, context)
        if suspect or context.flagged:
            kept = [s for s in starts if event.user_id in users.get(str(s), ())]
            if suspect:
                suspects = add_distinct(suspects, kept, event.user_id, cfg.max_users)
            if context.flagged:
                flagged = add_distinct(flagged, kept, event.user_id, cfg.max_users)
        new = {**st, "users": users, "suspects": suspects, "flagged": flagged, "newest": newest,
               "recent": remember(st["recent"], event_row(event))}
        # the window with the most suspects (in event-time order, the oldest: it holds all the others hold)
        start = max(starts, key=lambda s: (len(suspects.get(str(s), ())), -s))
        n_sus, n_all = len(suspects.get(str(start), ())), len(users[str(start)])
        if n_sus < cfg.min_suspects or n_sus < cfg.min_share * n_all or event.ts < st["muted_until"]:
            return new, None
        window = (start, start + cfg.window_s)
        new["muted_until"] = starts[-1] + cfg.window_s  # every window holding this event
        evidence = {"suspects": list(suspects[str(start)]), "users": n_all,
                    "flagged": list(flagged.get(str(start), ()))}  # suspects already quarantined: no member alert
        return new, self.alert(event, window, n_sus / n_all, evidence, new["recent"], cfg.severity)

    def is_suspect(self, event: Event, context: UserContext) -> bool:
        """A flagged user, or one first seen less than ``new_user_s`` before this event."""
        return context.flagged or event.ts - context.first_seen_ts < self.config.new_user_s
