"""A replay judges each record as the stream will: nothing is more lenient than live traffic, and a record
with a time the stream would refuse neither paces nor orders the replay (synthetic lines)."""

from __future__ import annotations

import orjson

from models.data.eventlog import BadLine
from models.data.events import Event
from stream_app.records import Rejection, decode_event
from stream_app.replay.producer import read_for_replay
from stream_app.settings import Settings

NOW = 1_700_000_000.0
LINES = [
    '{"user_id": "u1", "item_id": "i1", "event_type": "view", "ts": "2017-11-25T00:00:00+00:00"}',
    '{"user_id": "u1", "item_id": "i1", "event_type": "view", "ts": 1511544070}',
    '{"user_id": null, "item_id": null, "event_type": "view", "ts": 1511544070}',
    '{"user_id": true, "item_id": "i1", "event_type": "view", "ts": 1511544070}',
    '{"user_id": {"a": 1}, "item_id": "i1", "event_type": "view", "ts": 1511544070}',
    '{"user_id": "u1", "item_id": "i1", "event_type": "view", "ts": "1511544070"}',
    '{"user_id": "u1", "item_id": "i1", "event_type": "view", "ts": true}',
    '{"user_id": "u1", "item_id": "i1", "event_type": "view", "ts": 0}',
    '{"user_id": "u1", "item_id": "i1", "event_type": "purchase", "ts": 1511544070, "price": "5"}',
    '{"user_id": "u1", "item_id": "i1", "event_type": "purchase", "ts": 1511544070, "quantity": 2.5}',
    '{"user_id": "u1", "item_id": "i1", "event_type": "view", "ts": 1511544070, "note": "' + "x" * 5000 + '"}',
]


def test_a_jsonl_replay_accepts_and_rejects_exactly_what_the_stream_does(tmp_path) -> None:
    path = tmp_path / "synthetic.jsonl"
    path.write_text("\n".join(LINES) + "\n")
    replayed = list(read_for_replay(path, "jsonl", Settings(), now=NOW))
    live = [decode_event(line.encode(), max_bytes=4096, now=NOW, max_future_skew_s=300.0) for line in LINES]
    assert [isinstance(r, Event) for r in replayed] == [isinstance(v, Event) for v in live]
    assert [isinstance(r, Event) for r in replayed] == [True, True] + [False] * 9
    for rec, verdict in zip(replayed, live):
        if isinstance(verdict, Rejection):
            assert rec.reason.startswith(verdict.code)  # the reason the stream will give
    assert replayed[0].ts == 1511568000.0  # an ISO time, as the stream reads it


def test_converted_records_the_stream_would_refuse_become_bad_lines(tmp_path) -> None:
    """Taobao: a zero or non-finite time (which hung a paced replay, or broke its order), an id that is
    not UTF-8, a field over csv's size limit; OTTO: a null item and a boolean time."""
    taobao = tmp_path / "synthetic.csv"
    taobao.write_bytes(b"1,10,5,pv,1511544070\n9,9,9,pv,0\n8,3,1,pv,nan\n7,2,1,pv,inf\n"
                       b"6\xff,4,1,pv,1511544071\n5," + b"x" * 200_000 + b",1,pv,1511544072\n2,11,5,buy,1511544073\n")
    records = list(read_for_replay(taobao, "taobao", Settings(), now=NOW))
    assert [(r.user_id, r.ts) for r in records if isinstance(r, Event)] == [("1", 1511544070.0), ("2", 1511544073.0)]
    assert len([r for r in records if isinstance(r, BadLine)]) == 5
    otto = tmp_path / "synthetic-otto.jsonl"
    otto.write_bytes(b"\n".join(orjson.dumps({"session": 1, "events": [e]}) for e in (
        {"aid": 5, "ts": 1_511_544_070_000, "type": "clicks"}, {"aid": None, "ts": 1_511_544_070_000, "type": "clicks"},
        {"aid": 6, "ts": True, "type": "clicks"})) + b"\n")
    records = list(read_for_replay(otto, "otto", Settings(), now=NOW))
    assert [isinstance(r, Event) for r in records] == [True, False, False]
