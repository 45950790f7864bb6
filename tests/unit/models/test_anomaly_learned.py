"""The learned detector: robust z-scores of user windows against recent clean windows."""

from __future__ import annotations

import orjson

from models.anomaly.base import UserContext
from models.anomaly.learned import RobustZ, RobustZConfig
from models.data.events import Event

T0 = 1_700_000_400.0  # a multiple of 600 s
CONFIG = RobustZConfig(window_s=600, min_events=10, z_threshold=20.0, min_windows=50, refresh_every=10)


def window(user: str, k: int, n: int, gap: float = 20.0, event_type: str = "view") -> list[Event]:
    """``n`` events of ``user`` in tumbling window ``k``, ``gap`` seconds apart, on distinct items."""
    return [Event(user, f"{user}-{k}-{j}", event_type, T0 + k * 600 + j * gap) for j in range(n)]


def warmed_up() -> RobustZ:
    """A detector that has seen 100 normal windows (3 events each) of one shopper."""
    detector = RobustZ(CONFIG)
    for k in range(101):
        for e in window("shopper", k, 3):
            assert detector.observe(e) == []
    return detector


def test_a_window_far_beyond_the_usual_is_flagged_once() -> None:
    detector = warmed_up()
    alerts = []
    for e in window("bot", 200, 60, gap=5.0):
        alerts += detector.observe(e)
    assert len(alerts) == 1
    a = alerts[0]
    assert (a.entity_id, a.detector, a.window_start) == ("bot", "robust_z", T0 + 200 * 600)
    assert a.score >= 20.0 and a.evidence["features"]["events"] == 23.0  # 3 usual + 20 * scale 1


def test_a_busy_but_plausible_window_is_not_flagged() -> None:
    detector = warmed_up()
    assert [a for e in window("busy", 200, 12) for a in detector.observe(e)] == []


def test_nothing_is_flagged_before_warm_up() -> None:
    detector = RobustZ(CONFIG)
    assert [a for e in window("bot", 0, 100, gap=1.0) for a in detector.observe(e)] == []


def test_flagged_windows_never_enter_the_model() -> None:
    detector = warmed_up()
    closed = detector.population["closed"]
    for e in window("bot", 200, 60, gap=5.0) + window("bot", 201, 1):  # the second window closes the first
        detector.observe(e)
    assert detector.population["closed"] == closed
    assert max(row[0] for row in detector.population["ring"]) == 3.0


def test_windows_of_users_flagged_elsewhere_are_not_learned() -> None:
    detector = warmed_up()
    closed = detector.population["closed"]
    flagged = UserContext(first_seen_ts=T0, flagged=True)
    for e in window("suspect", 200, 5):
        detector.observe(e, flagged)
    detector.observe(window("suspect", 201, 1)[0])  # closes the flagged window
    assert detector.population["closed"] == closed
    detector.observe(window("suspect", 202, 1)[0])  # closes a clean one
    assert detector.population["closed"] == closed + 1


def test_the_model_follows_drift_in_normal_behaviour() -> None:
    detector = warmed_up()
    for k in range(101, 400):  # the shopper base gets busier: 15 events a window
        for e in window("shopper", k, 15, gap=30.0):
            detector.observe(e)
    assert detector.population["center"][0] == 15.0
    assert [a for e in window("busy", 500, 25) for a in detector.observe(e)] == []


def test_an_idle_users_clean_window_is_learned_when_its_state_expires() -> None:
    detector = warmed_up()
    closed = detector.population["closed"]
    for e in window("leaver", 300, 4):
        detector.observe(e)
    assert detector.expire(T0 + 302 * 600) == 2  # the shopper's last window and the leaver's
    assert detector.population["closed"] == closed + 2
    assert "leaver" not in detector.states


def test_states_and_population_through_json_give_the_same_alerts() -> None:
    stream = [e for k in range(101) for e in window("shopper", k, 3)] + window("bot", 200, 60, gap=5.0)
    whole = RobustZ(CONFIG)
    expected = [a.to_dict() for e in stream for a in whole.observe(e)]
    assert expected
    first = RobustZ(CONFIG)
    alerts = [a.to_dict() for e in stream[:200] for a in first.observe(e)]
    resumed = RobustZ(CONFIG)
    resumed.states = orjson.loads(orjson.dumps(first.states))
    resumed.population = orjson.loads(orjson.dumps(first.population))
    alerts += [a.to_dict() for e in stream[200:] for a in resumed.observe(e)]
    assert alerts == expected
