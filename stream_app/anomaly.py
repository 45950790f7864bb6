"""The worker's anomaly monitor, configured from settings (thresholds from an optional JSON file)."""

from __future__ import annotations

import json
import math
from collections.abc import Collection
from dataclasses import fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from models.anomaly.alerts import SEVERITIES
from models.anomaly.monitor import AnomalyMonitor, MonitorConfig
from stream_app.settings import Settings
from stream_app.touches import partition_of


_ZERO_COUNTS = {"prune_min_events"}  # counts where 0 is meaningful (prune whenever due)


def with_overrides(config: Any, overrides: dict[str, Any]) -> Any:
    """``config`` (a frozen dataclass, nested) with ``overrides`` applied; unknown names are errors."""
    if not isinstance(overrides, dict):  # '{"rate_burst": 5}' or a JSON list: an AttributeError further on
        raise ValueError(f"{type(config).__name__}'s overrides must be a JSON object, not {overrides!r}")
    known = {f.name: getattr(config, f.name) for f in fields(config)}
    changes = {}
    for name, value in overrides.items():
        if name not in known:
            raise ValueError(f"unknown setting {name!r} in {type(config).__name__}; known: {sorted(known)}")
        current = known[name]
        if is_dataclass(current):
            changes[name] = with_overrides(current, value)
        elif isinstance(current, tuple):  # numbers, one per feature: as many, each of the default's type
            if not isinstance(value, (list, tuple)) or len(value) != len(current):
                raise ValueError(f"anomaly setting {name} needs {len(current)} numbers, not {value!r}")
            changes[name] = tuple(type(c)(v) for c, v in zip(current, value))
        else:
            changes[name] = type(current)(value)
    return replace(config, **changes)


def check_thresholds(config: Any, path: str = "") -> None:
    """``ValueError`` naming the first setting no detector can work with: a severity not in ``SEVERITIES``, a
    number that is not finite, a duration (``*_s``) or a count below 1 (0 divides, or empties a window or
    a ring), any other number below 0. Checked at start: a bad value from the anomaly config file would
    otherwise stop the worker at its first alert, and again after every restart."""
    for f in fields(config):
        value, name = getattr(config, f.name), f"{path}{f.name}"
        if is_dataclass(value):
            check_thresholds(value, f"{name}.")
        elif f.name == "severity" or f.name.endswith("_severity"):
            if value not in SEVERITIES:
                raise ValueError(f"anomaly setting {name}: severity must be one of {SEVERITIES}, not {value!r}")
        else:
            for n in value if isinstance(value, tuple) else (value,):
                if isinstance(n, bool) or not isinstance(n, (int, float)):
                    continue
                if f.name.endswith("_s"):
                    ok, need = n > 0, "above 0"
                elif isinstance(n, int) and f.name not in _ZERO_COUNTS:
                    ok, need = n >= 1, "at least 1"
                else:
                    ok, need = n >= 0, "at least 0"
                if not (math.isfinite(n) and ok):
                    raise ValueError(f"anomaly setting {name} must be a finite number {need}, not {value!r}")


def make_monitor(settings: Settings, *, items: bool = True) -> AnomalyMonitor | None:
    """The monitor the settings ask for, or None when anomaly detection is off (``items``: see
    ``AnomalyMonitor``; the events agent's leaves the item-keyed detectors to the item-anomalies agent)."""
    if not settings.anomaly_detection:
        return None
    config = MonitorConfig(forget_idle_users=True)  # user states keep their snapshots
    if settings.anomaly_config:
        config = with_overrides(config, json.loads(Path(settings.anomaly_config).read_text()))
        check_thresholds(config)
    return AnomalyMonitor(config, items=items)


def forget_moved_items(monitor: AnomalyMonitor, held: Collection[int], partitions: int) -> int:
    """Forget the items of the item-touches topic's partitions this worker no longer ``held`` (after a
    rebalance); returns how many. Kept, a moved item's state would be stale when its partition came back
    (``restore_item`` keeps what the monitor holds), and written back over the other worker's."""
    moved = [i for i in monitor.known_items() if partition_of(i, partitions) not in held]
    for item in moved:
        monitor.forget_item(item)
    return len(moved)


def forget_moved_users(monitor: AnomalyMonitor, held: Collection[int], partitions: int) -> int:
    """Forget the users of the events topic's partitions this worker no longer ``held`` (after a rebalance);
    returns how many. See ``AnomalyMonitor.forget_user``."""
    moved = [u for u in monitor.known_users() if partition_of(u, partitions) not in held]
    for user in moved:
        monitor.forget_user(user)
    return len(moved)
