"""The anomaly config file (RECO_ANOMALY_CONFIG) is checked when the monitor is made, not at the first alert."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from models.anomaly.monitor import AnomalyMonitor
from stream_app.anomaly import make_monitor
from stream_app.settings import Settings


def monitor_from(tmp_path: Path, overrides: dict) -> AnomalyMonitor | None:
    path = tmp_path / "anomaly.json"
    path.write_bytes(orjson.dumps(overrides))
    return make_monitor(Settings(anomaly_detection=True, anomaly_config=str(path)))


def test_overrides_reach_the_detectors(tmp_path: Path) -> None:
    monitor = monitor_from(tmp_path, {"rate_burst": {"max_events": 60, "severity": "low"}, "prune_min_events": 0})
    assert monitor is not None
    assert monitor.config.rate_burst.max_events == 60 and monitor.config.rate_burst.severity == "low"
    assert monitor.config.prune_min_events == 0  # a count where 0 means something


@pytest.mark.parametrize(("overrides", "named"), [
    ({"rate_burst": {"severity": "critical"}}, "rate_burst.severity"),
    ({"member_severity": "urgent"}, "member_severity"),
    ({"quarantine": {"high_s": "inf"}}, "quarantine.high_s"),
    ({"shilling": {"min_share": -0.5}}, "shilling.min_share"),
    ({"robust_z": {"min_scale": [1.0, "nan", 1.0, 0.1]}}, "robust_z.min_scale"),
    ({"rate_burst": {"window_s": 0}}, "rate_burst.window_s"),
    ({"quarantine": {"low_s": 0}}, "quarantine.low_s"),
    ({"shilling": {"max_users": 0}}, "shilling.max_users"),
    ({"robust_z": {"ring": 0}}, "robust_z.ring"),
    ({"robust_z": {"refresh_every": 0, "min_windows": 1}}, "robust_z.refresh_every"),
])
def test_a_value_no_detector_can_use_is_refused_at_start_by_name(tmp_path: Path, overrides: dict, named: str) -> None:
    with pytest.raises(ValueError, match=named.replace(".", r"\.")):
        monitor_from(tmp_path, overrides)
