"""The alert record written to the ``alerts`` topic, and how long an alert quarantines its entity.

One ``Alert`` names one entity (a user or an item), the detector that fired,
the window it fired in and the evidence behind it. ``key`` is what makes an
alert unique: a detector raises at most one alert per entity and window, and
``AnomalyMonitor`` drops any repeat of a key, so a burst never floods the topic.

Wire form (``Alert.to_dict``), JSON-able::

    {"entity_type": "user" | "item", "entity_id": str, "detector": str,
     "severity": "low" | "medium" | "high", "score": float,
     "window_start": float, "window_end": float,   # Unix seconds, [start, end)
     "event_ts": float,      # time of the event that triggered the alert
     "evidence": {...},      # window counts and up to 5 example events (Event.to_dict)
     "expires_ts": float}    # the entity is quarantined until then
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

ENTITY_TYPES: tuple[str, ...] = ("user", "item")
SEVERITIES: tuple[str, ...] = ("low", "medium", "high")

AlertKey = tuple[str, str, str, float]  # (entity_type, entity_id, detector, window_start)


@dataclass(frozen=True, slots=True)
class Alert:
    """One anomaly raised against one entity in one window."""

    entity_type: str
    entity_id: str
    detector: str
    severity: str
    score: float
    window_start: float
    window_end: float
    event_ts: float
    evidence: dict[str, Any] = field(default_factory=dict, hash=False)
    expires_ts: float = 0.0

    def __post_init__(self) -> None:
        if self.entity_type not in ENTITY_TYPES:
            raise ValueError(f"entity_type must be one of {ENTITY_TYPES}, got {self.entity_type!r}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")

    @property
    def key(self) -> AlertKey:
        """Entity, detector and window: at most one alert is emitted per key."""
        return (self.entity_type, self.entity_id, self.detector, float(self.window_start))

    def to_dict(self) -> dict[str, Any]:
        """The wire form (see the module docstring)."""
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Alert:
        """The alert of a wire dict; raises ``KeyError``/``ValueError`` on a malformed one."""
        return Alert(
            entity_type=str(d["entity_type"]),
            entity_id=str(d["entity_id"]),
            detector=str(d["detector"]),
            severity=str(d["severity"]),
            score=float(d["score"]),
            window_start=float(d["window_start"]),
            window_end=float(d["window_end"]),
            event_ts=float(d["event_ts"]),
            evidence=dict(d.get("evidence") or {}),
            expires_ts=float(d.get("expires_ts", d["event_ts"])),
        )


@dataclass(frozen=True)
class QuarantinePolicy:
    """Seconds an alerted entity stays quarantined, by severity (counted from the triggering event)."""

    low_s: float = 600.0
    medium_s: float = 3600.0
    high_s: float = 24 * 3600.0

    def seconds(self, severity: str) -> float:
        """How long an alert of this severity quarantines."""
        return {"low": self.low_s, "medium": self.medium_s, "high": self.high_s}[severity]

    def expiry(self, alert: Alert) -> Alert:
        """``alert`` with ``expires_ts`` set from its severity."""
        return replace(alert, expires_ts=alert.event_ts + self.seconds(alert.severity))
