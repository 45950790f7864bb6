"""Log readers on the real bundled sample and on small named synthetic lines."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from models.data.eventlog import SEQUENCE_EPOCH, SEQUENCE_STEP_S, BadLine, read_log
from models.data.events import Event

SAMPLE = Path(__file__).resolve().parents[3] / "data" / "sample"


def test_taobao_sample_reads_every_row_with_mapped_types():
    events = list(read_log(SAMPLE / "taobao_user_behavior.csv", "taobao"))
    assert len(events) == 4321 and all(isinstance(e, Event) for e in events)
    assert {e.event_type for e in events} == {"view", "click", "add_to_cart", "purchase"}
    assert len({e.user_id for e in events}) == 43


def test_malformed_sample_lines_come_back_verbatim(tmp_path):
    lines = (SAMPLE / "malformed_events.jsonl").read_text().splitlines()
    out = list(read_log(SAMPLE / "malformed_events.jsonl", "jsonl"))
    bad = [o for o in out if isinstance(o, BadLine)]
    # the future-dated, negative-price and oversize events parse; the stream rejects them
    assert [b.text for b in bad] == [lines[i] for i in (0, 1, 2, 3, 7)]


def test_sequences_become_purchases_at_synthetic_daily_times(tmp_path):
    path = tmp_path / "synthetic_sequences.txt"
    path.write_text("u1 10 11 12\nu2 11\n")
    events = list(read_log(path, "sequences"))
    assert [(e.user_id, e.item_id, e.ts) for e in events][:3] == [
        ("u1", "10", SEQUENCE_EPOCH), ("u1", "11", SEQUENCE_EPOCH + SEQUENCE_STEP_S),
        ("u1", "12", SEQUENCE_EPOCH + 2 * SEQUENCE_STEP_S)]
    assert all(e.event_type == "purchase" for e in events)


def test_otto_sessions_map_types_and_milliseconds(tmp_path):
    path = tmp_path / "synthetic_otto.jsonl"
    path.write_text('{"session": 5, "events": [{"aid": 1, "ts": 1659304800025, "type": "carts"}]}\n')
    (e,) = read_log(path, "otto")
    assert (e.user_id, e.item_id, e.event_type, e.ts) == ("5", "1", "add_to_cart", 1659304800.025)


def test_unknown_format_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown log format 'csv'"):
        read_log("x", "csv")


def test_a_byte_order_mark_does_not_join_the_first_users_id(tmp_path):
    """Spreadsheet exports start with one; read as text it became part of user "1"'s id (synthetic file)."""
    path = tmp_path / "synthetic.csv"
    path.write_bytes(b"\xef\xbb\xbf1,10,5,pv,1511544070\n1,11,5,pv,1511544071\n")
    assert [e.user_id for e in read_log(path, "taobao")] == ["1", "1"]


def test_jsonl_times_are_judged_as_the_stream_judges_them(tmp_path):
    """Synthetic lines: an ISO-8601 time with a zone is a time; a boolean, a string of digits, a negative
    or zero time and a 'nan' are bad lines (a NaN time scrambled every later sort by time)."""
    times = ["2017-11-25T10:00:00+00:00", 1511604000, True, "1511604000", -5, 0, "nan", "2017-11-25T10:00:00"]
    path = tmp_path / "synthetic_times.jsonl"
    path.write_bytes(b"".join(orjson.dumps({"user_id": "u1", "item_id": f"i{n}", "event_type": "view", "ts": t})
                              + b"\n" for n, t in enumerate(times)))
    out = list(read_log(path, "jsonl"))
    assert [e.ts for e in out if isinstance(e, Event)] == [1511604000.0, 1511604000.0]
    bad = [b for b in out if isinstance(b, BadLine)]
    assert [b.line_no for b in bad] == [3, 4, 5, 6, 7, 8]
    assert "boolean" in bad[0].reason and "no time zone" in bad[-1].reason


def test_taobao_times_must_be_positive_and_finite(tmp_path):
    path = tmp_path / "synthetic.csv"
    path.write_text("1,10,5,pv,nan\n1,11,5,pv,-inf\n1,12,5,pv,inf\n1,13,5,pv,0\n1,14,5,buy,1511544070\n")
    out = list(read_log(path, "taobao"))
    assert [e.ts for e in out if isinstance(e, Event)] == [1511544070.0]
    assert [b.line_no for b in out if isinstance(b, BadLine)] == [1, 2, 3, 4]
