"""Validation: every rejection has a precise, stable reason."""

from __future__ import annotations

import orjson
import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from models.data.eventlog import read_log
from models.data.events import Event
from stream_app.records import (DEAD_LETTER_MAX_BYTES, DEAD_LETTER_MAX_KEY_BYTES, DETAIL_MAX_CHARS, Rejection,
                                dead_letter, decode_event)

NOW = 1_700_000_000.0


def decode(value: bytes | None, max_bytes: int = 4096):
    return decode_event(value, max_bytes=max_bytes, now=NOW, max_future_skew_s=300)


def event(**fields) -> bytes:
    base = {"user_id": "u1", "item_id": "i1", "event_type": "click", "ts": NOW - 10}
    base.update(fields)
    return orjson.dumps({k: v for k, v in base.items() if v is not None})


def test_valid_event_is_decoded_with_optional_fields():
    ev = decode(event(user_id=7, price=9.5, quantity=2, category=12, session_id="s"))
    assert ev == Event("7", "i1", "click", NOW - 10, session_id="s", price=9.5, quantity=2, category="12")


def test_iso_time_with_zone_is_accepted():
    ev = decode(event(ts="2023-11-14T22:13:10+00:00"))
    assert isinstance(ev, Event) and ev.ts == 1_699_999_990.0


@pytest.mark.parametrize(
    ("raw", "code", "detail_has"),
    [
        (None, "empty", "no value"),
        (b"", "empty", "no value"),
        (b'{"user_id": "u1"', "not_json", ""),
        (b"[1, 2]", "not_object", "list"),
        (event(item_id=None), "missing_field", "item_id"),
        (event(user_id=""), "missing_field", "user_id"),
        (event(event_type="like"), "unknown_event_type", "like"),
        (event(ts="yesterday"), "bad_time", "unparseable"),
        (event(ts="2023-11-14T22:13:10"), "bad_time", "time zone"),
        (event(ts=-5), "bad_time", "positive"),
        (event(ts=True), "bad_time", "boolean"),
        (event(ts=NOW + 3600), "bad_time", "future"),
        (event(user_id=[1]), "bad_field", "user_id"),
        (b'{"user_id": 123456789012345678901234567890, "item_id": "i1", "event_type": "click", "ts": 1699999990}',
         "bad_field", "beyond 64 bits"),
        (event(price=-1), "bad_field", "price"),
        (event(quantity=0), "bad_field", "quantity"),
        (event(quantity=2.5), "bad_field", "positive whole number, not 2.5"),
        (event(category="x" * 5000), "oversize", "limit 4096"),
    ],
)
def test_rejections_carry_a_precise_reason(raw, code, detail_has):
    result = decode(raw)
    assert isinstance(result, Rejection), result
    assert result.code == code
    assert detail_has in result.detail


def test_rejection_headers_name_the_reason():
    headers = dict(Rejection("bad_time", "ts in 2100").headers())
    assert headers == {"dlq-reason": b"bad_time", "dlq-detail": b"ts in 2100"}


def test_a_dead_letter_keeps_the_bytes_and_says_where_they_came_from_and_cuts_only_huge_ones() -> None:
    why = Rejection("oversize", "too big")
    key, value, headers = dead_letter(b"u1", b"x" * DEAD_LETTER_MAX_BYTES, why, "events", 3, 41)
    assert key == b"u1" and value == b"x" * DEAD_LETTER_MAX_BYTES and dict(headers) == {
        "dlq-reason": b"oversize", "dlq-detail": b"too big", "source-topic": b"events", "source-partition": b"3",
        "source-offset": b"41"}
    _, value, headers = dead_letter(b"u1", b"y" * (DEAD_LETTER_MAX_BYTES + 1), why, "events", 3, 42)
    assert value == b"y" * DEAD_LETTER_MAX_BYTES
    assert dict(headers)["dlq-truncated"] == b"true" and dict(headers)["dlq-original-bytes"] == str(
        DEAD_LETTER_MAX_BYTES + 1).encode()
    assert dead_letter(None, None, Rejection("empty", "no value"), "events", 0, 0)[:2] == (None, None)


def test_a_dead_letter_cuts_a_huge_key_and_still_fits_a_producer_request() -> None:
    """Kafka's broker takes a message up to about 1 MiB (``message.max.bytes``), here a 950,000-byte key
    beside a 90,000-byte value; the dead letter, key uncut, did not fit in Faust's 1,000,000-byte request
    (synthetic message)."""
    raw_key, raw = b"k" * 950_000, b"v" * 90_000
    key, value, headers = dead_letter(raw_key, raw, Rejection("not_json", "x"), "events", 0, 7)
    assert key == raw_key[:DEAD_LETTER_MAX_KEY_BYTES] and value == raw
    assert dict(headers)["dlq-key-truncated"] == b"true" and dict(headers)["dlq-original-key-bytes"] == b"950000"
    assert DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers) < 1_000_000
    assert DefaultRecordBatchBuilder.estimate_size_in_bytes(raw_key, value, headers) > 1_000_000  # the old send


@pytest.mark.parametrize("event_type", ["x" * 590_000, "\u200b" * 199_000], ids=["ascii", "repr-doubled"])
def test_a_dead_letter_fits_a_producer_request_whatever_the_event_quotes(event_type) -> None:
    """An event under a raised ``RECO_MAX_EVENT_BYTES`` (600,000) with a huge unknown event type: its detail
    quoted the type whole, so the dead letter outgrew Faust's 1,000,000-byte request and stopped the worker."""
    raw = event(event_type=event_type)
    why = decode(raw, max_bytes=600_000)
    assert why.code == "unknown_event_type" and len(why.detail) == DETAIL_MAX_CHARS
    key, value, headers = dead_letter(b"user", raw, why, "events", 0, 7)
    assert DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers) < 1_000_000


@pytest.mark.parametrize("ts", ["2023-11-14T22:13:10+00:00", NOW - 10, True, "1699999990", -5, 0, "nan",
                                "2023-11-14T22:13:10", "yesterday", None, [1]])
def test_the_log_reader_judges_a_time_as_the_stream_does(ts, tmp_path):
    """Training and evaluation read logs with ``read_jsonl``: an event time the stream refuses must be a bad
    line there too, and one it takes must come out the same (synthetic events)."""
    raw = orjson.dumps({"user_id": "u1", "item_id": "i1", "event_type": "click", "ts": ts})
    (tmp_path / "synthetic.jsonl").write_bytes(raw + b"\n")
    (read,) = read_log(tmp_path / "synthetic.jsonl", "jsonl")
    live = decode(raw)
    assert isinstance(read, Event) == isinstance(live, Event)
    if isinstance(live, Event):
        assert read.ts == live.ts


def test_a_whole_quantity_written_as_a_float_is_taken():
    """A producer that writes every number as a float sends ``"quantity": 2.0``: it was dead-lettered."""
    assert decode(event(quantity=2.0)).quantity == 2 and isinstance(decode(event(quantity=2.0)).quantity, int)
