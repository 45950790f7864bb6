"""The replay order on small synthetic logs: an external merge sort equal to the in-memory stable sort."""

from __future__ import annotations

import asyncio
import math
import random
import tempfile
import time
from pathlib import Path

import orjson
import pytest

from models.data.eventlog import BadLine, read_log
from models.data.events import Event
from stream_app.replay import producer
from stream_app.replay.producer import order_for_replay, ordered_records, replay

N_EVENTS, N_BAD, CHUNK = 60, 10, 7


@pytest.fixture
def spill_dir(tmp_path, monkeypatch) -> Path:
    """Where the replay's temporary directory goes, watched by the tests."""
    spill = tmp_path / "spill"
    spill.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spill))
    return spill


@pytest.fixture
def synthetic_log(tmp_path) -> Path:
    """60 synthetic events at 6 distinct times (ties across every chunk of 7), 10 bad lines mixed in
    (one not UTF-8: its text keeps lone surrogates through the bad-line spill file)."""
    rng = random.Random(7)
    lines = [orjson.dumps({"user_id": f"u{i % 9}", "item_id": f"i{i}", "event_type": "view",
                           "ts": 1_700_000_000.0 + rng.randint(0, 5)}) for i in range(N_EVENTS)]
    bad = [b"not json", b'{"user_id": "u1"}', b"\xff\xfe not utf-8"] + [b"{broken %d" % i for i in range(7)]
    for line in bad:
        lines.insert(rng.randrange(len(lines) + 1), line)
    path = tmp_path / "synthetic_events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def in_memory_order(records: list[Event | BadLine]) -> list[Event | BadLine]:
    """The replay order before the external sort: a stable sort of the events, then bad lines."""
    events = [r for r in records if isinstance(r, Event)]
    return sorted(events, key=lambda e: e.ts) + [r for r in records if isinstance(r, BadLine)]


def test_synthetic_log_spills_runs_and_streams_the_stable_sort_order(synthetic_log, spill_dir):
    records = list(read_log(synthetic_log, "jsonl"))
    assert sum(isinstance(r, BadLine) for r in records) == N_BAD
    ordered = ordered_records(iter(records), chunk_events=CHUNK)
    first = next(ordered)  # the input is read and spilled before the first record comes out
    (tmp,) = spill_dir.iterdir()
    runs = sorted(tmp.glob("run-*.jsonl"))
    # memory bound: one run per chunk of at most CHUNK events, and the bad lines in a file of their own
    assert len(runs) == math.ceil(N_EVENTS / CHUNK)
    assert all(len(run.read_bytes().splitlines()) <= CHUNK for run in runs)
    assert len((tmp / "bad.jsonl").read_text().splitlines()) == CHUNK  # the first full chunk of bad lines
    assert [first, *ordered] == in_memory_order(records)
    assert list(spill_dir.iterdir()) == []


def test_input_that_fits_one_chunk_uses_no_files(synthetic_log, spill_dir):
    records = list(read_log(synthetic_log, "jsonl"))
    ordered = ordered_records(records, chunk_events=N_EVENTS)
    first = next(ordered)
    assert list(spill_dir.iterdir()) == []
    assert [first, *ordered] == in_memory_order(records)


def test_files_are_removed_on_error_and_on_early_close(synthetic_log, spill_dir):
    def failing():
        yield from read_log(synthetic_log, "jsonl")
        raise OSError("disk went away")

    with pytest.raises(OSError, match="disk went away"):
        list(ordered_records(failing(), chunk_events=CHUNK))
    assert list(spill_dir.iterdir()) == []
    ordered = ordered_records(read_log(synthetic_log, "jsonl"), chunk_events=CHUNK)
    next(ordered)
    assert len(list(spill_dir.iterdir())) == 1
    ordered.close()
    assert list(spill_dir.iterdir()) == []


def test_non_finite_times_survive_a_spill():
    events = [Event("u", str(i), "view", ts) for i, ts in enumerate([math.inf, 1.0, -math.inf, 2.0, 1.0])]
    assert order_for_replay(events, chunk_events=1) == in_memory_order(events)


class FakeProducer:
    """Records what would be produced; every send is delivered at once."""

    sent: list[tuple[bytes | None, bytes, float]] = []

    def __init__(self, **_kw) -> None:
        FakeProducer.sent = []

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def flush(self) -> None: ...

    async def send(self, topic: str, value: bytes, key: bytes | None) -> asyncio.Future:
        FakeProducer.sent.append((key, value, time.monotonic()))
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


@pytest.mark.parametrize("limit", [None, 0, 5, 40, 69, 70, 1000])
def test_limit_sends_the_first_records_of_the_order_with_the_old_summary(synthetic_log, spill_dir,
                                                                         monkeypatch, limit):
    monkeypatch.setattr(producer, "AIOKafkaProducer", FakeProducer)
    records = list(read_log(synthetic_log, "jsonl"))
    summary = asyncio.run(replay(records, bootstrap="-", topic="events", progress=False, limit=limit,
                                 chunk_events=CHUNK))
    expected = in_memory_order(records)[:limit]
    events = [r for r in expected if isinstance(r, Event)]
    assert [(k, v) for k, v, _ in FakeProducer.sent] == [producer.encode(r) for r in expected]
    assert (summary.sent, summary.events, summary.bad_lines, summary.users, summary.first_ts,
            summary.last_ts) == (len(expected), len(events), len(expected) - len(events),
                                 len({e.user_id for e in events}), events[0].ts if events else None,
                                 events[-1].ts if events else None)
    assert list(spill_dir.iterdir()) == []


def test_speed_paces_events_by_event_time(monkeypatch):
    monkeypatch.setattr(producer, "AIOKafkaProducer", FakeProducer)
    events = [Event("u", str(i), "view", 100.0 + ts) for i, ts in enumerate([1.0, 0.0, 0.5])]
    asyncio.run(replay(events, bootstrap="-", topic="events", progress=False, speed=5.0, chunk_events=1))
    times = [t for _, _, t in FakeProducer.sent]
    assert [orjson.loads(v)["ts"] for _, v, _ in FakeProducer.sent] == [100.0, 100.5, 101.0]
    assert times[1] - times[0] >= 0.09 and times[2] - times[0] >= 0.19


class FakeClock:
    """``time.monotonic`` for the producer that only moves when it sleeps; the sleeps are recorded."""

    def __init__(self) -> None:
        self.now, self.waits = 1000.0, []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def paced_on_a_fake_clock(monkeypatch, run) -> FakeClock:
    clock = FakeClock()
    monkeypatch.setattr(producer, "AIOKafkaProducer", FakeProducer)
    monkeypatch.setattr(producer, "time", type("FakeTime", (), {"monotonic": clock.monotonic, "time": time.time}))
    monkeypatch.setattr(producer.asyncio, "sleep", clock.sleep)
    asyncio.run(run())
    return clock


def test_a_long_gap_in_event_time_is_cut_to_max_gap_s(monkeypatch):
    """Synthetic: 1,000 s of silence at speed 1 waits 2 s, and the events after it keep their own pace."""
    events = [Event("u", str(i), "view", 100.0 + ts) for i, ts in enumerate([0.0, 1000.0, 1001.0, 1001.5])]
    clock = paced_on_a_fake_clock(monkeypatch, lambda: replay(events, bootstrap="-", topic="events",
                                                               progress=False, speed=1.0, max_gap_s=2.0))
    assert clock.waits == [2.0, 1.0, 0.5]


def test_a_paced_replay_of_the_taobao_sample_does_not_stall_on_its_2017_09_11_event(monkeypatch):
    """The sample's first event is ten weeks before the rest: at --speed 60 the replay waited ~30 hours."""
    sample = Path(__file__).resolve().parents[3] / "data" / "sample" / "taobao_user_behavior.csv"
    clock = paced_on_a_fake_clock(monkeypatch, lambda: producer.replay_file(
        str(sample), "taobao", bootstrap="-", topic="events", progress=False, speed=60.0))
    assert len(FakeProducer.sent) == 4321
    assert max(clock.waits) <= producer.MAX_GAP_S + 1e-6  # (float rounding of the running schedule)
    rest_s = (1512316753 - 1511539241) / 60  # the other events' span at 60x: 3.6 hours
    # still paced (1.7 hours: the night-time spells over 5 minutes of event time are cut too), not 30 hours
    assert 3600 < sum(clock.waits) <= rest_s + producer.MAX_GAP_S
