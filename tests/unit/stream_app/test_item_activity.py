"""Item-activity messages: read back, or skipped with a log line (stopping on one would stop every restart)."""

from __future__ import annotations

import orjson

from stream_app.agents.items import read_activity
from stream_app.state import ItemActivity


def test_an_activity_message_reads_back() -> None:
    act = ItemActivity(2.5, {"i2": 3})
    assert read_activity(orjson.dumps(act.to_wire()), 0, 7) == act


def test_an_unreadable_activity_message_is_logged_with_its_position_and_skipped(caplog) -> None:
    for n, value in enumerate([b"not json", b"[1, 2]", b'{"p": "x"}', None]):
        assert read_activity(value, 1, n) is None
        assert f"partition 1 offset {n}" in caplog.text
