"""The worker's anomaly monitor, configured from settings (thresholds from an optional JSON file)."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from models.anomaly.monitor import AnomalyMonitor, MonitorConfig
from stream_app.settings import Settings
from stream_app.touches import partition_of


def with_overrides(config: Any, overrides: dict[str, Any]) -> Any:
    """``config`` (a frozen dataclass, nested) with ``overrides`` applied; unknown names are errors."""
    known = {f.name: getattr(config, f.name) for f in fields(config)}
    changes = {}
    for name, value in overrides.items():
        if name not in known:
            raise ValueError(f"unknown setting {name!r} in {type(config).__name__}; known: {sorted(known)}")
        current = known[name]
        changes[name] = with_overrides(current, value) if is_dataclass(current) else type(current)(value)
    return replace(config, **changes)


def make_monitor(settings: Settings, *, items: bool = True) -> AnomalyMonitor | None:
    """The monitor the settings ask for, or None when anomaly detection is off (``items``: see
    ``AnomalyMonitor``; the events agent's leaves the item-keyed detectors to the item-anomalies agent)."""
    if not settings.anomaly_detection:
        return None
    config = MonitorConfig(forget_idle_users=True)  # user states keep their snapshots
    if settings.anomaly_config:
        config = with_overrides(config, json.loads(Path(settings.anomaly_config).read_text()))
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
