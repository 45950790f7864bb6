"""Held samples leave in order once their time is up, minus the ones a late alert quarantined."""

from __future__ import annotations

from models.online.samples import TrainingSample
from stream_app.holdback import Holdback


def sample(user: str, n: int) -> TrainingSample:
    return TrainingSample(user, [], [], f"item{n}", "view", 1.0, n, "v1")


def test_release_waits_for_the_delay_and_drops_quarantined_users() -> None:
    now = [100.0]
    hold = Holdback(1.0, clock=lambda: now[0])
    hold.add([sample("human", 1), sample("bot", 2)])
    now[0] = 100.5
    hold.add([sample("human", 3)])
    assert hold.release(lambda s: True) == ([], 0)  # nothing is due yet
    now[0] = 101.0
    released, dropped = hold.release(lambda s: s.user_id != "bot")  # the alert came in the meantime
    assert [s.target for s in released] == ["item1"] and dropped == 1 and len(hold) == 1
    now[0] = 102.0
    assert [s.target for s in hold.release(lambda s: True)[0]] == ["item3"]


def test_samples_an_alert_came_too_late_for_are_counted_while_remembered() -> None:
    now = [100.0]
    hold = Holdback(1.0, clock=lambda: now[0], remember_s=10.0)
    hold.add([sample("bot", 1000), sample("bot", 2000), sample("human", 3000)])  # event times 1, 2, 3 s
    now[0] = 101.0
    assert len(hold.release(lambda s: True)[0]) == 3
    assert hold.take_released_in("user", "bot", 2.0, 60.0) == 1  # only the events inside the alert's window
    assert hold.take_released_in("user", "bot", 0.0, 60.0) == 1  # another alert: the sample not counted yet
    assert hold.take_released_in("user", "bot", 0.0, 60.0) == 0  # a third on the same bot: nothing new
    assert hold.take_released_in("item", "item2000", 0.0, 60.0) == 0  # the item's alert: counted already
    assert hold.take_released_in("item", "item3000", 0.0, 60.0) == 1
    assert hold.take_released_in("user", "other", 0.0, 60.0) == 0
    now[0] = 111.5
    hold.release(lambda s: True)  # forgotten remember_s after their release
    assert hold.take_released_in("user", "human", 0.0, 60.0) == 0
    assert hold._event_ts == {} and hold._taken == set()
