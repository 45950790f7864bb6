"""Event records and readers for historical event logs."""

from models.data.events import EVENT_TYPES, Event
from models.data.eventlog import FORMATS, read_log

__all__ = ["EVENT_TYPES", "Event", "FORMATS", "read_log"]
