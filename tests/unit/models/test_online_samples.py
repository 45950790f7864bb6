"""Training samples survive the trip through a JSON topic and carry the history before the event."""

from __future__ import annotations

import json

import pytest

from models.data.events import Event
from models.online.samples import TrainingSample, sample_from


def test_sample_round_trips_through_json() -> None:
    history = [("synthetic-item-1", "view"), ("synthetic-item-2", "add_to_cart")]
    event = Event("synthetic-user-1", "synthetic-item-3", "purchase", 1_700_000_000.25)
    sample = sample_from(history, event, "ensemble-abc", max_len=50)
    wire = json.dumps(sample.to_dict())
    back = TrainingSample.from_dict(json.loads(wire))
    assert back == sample
    assert back.items == ["synthetic-item-1", "synthetic-item-2"] and back.types == ["view", "add_to_cart"]
    assert (back.target, back.event_type, back.ts_ms, back.model_version) == (
        "synthetic-item-3", "purchase", 1_700_000_000_250, "ensemble-abc"
    )
    assert back.weight == 8.0  # a purchase weighs as in popularity and co-visitation


def test_sample_keeps_only_the_latest_items() -> None:
    history = [f"synthetic-item-{i}" for i in range(10)]  # plain ids count as purchases
    sample = sample_from(history, Event("u", "synthetic-item-10", "view", 0.0), "v1", max_len=3)
    assert sample.items == ["synthetic-item-7", "synthetic-item-8", "synthetic-item-9"]
    assert sample.types == ["purchase"] * 3 and sample.weight == 1.0
    assert sample_from(history, Event("u", "x", "view", 0.0), "v1", max_len=0).items == []


def test_bad_messages_are_rejected() -> None:
    with pytest.raises(ValueError):
        TrainingSample("u", ["a", "b"], ["view"], "c", "view", 1.0, 0, "v1")
    with pytest.raises(KeyError):
        TrainingSample.from_dict({"user_id": "u"})
