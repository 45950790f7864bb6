"""Fraud and anomaly alerts: pure detectors over the event stream (numpy and the standard library only).

``AnomalyMonitor`` runs every detector; each detector is a frozen config and
a pure ``step(state, event, context) -> (state, alert)`` over JSON-able
per-entity state, so the stream keeps that state in Faust tables and replay
and evaluation call the very same functions. ``inject`` adds labelled
synthetic attacks to a replay of real events for evaluation.
"""

from models.anomaly.alerts import Alert, QuarantinePolicy
from models.anomaly.base import Detector, UserContext
from models.anomaly.detectors import (
    CartBurst,
    CartBurstConfig,
    DistinctItems,
    DistinctItemsConfig,
    PriceJump,
    PriceJumpConfig,
    RateBurst,
    RateBurstConfig,
    RegularTiming,
    RegularTimingConfig,
    Shilling,
    ShillingConfig,
)
from models.anomaly.learned import RobustZ, RobustZConfig
from models.anomaly.monitor import AnomalyMonitor, MonitorConfig

__all__ = [
    "Alert", "AnomalyMonitor", "CartBurst", "CartBurstConfig", "Detector", "DistinctItems", "DistinctItemsConfig",
    "MonitorConfig", "PriceJump", "PriceJumpConfig", "QuarantinePolicy", "RateBurst", "RateBurstConfig",
    "RegularTiming", "RegularTimingConfig", "RobustZ", "RobustZConfig", "Shilling", "ShillingConfig", "UserContext",
]
