"""Training samples from a worker to the trainer's topic: held, released unless quarantined, sent, counted.

Every sample of a processed event ends in one of three counters:
``samples_sent`` (the broker acknowledged it), ``samples_dropped`` (its user
or item was quarantined while it was held) or ``samples_lost`` (the send or
its delivery failed, or it came after the worker began to stop). Once
nothing is held or in flight, ``processed - quarantined = samples_sent +
samples_dropped + samples_lost``.

A graceful stop drains: it waits out the hold (alerts keep arriving
meanwhile), releases what is due, and waits for the broker's
acknowledgements, before Faust flushes and closes the producer. A crash
(SIGKILL, out of memory) still loses up to ``delay_s`` of held samples,
uncounted. Training is best effort: a lost sample is logged and counted
(``reco_samples_total{outcome="lost"}``), and the worker keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping

from models.online.samples import TrainingSample
from stream_app.holdback import Holdback

log = logging.getLogger(__name__)

SAMPLE_OUTCOMES = ("samples_sent", "samples_dropped", "samples_lost")  # where each sample ends (above)
Send = Callable[[TrainingSample], Awaitable[Awaitable[object]]]  # hand one sample over; returns its delivery


class SampleOutlet:
    """A worker's way out for training samples (see the module's docstring)."""

    def __init__(self, holdback: Holdback, send: Send, keep: Callable[[TrainingSample], bool],
                 add_counters: Callable[[Mapping[str, int], str], Awaitable[None]]) -> None:
        self.holdback = holdback
        self._send, self._keep, self._add_counters = send, keep, add_counters
        self._in_flight: set[asyncio.Future] = set()
        self._counts: Counter[str] = Counter()
        self._unsent: tuple[Counter[str], str] | None = None  # a flush that failed, with its write id
        self._last_error: BaseException | None = None
        self._releasing = asyncio.Lock()  # the timer and the agent release in turn, so samples keep their order
        self._flushing = asyncio.Lock()  # one flush at a time: each sends its counts under its own write id
        self._closed = False

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def add(self, samples: Iterable[TrainingSample]) -> None:
        """Hold a batch's samples; once ``drain`` has made its last release they are lost (counted)."""
        if not self._closed:
            self.holdback.add(samples)
            return
        late = sum(1 for _ in samples)
        if late:
            self._counts["samples_lost"] += late
            log.warning("%d training samples came after the stopping worker's last release: not sent "
                        "(counted at its next release)", late)

    def count(self, name: str, n: int) -> None:
        """Add ``n`` to the store counter ``name`` at the next flush (e.g. ``samples_released_before_alert``):
        counted without waiting on the store, so an alert is applied with nothing awaited in between."""
        self._counts[name] += n

    async def release(self) -> None:
        """Send the held samples whose time is up and that ``keep`` accepts; count the ones it refuses.
        ``keep`` is asked as each is sent: a send can wait (a full producer batch), and an alert applied
        meanwhile must still stop the samples after it."""
        async with self._releasing:
            due = self.holdback.due()
            for i, sample in enumerate(due):
                if not self._keep(sample):
                    self._counts["samples_dropped"] += 1
                    continue
                number = self.holdback.remember(sample)  # before the send's wait: an alert meanwhile counts it
                try:
                    delivery = await self._send(sample)
                except Exception as exc:  # noqa: BLE001 - e.g. the producer closed: count, do not stop serving
                    self.holdback.withdraw(number)
                    lost = 1 + sum(1 for s in due[i + 1:] if self._keep(s))
                    self._counts["samples_lost"] += lost
                    self._counts["samples_dropped"] += len(due) - i - lost
                    self._last_error = exc
                    return
                future = asyncio.ensure_future(delivery)
                self._in_flight.add(future)
                future.add_done_callback(self._delivered)
        if self._closed:  # a batch that finished after the drain: its late samples are counted now, not never
            await self.flush_counts()

    def _delivered(self, future: asyncio.Future) -> None:
        self._in_flight.discard(future)
        error = future.exception() if not future.cancelled() else asyncio.CancelledError()
        if error is None:
            self._counts["samples_sent"] += 1
        else:
            self._counts["samples_lost"] += 1
            self._last_error = error

    async def flush_counts(self) -> None:
        """Add the outcomes counted since the last flush to the store. A flush that failed is sent first at
        the next one, under its own write id: the store counts it once even if the failed one had landed
        (only its reply lost)."""
        async with self._flushing:  # the timer, a late batch's release and the drain may flush at once
            while True:
                if self._unsent is None:
                    counts = +self._counts
                    if not counts:
                        return
                    if counts.get("samples_lost"):
                        log.error("%d training samples lost (the trainer will not learn them): %r",
                                  counts["samples_lost"], self._last_error)
                    self._counts.clear()
                    self._unsent = (counts, uuid.uuid4().hex)
                await self._add_counters(*self._unsent)
                self._unsent = None

    async def drain(self, timeout_s: float = 10.0) -> None:
        """At a graceful stop: wait out the hold (a batch finishing meanwhile adds to it), release everything,
        wait for the broker, count. Samples still held after ``timeout_s`` more, or added after, are lost."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.holdback.delay_s + timeout_s
        while (wait_s := self.holdback.wait_s()) and loop.time() < deadline:
            log.info("worker stopping: %d training samples held, sent in %.1f s unless an alert comes",
                     len(self.holdback), wait_s)
            await asyncio.sleep(min(wait_s, max(0.0, deadline - loop.time())))
        self._closed = True
        await self.release()
        if len(self.holdback):  # given up: forgotten, so no later release sends what was counted lost
            lost = self.holdback.discard()
            self._counts["samples_lost"] += lost
            log.warning("worker stopping: %d training samples still held after %.1f s: not sent",
                        lost, self.holdback.delay_s + timeout_s)
        if self._in_flight:
            _, pending = await asyncio.wait(set(self._in_flight), timeout=timeout_s)
            if pending:
                log.warning("worker stopping: %d training samples not acknowledged within %.0f s "
                            "(left to the producer's flush, uncounted)", len(pending), timeout_s)
        await self.flush_counts()
