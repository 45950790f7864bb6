"""Item-activity messages: read back, or skipped with a log line (stopping on one would stop every restart)."""

from __future__ import annotations

import orjson

from stream_app.agents.items import read_activity
from stream_app.state import ItemActivity


def test_an_activity_message_reads_back() -> None:
    act = ItemActivity(2.5, {"i2": 3})
    assert read_activity(orjson.dumps(act.to_wire()), 0, 7, b"i1") == act


def test_an_unreadable_activity_message_is_logged_with_its_position_and_skipped(caplog) -> None:
    """Including the ones that used to pass here and stop the item-stats agent when applied: a weight
    that is not a number, a message without a key, a key that is not UTF-8."""
    good = orjson.dumps(ItemActivity(2.5, {"i2": 3}).to_wire())
    cases = [(b"not json", b"i1"), (b"[1, 2]", b"i1"), (b'{"p": "x"}', b"i1"), (None, b"i1"),
             (b'{"p": 1.0, "n": {"i2": "3"}}', b"i1"), (b'{"p": 1.0, "n": {"i2": null}}', b"i1"),
             (good, None), (good, b"\xff\xfe")]
    for n, (value, key) in enumerate(cases):
        assert read_activity(value, 1, n, key) is None, (value, key)
        assert f"partition 1 offset {n}" in caplog.text
