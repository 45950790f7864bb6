"""The trainer reads samples it can and names the reason for each it cannot."""

from __future__ import annotations

import orjson

from models.online.samples import TrainingSample
from stream_app.trainer import parse_samples


def test_unreadable_samples_are_returned_with_their_reason_and_position() -> None:
    good = TrainingSample("u1", ["a"], ["view"], "b", "click", 2.0, 1_700_000_000_000, "v1")
    values = [orjson.dumps(good.to_dict()), b"not json", None, b'{"user_id": "u1"}', b"[1, 2]"]
    samples, rejected = parse_samples(values)
    assert samples == [good]
    assert [n for n, _ in rejected] == [1, 2, 3, 4]
    assert {why.code for _, why in rejected} == {"bad_sample"} and all(why.detail for _, why in rejected)
