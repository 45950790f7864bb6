"""A learned detector: robust z-scores of per-user window features against recent clean windows.

Every user's activity is cut into tumbling windows. A window's features are
its event count, distinct items, add-to-cart/purchase count and timing
regularity (1 - CV of its gaps, 0 with fewer than 3 gaps). The population
model is a ring buffer of the features of the latest closed windows that
were never flagged; its per-feature median and MAD (the "normal" shopper)
are recomputed every ``refresh_every`` windows, so the model follows drift.
Each event scores the user's open window: the largest one-sided robust
z-score (only "more than usual" is suspicious) over the features.

It never learns from what it flagged: a window that raised an alert, or
whose user was flagged by any detector while it was open, is dropped when it
closes instead of entering the ring buffer. Nor from a window rebuilt from a
user's kept events (``replay``, after a restart, a partition move or the
user's state expiring here): it may be one this detector already learnt when
its user went idle, and it is only partly rebuilt when the window held more
events than the user state keeps.

States (JSON-able):
- per user: {"window": start, "n": int, "items": [item, ...], "carts": int,
  "last_ts": ts, "gap_n": int, "gap_sum": s, "gap_sq": s^2, "flagged": bool,
  "muted_until": ts, "recent": rows, "rebuilt": bool (optional; the open window came from ``replay``)}
- population (one per worker; a single-key table on the stream):
  {"ring": [[features], ...], "next": int, "closed": int, "center": [..] | None, "scale": [..] | None}
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from models.anomaly.base import Detector, State, Step, UserContext, event_row
from models.anomaly.windows import remember, tumbling_start
from models.data.events import Event

FEATURES: tuple[str, ...] = ("events", "distinct_items", "carts_purchases", "regularity")


@dataclass(frozen=True)
class RobustZConfig:
    """Window size, warm-up and threshold of the learned detector."""

    window_s: int = 600
    min_events: int = 10  # windows with fewer events are never flagged
    z_threshold: float = 20.0  # alert when some feature's robust z reaches this (real Taobao users reach 15)
    ring: int = 2000  # clean closed windows remembered (the latest ones)
    min_windows: int = 200  # no decision before this many clean windows were seen
    refresh_every: int = 500  # recompute median/MAD after this many new windows
    min_scale: tuple[float, ...] = (1.0, 1.0, 1.0, 0.1)  # floor of each feature's 1.4826*MAD
    severity: str = "medium"


def new_population() -> State:
    return {"ring": [], "next": 0, "closed": 0, "center": None, "scale": None}


def window_features(state: State) -> list[float]:
    """Features (``FEATURES`` order) of the user's open window."""
    regularity = 0.0
    if state["gap_n"] >= 3 and state["gap_sum"] > 0:
        mean = state["gap_sum"] / state["gap_n"]
        var = max(state["gap_sq"] / state["gap_n"] - mean * mean, 0.0)
        regularity = max(0.0, 1.0 - math.sqrt(var) / mean)
    return [float(state["n"]), float(len(state["items"])), float(state["carts"]), regularity]


def learn(population: State, features: list[float], config: RobustZConfig) -> None:
    """Add one clean window to ``population`` in place (and refresh median/MAD when due).

    In place, unlike the per-user states: the ring is thousands of rows, and
    the population is one object per worker that no other state refers to.
    """
    ring = population["ring"]
    if len(ring) < config.ring:
        ring.append(features)
    else:
        ring[population["next"]] = features
    population["next"] = (population["next"] + 1) % config.ring
    population["closed"] += 1
    due = population["center"] is None or population["closed"] % config.refresh_every == 0
    if len(ring) >= config.min_windows and due:
        values = np.asarray(ring, dtype=np.float64)  # (windows, features)
        center = np.median(values, axis=0)
        scale = np.maximum(1.4826 * np.median(np.abs(values - center), axis=0), config.min_scale)
        population["center"], population["scale"] = center.tolist(), scale.tolist()


def learnable(state: State) -> bool:
    """Whether the user's open window may enter the population when it closes: never flagged, and watched
    here from its start rather than rebuilt by ``replay``."""
    return not state["flagged"] and not state.get("rebuilt", False)


def zscores(population: State, features: list[float]) -> list[float]:
    """One-sided robust z of each feature (0 before the model has warmed up)."""
    if population["center"] is None:
        return [0.0] * len(features)
    return [max(0.0, (f - c) / s) for f, c, s in zip(features, population["center"], population["scale"])]


def advance(state: State | None, event: Event, config: RobustZConfig) -> tuple[State, list[float] | None]:
    """The user's state after ``event``, and the features of the window it closed if it was clean."""
    start = tumbling_start(event.ts, config.window_s)
    closed = None
    if state is None or start > state["window"]:
        if state is not None and learnable(state):
            closed = window_features(state)
        muted = 0.0 if state is None else state["muted_until"]
        recent = () if state is None else state["recent"]
        state = {"window": start, "n": 0, "items": (), "carts": 0, "last_ts": None, "gap_n": 0,
                 "gap_sum": 0.0, "gap_sq": 0.0, "flagged": False, "muted_until": muted, "recent": recent}
    st = {**state, "n": state["n"] + 1, "recent": remember(state["recent"], event_row(event))}
    if event.item_id not in st["items"]:
        st["items"] = (*st["items"], event.item_id)
    if event.event_type in ("add_to_cart", "purchase"):
        st["carts"] = st["carts"] + 1
    if st["last_ts"] is not None:
        gap = event.ts - st["last_ts"]
        st["gap_n"], st["gap_sum"], st["gap_sq"] = st["gap_n"] + 1, st["gap_sum"] + gap, st["gap_sq"] + gap * gap
    st["last_ts"] = event.ts
    return st, closed


class RobustZ(Detector[RobustZConfig]):
    """Per-user windows scored against the population of clean windows (``population``)."""

    name = "robust_z"

    def __init__(self, config: RobustZConfig) -> None:
        super().__init__(config)
        self.population: State = new_population()

    def expire(self, now: float) -> int:
        """Drop idle users' states; a clean window whose user went idle is learned first."""
        for state in self.states.values():
            if self.is_idle(state, now) and learnable(state):  # the states ``super().expire`` drops
                learn(self.population, window_features(state), self.config)
        return super().expire(now)

    def replay(self, state: State | None, event: Event, flagged: bool) -> State:
        """The user's state after ``event``, learning nothing and alerting nothing (``AnomalyMonitor.restore_user``);
        the window it leaves open is marked rebuilt, so it is not learnt when it closes (``learnable``)."""
        st, _ = advance(state, event, self.config)
        st["rebuilt"] = True
        if flagged:
            st["flagged"] = True
        return st

    def step(self, state: State | None, event: Event, context: UserContext | None = None) -> Step:
        """Like every detector's ``step``, and also updates ``self.population`` with a closed clean window."""
        cfg = self.config
        st, closed = advance(state, event, cfg)
        if closed is not None:
            learn(self.population, closed, cfg)
        if context is not None and context.flagged:
            st["flagged"] = True
        features = window_features(st)
        z = zscores(self.population, features)
        score = max(z)
        if st["n"] < cfg.min_events or score < cfg.z_threshold:
            return st, None
        st["flagged"] = True  # never learn from a window it flagged
        if event.ts < st["muted_until"]:
            return st, None
        window = (st["window"], st["window"] + cfg.window_s)
        st["muted_until"] = window[1]
        evidence = {"features": dict(zip(FEATURES, features)), "z": dict(zip(FEATURES, z))}
        return st, self.alert(event, window, score, evidence, st["recent"], cfg.severity)
