"""All detectors over one event stream: dedupes alerts and keeps quarantines.

``AnomalyMonitor.observe(event)`` runs, in order: the user detectors, the
learned detector (told whether the user is flagged, so it does not learn from
that window), then the item-keyed shilling detector with the user's context
(new or flagged users are its suspects). A shilling alert also names its
suspect users (detector ``shilling_member``), and so does every later suspect
who touches the item while it is quarantined. Each alert is emitted once per
key (entity, detector, window) and quarantines its entity until
``expires_ts`` (``QuarantinePolicy``).

Stream state beyond the detectors' own (all JSON-able, keyed as shown):
``first_seen`` (user -> ts), ``quarantine`` ("user:<id>"/"item:<id>" -> expiry
ts), ``shilling_alerts`` (item -> its latest shilling alert, kept as long as
its quarantine) and ``emitted`` (alert key -> window end, forgotten
``dedupe_horizon_s`` later). Once an hour of event time (and at most once per
``prune_min_events`` events) the monitor also drops
detector states idle past their window (``Detector.expire``), as Faust's
windowed tables expire theirs, and, with ``forget_idle_users`` (the stream,
whose user table keeps them), idle users' first-seen times and purchase
prices; that keeps memory to the active entities.

On the stream the work is split: a worker sees only its partitions' users,
so its monitor (``items=False``) runs the user-keyed detectors
(``observe_user``) and hands each event's ``UserContext`` on; the
item-anomalies agent's monitor runs the item-keyed ones (``observe_item``)
over all of an item's touches, and every worker's monitor takes in the
alerts raised there (``apply``). ``observe`` does both in one process
(replay and evaluation), with the same alerts for events in time order.

On the stream, ``user_snapshot``/``restore_user`` move one user's part of all
this to and from a changelog-backed table keyed by user, so a restarted worker
(or one that takes over a partition) carries on where the old one stopped:
the snapshot holds what cannot be recomputed, and the detectors' windows are
rebuilt from the user's latest events, which that table keeps anyway.
``item_snapshot``/``restore_item`` do the same for one item's part (the
shilling windows themselves: no item history is kept elsewhere) through the
item-anomalies agent's table keyed by item.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from models.anomaly.alerts import Alert, AlertKey, QuarantinePolicy
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
    fresh_state,
)
from models.anomaly.learned import RobustZ, RobustZConfig
from models.anomaly.windows import tumbling_start
from models.data.events import Event

MEMBER_DETECTOR = "shilling_member"
# every detector name an alert can carry (the worker's metrics start a zero series for each)
DETECTORS = (RateBurst.name, RegularTiming.name, DistinctItems.name, CartBurst.name, PriceJump.name,
             Shilling.name, MEMBER_DETECTOR, RobustZ.name)


@dataclass(frozen=True)
class MonitorConfig:
    """Every detector's thresholds, the quarantine policy and the monitor's own settings."""

    rate_burst: RateBurstConfig = field(default_factory=RateBurstConfig)
    regular_timing: RegularTimingConfig = field(default_factory=RegularTimingConfig)
    distinct_items: DistinctItemsConfig = field(default_factory=DistinctItemsConfig)
    cart_burst: CartBurstConfig = field(default_factory=CartBurstConfig)
    price_jump: PriceJumpConfig = field(default_factory=PriceJumpConfig)
    shilling: ShillingConfig = field(default_factory=ShillingConfig)
    robust_z: RobustZConfig = field(default_factory=RobustZConfig)
    quarantine: QuarantinePolicy = field(default_factory=QuarantinePolicy)
    member_severity: str = "medium"  # of the alerts on the users behind a shilling alert
    dedupe_horizon_s: float = 2 * 86_400.0  # emitted keys are forgotten this long after their window ends
    prune_min_events: int = 10_000  # prune at most once per this many events (fast replays cover hours in seconds)
    # drop idle users' first-seen times and purchase prices from memory: the stream keeps them in a table (it takes
    # ``user_snapshot`` of every user it observes, and ``restore_user``s the users the monitor no longer ``knows``)
    forget_idle_users: bool = False
    # a user never seen before is first seen no earlier than this before the newest event time seen: without it,
    # a client's first event dated days back made an account look long-standing to the shilling detector
    first_seen_max_lag_s: float = 3600.0


def _key(entity_type: str, entity_id: str) -> str:
    return f"{entity_type}:{entity_id}"


class AnomalyMonitor:
    """Runs every detector on each event, in event-time order, and returns the new alerts.

    ``items`` = False leaves out the item-keyed part (shilling): on the stream,
    a worker sees only its partitions' users, so it sends each event's touch
    with the ``UserContext`` from ``observe_user`` to the item-keyed agent,
    whose own monitor runs ``observe_item`` over all of an item's traffic;
    alerts raised there come back through ``apply``.
    """

    def __init__(self, config: MonitorConfig | None = None, *, items: bool = True) -> None:
        self.config = config = config or MonitorConfig()
        self.items = items
        self.price_jump = PriceJump(config.price_jump)
        self._windowed: list[Detector] = [  # the user detectors whose state the user's latest events rebuild
            RateBurst(config.rate_burst),
            RegularTiming(config.regular_timing),
            DistinctItems(config.distinct_items),
            CartBurst(config.cart_burst),
        ]
        self.user_detectors: list[Detector] = [*self._windowed, self.price_jump]
        self.learned = RobustZ(config.robust_z)
        self.shilling = Shilling(config.shilling)
        self.first_seen: dict[str, float] = {}
        self.quarantine: dict[str, float] = {}
        self.shilling_alerts: dict[str, Alert] = {}
        self.emitted: dict[AlertKey, float] = {}
        self._emitted_by_user: dict[str, dict[AlertKey, None]] = {}  # index of ``emitted`` for snapshots
        self._members: dict[str, dict[str, None]] = {}  # item -> users alerted as its shilling campaign's members
        self._forgotten: set[str] | None = None  # items pruned since ``forgotten_items`` was last called
        self._unsaved: set[str] = set()  # users observed since their last ``user_snapshot`` (forget_idle_users only)
        self._next_prune = float("-inf")
        self._since_prune = 0
        self.newest_ts = float("-inf")  # the newest event time observed

    def observe(self, event: Event) -> list[Alert]:
        """The alerts this event raises (each key at most once over the stream's life)."""
        raised, context = self._user_alerts(event)
        if self.items:
            raised += self._item_alerts(event, context)
        return self._emit(raised, event.ts)

    def observe_user(self, event: Event) -> tuple[list[Alert], UserContext]:
        """The user-keyed detectors' alerts for this event, and its user's context for the item-keyed ones."""
        raised, context = self._user_alerts(event)
        return self._emit(raised, event.ts), context

    def observe_item(self, event: Event, context: UserContext) -> list[Alert]:
        """The item-keyed detectors' alerts for this event, given its user's context from ``observe_user``."""
        return self._emit(self._item_alerts(event, context), event.ts)

    def apply(self, alert: Alert) -> bool:
        """Take in an alert raised by another monitor (the item-keyed agent's): its quarantine holds here too,
        and it is not raised again here. False if this monitor had it already."""
        if alert.key in self.emitted:
            return False
        self._remember_emitted(alert.key, alert.window_end)
        self._quarantine(_key(alert.entity_type, alert.entity_id), alert.expires_ts)
        return True

    def _user_alerts(self, event: Event) -> tuple[list[Alert], UserContext]:
        self.newest_ts = max(self.newest_ts, event.ts)
        first = self.first_seen.get(event.user_id)
        if first is None:
            first = self.first_seen[event.user_id] = max(event.ts, self.newest_ts - self.config.first_seen_max_lag_s)
        if self.config.forget_idle_users:
            self._unsaved.add(event.user_id)
        raised: list[Alert] = []
        for detector in self.user_detectors:
            raised += detector.observe(event)
        flagged = bool(raised) or self.is_quarantined(event.user_id, event.ts)
        raised += self.learned.observe(event, UserContext(first, flagged))
        return raised, UserContext(first, flagged or bool(raised))

    def _item_alerts(self, event: Event, context: UserContext) -> list[Alert]:
        item_alerts = self.shilling.observe(event, context)
        return item_alerts + self._member_alerts(event, context, item_alerts)

    def user_context(self, user_id: str, ts: float) -> UserContext:
        """What the user side knows of a user at ``ts`` now, without observing an event (a re-delivered one)."""
        return UserContext(self.first_seen.get(user_id, ts), self.is_quarantined(user_id, ts))

    def is_quarantined(self, user_id: str, ts: float) -> bool:
        """Whether an alert on the user is still in force at ``ts``."""
        return self.quarantine.get(_key("user", user_id), float("-inf")) > ts

    def is_item_quarantined(self, item_id: str, ts: float) -> bool:
        """Whether an alert on the item is still in force at ``ts``."""
        return self.quarantine.get(_key("item", item_id), float("-inf")) > ts

    def holds_back(self, user_id: str, item_id: str, ts: float) -> bool:
        """Whether an event of ``user_id`` on ``item_id`` at ``ts`` must stay out of learning (either is quarantined)."""
        return self.is_quarantined(user_id, ts) or self.is_item_quarantined(item_id, ts)

    def knows(self, user_id: str) -> bool:
        """Whether the monitor holds this user's state in memory."""
        return user_id in self.first_seen

    def known_users(self) -> list[str]:
        """The users whose state the monitor holds in memory."""
        return list(self.first_seen)

    def forget_user(self, user_id: str) -> None:
        """Drop one user's state from memory (their partition moved to another worker).

        Kept otherwise, it would be taken as newer than the user state if the
        partition came back (``restore_user``), and miss the events the other
        worker processed meanwhile; forgotten, the user is restored from the
        user state at their next event. Quarantines and alert keys stay: the
        alerts topic brings them to every worker anyway.
        """
        self.first_seen.pop(user_id, None)
        self._unsaved.discard(user_id)
        for detector in [*self.user_detectors, self.learned]:
            detector.states.pop(user_id, None)

    def user_snapshot(self, user_id: str) -> dict[str, Any]:
        """What the monitor knows about one user that the user's recent events cannot rebuild, JSON-able.

        That is the first-seen time, the quarantine and the alerts already
        raised (both rare), and the purchase prices ``price_jump`` compares
        with (only for shops that send prices). The detectors' windows are
        rebuilt by ``restore_user`` from the events the user state keeps
        anyway, so the snapshot the stream writes with every user update stays
        a few dozen bytes (the windows themselves took ~1.6 KB per update and
        a fifth of the worker's throughput). A user observed since their last
        snapshot is never forgotten (``forget_idle_users``) before this one.
        """
        self._unsaved.discard(user_id)
        snapshot: dict[str, Any] = {"first_seen": self.first_seen.get(user_id)}
        quarantine = self.quarantine.get(_key("user", user_id))
        if quarantine is not None:
            snapshot["quarantine"] = quarantine
        emitted = [[*key, self.emitted[key]] for key in self._emitted_by_user.get(user_id, ()) if key in self.emitted]
        if emitted:
            snapshot["emitted"] = emitted
        prices = self.price_jump.states.get(user_id, {}).get("prices")
        if prices:
            snapshot["prices"] = list(prices)
        return snapshot

    def restore_user(self, user_id: str, snapshot: dict[str, Any], history: Iterable[Event] = ()) -> None:
        """Bring back a user (after a restart, or a partition moving to this worker).

        ``snapshot`` is their ``user_snapshot``; ``history`` their latest
        events, oldest first (the user state's), which are run through the
        user detectors again to rebuild their windows. Nothing is alerted or
        learnt while doing so. Windows fuller than the history (a user with
        more events in one window than the state keeps, 50 by default) come
        back partly filled; such users have usually been alerted already.
        """
        if snapshot.get("first_seen") is not None:
            self.first_seen.setdefault(user_id, float(snapshot["first_seen"]))
        if snapshot.get("quarantine") is not None:
            self._quarantine(_key("user", user_id), float(snapshot["quarantine"]))
        for entity_type, entity_id, detector_name, window_start, end in snapshot.get("emitted") or []:
            self._remember_emitted((entity_type, entity_id, detector_name, float(window_start)), float(end))
        if any(user_id in d.states for d in [*self.user_detectors, self.learned]):
            return  # already live here: the in-memory state is newer than any history
        for event in history:
            for detector in self.user_detectors:
                state, _ = detector.step(detector.states.get(user_id), event)
                if state is not None:
                    detector.states[user_id] = state
            flagged = self.is_quarantined(user_id, event.ts)
            self.learned.states[user_id] = self.learned.replay(self.learned.states.get(user_id), event, flagged)
        if snapshot.get("prices"):
            restored = self.price_jump.states.setdefault(user_id, fresh_state(prices=()))
            restored["prices"] = tuple(float(p) for p in snapshot["prices"])

    def knows_item(self, item_id: str) -> bool:
        """Whether the item-keyed detectors hold this item's state in memory."""
        return item_id in self.shilling.states

    def item_snapshot(self, item_id: str) -> dict[str, Any]:
        """The item-keyed part of the monitor for one item, JSON-able (the item-anomalies agent's table value).

        That is the shilling detector's open windows, the item's latest
        shilling alert and quarantine, and the users already alerted as its
        campaign's members (so none is alerted twice after a restart).
        """
        snapshot: dict[str, Any] = {}
        state = self.shilling.states.get(item_id)
        if state is not None:
            snapshot["shilling"] = state
        alert = self.shilling_alerts.get(item_id)
        if alert is not None:
            snapshot["alert"] = alert.to_dict()
        quarantine = self.quarantine.get(_key("item", item_id))
        if quarantine is not None:
            snapshot["quarantine"] = quarantine
        members = [[user, self.quarantine.get(_key("user", user), alert.expires_ts if alert else 0.0)]
                   for user in self._members.get(item_id, ())]
        if members:
            snapshot["members"] = members
        return snapshot

    def restore_item(self, item_id: str, snapshot: dict[str, Any]) -> None:
        """Bring back an item's part (after a restart, or its partition moving here) from ``item_snapshot``.

        Nothing is alerted. An item already live here keeps its in-memory
        state, which is newer. Raises ``ValueError`` (or ``KeyError``,
        ``TypeError``) on a malformed snapshot.
        """
        if self.knows_item(item_id):
            return
        state = snapshot.get("shilling")
        if state is not None:
            if not (isinstance(state, dict) and all(isinstance(state.get(k), dict) for k in ("users", "suspects"))):
                raise ValueError(f"not a shilling state: {str(state)[:80]}")
            self.shilling.states[item_id] = state
        if snapshot.get("alert") is not None:
            self.shilling_alerts[item_id] = Alert.from_dict(snapshot["alert"])
        alert = self.shilling_alerts.get(item_id)
        if alert is not None:
            self._remember_emitted(alert.key, alert.window_end)
        if snapshot.get("quarantine") is not None:
            self._quarantine(_key("item", item_id), float(snapshot["quarantine"]))
        for user, until in snapshot.get("members") or []:
            self._members.setdefault(item_id, {})[user] = None
            self._quarantine(_key("user", user), float(until))
            if alert is not None:
                self._remember_emitted(("user", user, MEMBER_DETECTOR, alert.window_start), alert.window_end)

    def known_items(self) -> list[str]:
        """The items whose item-keyed state the monitor holds, or has pruned and not yet listed in
        ``forgotten_items`` (their table records are still to be deleted)."""
        return sorted(set(self.shilling.states) | set(self.shilling_alerts) | set(self._members)
                      | (self._forgotten or set()))

    def forget_item(self, item_id: str) -> None:
        """Drop what the item-keyed part holds for one item (a snapshot that could not be restored, or its
        partition moved to another worker: that worker owns its table record now, so it is not listed by
        ``forgotten_items`` for deletion either)."""
        self.shilling.states.pop(item_id, None)
        self.shilling_alerts.pop(item_id, None)
        self._members.pop(item_id, None)
        if self._forgotten is not None:
            self._forgotten.discard(item_id)

    def _quarantine(self, entity: str, until: float) -> None:
        self.quarantine[entity] = max(self.quarantine.get(entity, float("-inf")), until)

    def _member_alerts(self, event: Event, context: UserContext, item_alerts: list[Alert]) -> list[Alert]:
        """Alerts on a shilling alert's suspects, and on a suspect touching an item quarantined for shilling.

        Users already quarantined are skipped: they are alerted already. That
        is a user quarantined here, or one whose touch's context says flagged
        (the alert's ``flagged`` suspects, the touching user): the item-keyed
        monitor on the stream never sees the user-side alerts, only that flag.
        """
        out = []
        for item_alert in item_alerts:
            self.shilling_alerts[item_alert.entity_id] = item_alert
            flagged = set(item_alert.evidence.get("flagged", ()))
            suspects = [u for u in item_alert.evidence["suspects"]
                        if u not in flagged and not self.is_quarantined(u, event.ts)]
            out += [self._member(user, item_alert, event) for user in suspects]
        active = self.shilling_alerts.get(event.item_id)
        if (not item_alerts and active is not None and self.is_item_quarantined(event.item_id, event.ts)
                and self.shilling.is_suspect(event, context) and not context.flagged
                and not self.is_quarantined(event.user_id, event.ts)):
            # in the touch's own window, as long as a member's quarantine: a suspect whose quarantine ran out is
            # quarantined again at its next touch (a later window), not deduplicated against its last member alert
            length = self.config.quarantine.seconds(self.config.member_severity)
            start = tumbling_start(event.ts, length)
            out.append(self._member(event.user_id, active, event, (start, start + length)))
        return out

    def _member(self, user_id: str, item_alert: Alert, event: Event,
                window: tuple[float, float] | None = None) -> Alert:
        """A member alert in ``window`` (default: the item alert's)."""
        examples = [e for e in item_alert.evidence.get("examples", []) if e["user_id"] == user_id]
        start, end = window or (item_alert.window_start, item_alert.window_end)
        return Alert(
            entity_type="user", entity_id=user_id, detector=MEMBER_DETECTOR, severity=self.config.member_severity,
            score=item_alert.score, window_start=start, window_end=end,
            event_ts=event.ts, evidence={"item_id": item_alert.entity_id, "examples": examples}, expires_ts=event.ts,
        )

    def _emit(self, raised: list[Alert], ts: float) -> list[Alert]:
        """New keys only, with their quarantine expiry; quarantines extended."""
        out = []
        for alert in raised:
            if alert.key in self.emitted:
                continue
            alert = self.config.quarantine.expiry(alert)
            self._remember_emitted(alert.key, alert.window_end)
            self._quarantine(_key(alert.entity_type, alert.entity_id), alert.expires_ts)
            if alert.detector == MEMBER_DETECTOR:
                self._members.setdefault(alert.evidence["item_id"], {})[alert.entity_id] = None
            out.append(alert)
        self._since_prune += 1
        if ts >= self._next_prune and self._since_prune >= self.config.prune_min_events:
            self._prune(ts)
        return out

    def _remember_emitted(self, key: AlertKey, window_end: float) -> None:
        self.emitted.setdefault(key, window_end)
        if key[0] == "user":
            self._emitted_by_user.setdefault(key[1], {})[key] = None

    def forgotten_items(self) -> list[str]:
        """The items whose whole item-keyed part the prunes since the last call dropped (their table records
        can go too: ``item_snapshot`` is empty for them now). Kept only once this has been called: replay and
        evaluation, which keep no table, never call it and so keep no such list."""
        out = [item for item in self._forgotten or () if not self.item_snapshot(item)]
        self._forgotten = set()
        return out

    def _prune(self, ts: float) -> None:
        """Forget idle detector states, and dedupe keys and quarantines long past (once an hour of event time)."""
        held = set() if self._forgotten is None else set(self.shilling.states) | set(self.shilling_alerts)
        for detector in [*self._windowed, self.learned, self.shilling]:  # prices: ``_forget_idle_users``
            detector.expire(ts)
        horizon = ts - self.config.dedupe_horizon_s
        self.emitted = {k: end for k, end in self.emitted.items() if end >= horizon}
        self._emitted_by_user = {}
        for key in self.emitted:
            if key[0] == "user":
                self._emitted_by_user.setdefault(key[1], {})[key] = None
        self.quarantine = {k: until for k, until in self.quarantine.items() if until >= horizon}
        self.shilling_alerts = {item: alert for item, alert in self.shilling_alerts.items()
                                if _key("item", item) in self.quarantine}
        self._members = {item: users for item, users in self._members.items() if item in self.shilling_alerts}
        if self._forgotten is not None:
            self._forgotten |= held - set(self.shilling.states) - set(self.shilling_alerts)
        if self.config.forget_idle_users:
            self._forget_idle_users(ts)
        self._next_prune = ts + 3600.0
        self._since_prune = 0

    def _forget_idle_users(self, ts: float) -> None:
        """Drop the first-seen times and purchase prices of users idle everywhere (the stream's table keeps both).

        Both go together, and only for a user with no open window, no
        quarantine, no purchase within ``price_jump.horizon_s`` and no
        ``user_snapshot`` due: a user the monitor ``knows`` has their whole
        snapshot in memory, and one it forgot comes back whole through
        ``restore_user``. Prices dropped alone would be missing from the next
        snapshot, and so from the table. A prune runs within a micro-batch, on
        an event whose time may be past the horizon of a user observed earlier
        in it: forgetting that user would write their snapshot at the batch's
        end without a first-seen time, and make a long-standing user "new".
        """
        active = {u for d in [*self._windowed, self.learned] for u in d.states} | self._unsaved
        active |= {k.split(":", 1)[1] for k in self.quarantine if k.startswith("user:")}
        self.price_jump.expire(ts, keep=active)
        active |= set(self.price_jump.states)
        self.first_seen = {u: t for u, t in self.first_seen.items() if u in active}
