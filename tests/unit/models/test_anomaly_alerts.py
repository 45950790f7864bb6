"""The alerts-topic record and the quarantine it sets."""

from __future__ import annotations

import orjson
import pytest

from models.anomaly.alerts import Alert, QuarantinePolicy


def make_alert(**overrides: object) -> Alert:
    fields: dict[str, object] = dict(
        entity_type="user", entity_id="u1", detector="rate_burst", severity="medium", score=25.0,
        window_start=60.0, window_end=120.0, event_ts=95.0,
        evidence={"events_in_window": 25,
                  "examples": [{"user_id": "u1", "item_id": "i", "event_type": "click", "ts": 95.0}]},
    )
    fields.update(overrides)
    return Alert(**fields)  # type: ignore[arg-type]


def test_alert_round_trips_through_json() -> None:
    alert = QuarantinePolicy().expiry(make_alert())
    wire = orjson.loads(orjson.dumps(alert.to_dict()))
    assert Alert.from_dict(wire) == alert
    assert wire["expires_ts"] == 95.0 + 3600.0


def test_key_is_entity_detector_and_window() -> None:
    a = make_alert()
    assert a.key == ("user", "u1", "rate_burst", 60.0)
    assert make_alert(event_ts=110.0, score=30.0).key == a.key
    assert make_alert(window_start=120.0).key != a.key


@pytest.mark.parametrize("field, value", [("severity", "critical"), ("entity_type", "session")])
def test_unknown_severity_or_entity_type_is_rejected(field: str, value: str) -> None:
    with pytest.raises(ValueError):
        make_alert(**{field: value})


def test_quarantine_lasts_longer_for_more_severe_alerts() -> None:
    policy = QuarantinePolicy(low_s=10.0, medium_s=100.0, high_s=1000.0)
    expiries = [policy.expiry(make_alert(severity=s)).expires_ts for s in ("low", "medium", "high")]
    assert expiries == [105.0, 195.0, 1095.0]
