"""Held samples leave in order once their time is up, minus the ones a late alert quarantined."""

from __future__ import annotations

from models.online.samples import TrainingSample
from stream_app.holdback import Holdback


def sample(user: str, n: int) -> TrainingSample:
    return TrainingSample(user, [], [], f"item{n}", "view", 1.0, n, "v1")


def test_samples_are_due_after_the_delay_in_arrival_order() -> None:
    now = [100.0]
    hold = Holdback(1.0, clock=lambda: now[0])
    hold.add([sample("human", 1), sample("bot", 2)])
    now[0] = 100.5
    hold.add([sample("human", 3)])
    assert hold.due() == []  # nothing is due yet
    now[0] = 101.0
    assert [s.target for s in hold.due()] == ["item1", "item2"] and len(hold) == 1
    now[0] = 102.0
    assert [s.target for s in hold.due()] == ["item3"]


def released(hold: Holdback, samples: list[TrainingSample]) -> None:
    hold.add(samples)
    for s in hold.due():
        hold.remember(s)


def test_samples_an_alert_came_too_late_for_are_counted_while_remembered() -> None:
    now = [100.0]
    hold = Holdback(0.0, clock=lambda: now[0], remember_s=10.0)
    released(hold, [sample("bot", 1000), sample("bot", 2000), sample("human", 3000)])  # event times 1, 2, 3 s
    assert hold.take_released_in("user", "bot", 2.0) == 1  # only the events before the quarantine's end
    assert hold.take_released_in("user", "bot", 60.0) == 1  # another alert: the sample not counted yet
    assert hold.take_released_in("user", "bot", 60.0) == 0  # a third on the same bot: nothing new
    assert hold.take_released_in("item", "item2000", 60.0) == 0  # the item's alert: counted already
    assert hold.take_released_in("item", "item3000", 60.0) == 1
    assert hold.take_released_in("user", "other", 60.0) == 0
    now[0] = 111.5
    hold.due()  # forgotten remember_s after their release
    assert hold.take_released_in("user", "human", 60.0) == 0
    assert hold._event_ts == {} and hold._taken == set()


def test_a_bots_samples_from_before_the_alerts_window_count_as_its_quarantine_stops_them_too() -> None:
    """The quarantine holds back every sample with an event time before its end; the count took only the
    alert's window (30 stopped, 20 counted in the review's script)."""
    hold = Holdback(0.0, clock=lambda: 100.0)
    released(hold, [sample("bot", 1000 * t) for t in range(30)])
    assert hold.take_released_in("user", "bot", 3_600.0) == 30  # an alert on event times 10-30 s, expiring later


def test_under_a_burst_the_newest_remember_max_samples_are_remembered_and_memory_stays_bounded() -> None:
    now = [100.0]
    hold = Holdback(0.0, clock=lambda: now[0], remember_s=60.0, remember_max=1_000)
    for start in range(0, 5_000, 500):  # 5,000 samples of distinct users within the minute
        released(hold, [sample(f"user{n}", n) for n in range(start, start + 500)])
        now[0] += 1.0
    assert len(hold._released) == 1_000 and len(hold._event_ts) == 2_000  # each sample's user and item
    assert hold.take_released_in("user", "user3999", 1e9) == 0  # forgotten: beyond the newest 1,000
    assert hold.take_released_in("user", "user4000", 1e9) == 1
