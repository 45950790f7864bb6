"""Labelled synthetic attack injection into a replay of real events."""

from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path

import pytest

from models.anomaly.inject import ATTACK_PREFIX, InjectionConfig, inject_attacks, is_synthetic
from models.data.eventlog import read_events
from models.data.events import Event

TAOBAO = Path(__file__).resolve().parents[3] / "data" / "sample" / "taobao_user_behavior.csv"


@pytest.fixture(scope="module")
def real() -> list[Event]:
    return read_events(TAOBAO, "taobao")


def test_real_events_are_kept_and_everything_is_in_time_order(real: list[Event]) -> None:
    out = inject_attacks(real, seed=3)
    assert all(a.ts <= b.ts for a, b in zip(out.events, out.events[1:]))
    assert Counter(e for e in out.events if not is_synthetic(e.user_id)) == Counter(real)


def test_every_synthetic_account_is_labelled_and_prefixed(real: list[Event]) -> None:
    config = InjectionConfig()
    out = inject_attacks(real, config, seed=3)
    synthetic = {e.user_id for e in out.events if is_synthetic(e.user_id)}
    users = {i for (t, i) in out.labels if t == "user"}
    assert synthetic == users and all(u.startswith(ATTACK_PREFIX) for u in users)
    kinds = Counter(label.kind for label in out.labels.values())
    assert kinds["bot"] == config.bots and kinds["card_testing"] == config.card_testers
    assert kinds["shilling_target"] == config.shilling_campaigns
    real_items = {e.item_id for e in real}
    assert all(i in real_items for (t, i) in out.labels if t == "item")


def test_each_attacker_starts_at_its_labelled_time(real: list[Event]) -> None:
    out = inject_attacks(real, seed=4)
    first: dict[str, float] = {}
    for e in out.events:
        if is_synthetic(e.user_id) and e.price is not None and e.event_type == "purchase":
            continue  # cash-out accounts have a normal purchase history before their start
        first.setdefault(e.user_id, e.ts)
    for (kind, user), label in out.labels.items():
        if kind == "user" and label.kind != "cashout":
            assert first[user] == label.start_ts


def test_card_testing_is_small_purchases_and_cashout_is_far_above_usual(real: list[Event]) -> None:
    out = inject_attacks(real, seed=5)
    for (_, user), label in out.labels.items():
        bought = [e for e in out.events if e.user_id == user and e.event_type == "purchase"]
        if label.kind == "card_testing":
            assert len(bought) >= 8 and max(e.price or 0.0 for e in bought) <= 3.0
        if label.kind == "cashout":
            before = [e.price for e in bought if e.ts < label.start_ts]
            at_start = [e.price for e in bought if e.ts == label.start_ts]
            assert len(before) >= 6 and at_start[0] >= 4.0 * statistics.median(before)


def test_same_seed_same_attacks_other_seed_other_attacks(real: list[Event]) -> None:
    assert inject_attacks(real, seed=1).events == inject_attacks(real, seed=1).events
    assert inject_attacks(real, seed=1).labels != inject_attacks(real, seed=2).labels
