"""Replay a historical log into the events topic.

Events are sent in event-time order (a stable sort, so each user's order is
kept) and keyed by user, so every user's events land on one partition in
order. ``speed=None`` sends as fast as possible; ``speed=60`` replays an hour
of event time per minute, and ``max_gap_s`` caps the wait between two paced
sends (one event weeks before the rest, like the bundled Taobao sample's
2017-09-11 event, stalled a paced replay for hours). Lines a reader cannot
parse are sent verbatim (unkeyed) so that the stream rejects them to the
dead-letter topic.

The log is ordered by an external merge sort (``ordered_records``), so memory
is bounded by ``chunk_events`` events, not by the size of the log (the
summary also keeps each distinct user id: about 90 bytes per user).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import math
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain, islice
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer
from tqdm import tqdm

from models.data.eventlog import BadLine, log_lines, read_log
from models.data.events import Event
from stream_app.records import decode_event
from stream_app.settings import Settings


@dataclass(frozen=True)
class ReplaySummary:
    sent: int
    events: int
    bad_lines: int
    users: int
    seconds: float
    first_ts: float | None
    last_ts: float | None

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else float("inf")

    def __str__(self) -> str:
        return (f"replayed {self.sent} messages ({self.events} events from {self.users} users, "
                f"{self.bad_lines} unparseable lines) in {self.seconds:.2f} s = {self.rate:,.0f} msg/s")


CHUNK_EVENTS = 1_000_000  # events sorted in memory at a time (~300 bytes each)
PRUNE_EVERY = 10_000  # sends between drops of delivered sends' futures
_FLOAT_FIELDS = ("ts", "price")  # orjson writes a non-finite float as null


def _ts(event: Event) -> float:
    return event.ts


def _dump_event(event: Event) -> bytes:
    """One spill line: orjson's own dataclass form (``to_dict``'s, unset fields as null).

    It skips ``asdict``'s deep copy; a non-finite time or price, which orjson
    would write as null, is kept as its repr.
    """
    if math.isfinite(event.ts) and (event.price is None or math.isfinite(event.price)):
        return orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE)
    d = event.to_dict()
    for k in _FLOAT_FIELDS:
        if k in d and not math.isfinite(d[k]):
            d[k] = repr(d[k])
    return orjson.dumps(d, option=orjson.OPT_APPEND_NEWLINE)


def _load_event(line: bytes) -> Event:
    d = orjson.loads(line)
    for k in _FLOAT_FIELDS:
        if isinstance(d.get(k), str):
            d[k] = float(d[k])
    return Event(**d)


class _Spill:
    """Sorted runs and bad lines on disk, in a temporary directory made on first use.

    ``close`` closes the files it opened and removes the directory.
    """

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self._dir: Path | None = None
        self.runs: list[Path] = []
        self.bad: Path | None = None

    def _path(self, name: str) -> Path:
        if self._dir is None:
            tmp = tempfile.TemporaryDirectory(prefix="reco-replay-")
            self._dir = Path(self._stack.enter_context(tmp))
        return self._dir / name

    def add_run(self, events: list[Event]) -> None:
        """Sort ``events`` stably by event time (in place) and write them as one run."""
        events.sort(key=_ts)
        path = self._path(f"run-{len(self.runs):06d}.jsonl")
        with open(path, "wb") as fh:
            fh.writelines(map(_dump_event, events))
        self.runs.append(path)

    def add_bad(self, lines: list[BadLine]) -> None:
        """Append bad lines to the one bad-line file (stdlib JSON: it keeps lone surrogates)."""
        self.bad = self.bad or self._path("bad.jsonl")
        with open(self.bad, "a", encoding="ascii") as fh:
            fh.writelines(json.dumps([b.line_no, b.text, b.reason]) + "\n" for b in lines)

    def read_run(self, path: Path) -> Iterator[Event]:
        return map(_load_event, self._stack.enter_context(open(path, "rb")))

    def read_bad(self) -> Iterator[BadLine]:
        if self.bad is None:
            return iter(())
        fh = self._stack.enter_context(open(self.bad, encoding="ascii"))
        return (BadLine(*json.loads(line)) for line in fh)

    def close(self) -> None:
        self._stack.close()


def _tagged(run: Iterator[Event], run_no: int) -> Iterator[tuple[float, int, Event]]:
    for event in run:
        yield event.ts, run_no, event


def _merge(runs: list[Iterator[Event]]) -> Iterator[Event]:
    """Merge sorted runs by (event time, run number).

    Runs are consecutive chunks of the input, each sorted stably, so this is
    the order of (event time, position in the input): a stable sort's.
    """
    for _, _, event in heapq.merge(*(_tagged(run, n) for n, run in enumerate(runs))):
        yield event


def ordered_records(records: Iterable[Event | BadLine], *,
                    chunk_events: int = CHUNK_EVENTS) -> Iterator[Event | BadLine]:
    """Events by event time (stable: ties keep input order), then bad lines in input order.

    At most ``chunk_events`` events and as many bad lines are held in memory:
    a fuller chunk is sorted and spilled to a temporary file (one run per
    chunk) and the runs are merged; bad lines spill to a file of their own.
    Input that fits in one chunk is sorted in memory, without files. The
    files are removed when the generator ends, fails or is closed.
    """
    if chunk_events < 1:
        raise ValueError(f"chunk_events must be positive, got {chunk_events}")
    with contextlib.closing(_Spill()) as spill:
        chunk: list[Event] = []
        bad: list[BadLine] = []
        for rec in records:
            if isinstance(rec, Event):
                if len(chunk) == chunk_events:
                    spill.add_run(chunk)
                    chunk = []
                chunk.append(rec)
            elif isinstance(rec, BadLine):
                if len(bad) == chunk_events:
                    spill.add_bad(bad)
                    bad = []
                bad.append(rec)
        if spill.runs:
            spill.add_run(chunk)
            chunk = []
            yield from _merge([spill.read_run(path) for path in spill.runs])
        else:
            chunk.sort(key=_ts)
            yield from chunk
        yield from spill.read_bad()
        yield from bad


def order_for_replay(records: Iterable[Event | BadLine], *,
                     chunk_events: int = CHUNK_EVENTS) -> list[Event | BadLine]:
    """``ordered_records`` as a list, for callers that slice the order (tests, benchmarks)."""
    return list(ordered_records(records, chunk_events=chunk_events))


def encode(record: Event | BadLine) -> tuple[bytes | None, bytes]:
    """(key, value) of the Kafka message for one record."""
    if isinstance(record, BadLine):
        return None, record.text.encode("utf-8", "surrogateescape")
    return record.user_id.encode(), orjson.dumps(record.to_dict())


@dataclass
class _Tally:
    """Running counts for the summary; distinct users are counted with a set of their ids."""

    sent: int = 0
    events: int = 0
    users: set[str] = field(default_factory=set)
    first_ts: float | None = None
    last_ts: float | None = None

    def add(self, record: Event | BadLine) -> None:
        self.sent += 1
        if isinstance(record, Event):
            self.events += 1
            self.users.add(record.user_id)
            self.first_ts = record.ts if self.first_ts is None else self.first_ts
            self.last_ts = record.ts

    def summary(self, seconds: float) -> ReplaySummary:
        return ReplaySummary(sent=self.sent, events=self.events, bad_lines=self.sent - self.events,
                             users=len(self.users), seconds=seconds,
                             first_ts=self.first_ts, last_ts=self.last_ts)


def _in_flight(pending: list[asyncio.Future]) -> list[asyncio.Future]:
    """The sends not yet delivered; raises the error of a failed one."""
    for fut in pending:
        if fut.done():
            fut.result()
    return [fut for fut in pending if not fut.done()]


MAX_GAP_S = 5.0  # default cap, in real seconds, on the wait between two paced sends


async def _send(ordered: Iterable[Event | BadLine], *, bootstrap: str, topic: str,
                speed: float | None, progress: bool, max_gap_s: float = MAX_GAP_S) -> ReplaySummary:
    """Produce ``ordered`` as it comes, pacing events at ``speed`` times event time, a gap between two
    events cut to ``max_gap_s`` real seconds (the rest of the schedule moves up by what was cut)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    start = time.monotonic()
    tally = _Tally()
    due = 0.0  # seconds after start at which the latest paced event was due
    try:
        pending: list[asyncio.Future] = []
        for rec in tqdm(ordered, desc="replay", unit="ev", disable=not progress, mininterval=0.5):
            previous_ts = tally.last_ts
            tally.add(rec)
            if speed and isinstance(rec, Event):
                if previous_ts is not None:
                    due += min((rec.ts - previous_ts) / speed, max_gap_s)
                delay = due - (time.monotonic() - start)
                if delay > 0:
                    await asyncio.sleep(delay)
            key, value = encode(rec)
            pending.append(await producer.send(topic, value=value, key=key))
            if tally.sent % PRUNE_EVERY == 0:
                pending = _in_flight(pending)
        await producer.flush()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return tally.summary(time.monotonic() - start)


async def replay(
    records: Iterable[Event | BadLine],
    *,
    bootstrap: str,
    topic: str,
    speed: float | None = None,
    progress: bool = True,
    limit: int | None = None,
    chunk_events: int = CHUNK_EVENTS,
    max_gap_s: float = MAX_GAP_S,
) -> ReplaySummary:
    """Produce the first ``limit`` records of the replay order to ``topic``; returns counts and timing.

    Reading and sorting happen before the clock (and ``speed``'s pacing) starts;
    ``max_gap_s``: the longest wait, in real seconds, between two paced sends.
    """
    with contextlib.closing(ordered_records(records, chunk_events=chunk_events)) as ordered:
        todo = islice(ordered, limit)
        head = list(islice(todo, 1))  # the whole input is read and sorted here
        return await _send(chain(head, todo), bootstrap=bootstrap, topic=topic, speed=speed,
                           progress=progress, max_gap_s=max_gap_s)


def read_for_replay(path: str | Path, fmt: str, settings: Settings = Settings(),
                    now: float | None = None) -> Iterator[Event | BadLine]:
    """A log's records as the stream will judge them (``records.decode_event``, with ``settings``' limits):
    an event the stream would reject is a bad line (sent last, unkeyed, for the stream to dead-letter with
    its reason), so a replay is not more lenient than live traffic, and every event it paces and orders
    by has a valid time. A ``jsonl`` line is judged as it is in the file; an event of another format as
    its reader converted it."""
    now = time.time() if now is None else now
    limits = dict(max_bytes=settings.max_event_bytes, now=now, max_future_skew_s=settings.max_future_skew_s)
    if fmt == "jsonl":
        for n, line in log_lines(Path(path)):
            judged = decode_event(line.encode("utf-8", "surrogateescape"), **limits)
            yield judged if isinstance(judged, Event) else BadLine(n, line, f"{judged.code}: {judged.detail}")
        return
    for rec in read_log(path, fmt):
        if isinstance(rec, BadLine):
            yield rec
            continue
        try:
            raw = orjson.dumps(rec.to_dict())
        except orjson.JSONEncodeError as exc:  # e.g. an id that is not valid UTF-8
            yield BadLine(0, json.dumps(rec.to_dict()), f"not_json: {exc}")
            continue
        judged = decode_event(raw, **limits)
        yield rec if isinstance(judged, Event) else BadLine(0, raw.decode(), f"{judged.code}: {judged.detail}")


async def replay_file(path: str, fmt: str, settings: Settings = Settings(), **kwargs) -> ReplaySummary:
    """Read a log in ``fmt``, judge it as the stream will (``read_for_replay``) and replay it (``replay``)."""
    return await replay(read_for_replay(path, fmt, settings), **kwargs)
