"""Training samples wait a moment before they leave the worker, so a late alert can still stop them.

A detector decides only once it has seen enough of a user's traffic; the
first events of a bot can be processed in an earlier micro-batch than the
alert. Samples are therefore held ``delay_s`` seconds (processing time) and
released only if their user and item are not quarantined by then. Held
samples live in memory: a graceful stop waits out the hold and sends them
(``stream_app.sample_outlet``), a worker that crashes loses the last
``delay_s`` of them (training data is best effort; the events themselves
are safe in Kafka). The hold delays samples
before they enter the topic, so it comes on top of the measured swap lag,
which starts there.

Whatever a hold misses is counted: the holdback remembers the samples
let go to the producer (``remember``) over the last ``remember_s``
(processing time; at most ``remember_max`` of them, the newest, under a
burst), and ``take_released_in`` says how many of them an alert arriving
now would have stopped had it come in time (the alert's user's samples, or
those on its item, with event times before the quarantine's end), each
sample once however many alerts cover it. Mostly these are a bot's first
events, before a detector could decide; the rest are alerts that took
longer than the hold to arrive.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable

from models.online.samples import TrainingSample


class Holdback:
    """Samples in arrival order, each due ``delay_s`` after it was added."""

    def __init__(self, delay_s: float, clock: Callable[[], float] = time.monotonic, remember_s: float = 60.0,
                 remember_max: int = 100_000) -> None:
        self.delay_s = delay_s
        self.clock = clock
        self.remember_s = remember_s
        self.remember_max = remember_max
        self._held: deque[tuple[float, TrainingSample]] = deque()
        self._released: deque[tuple[float, int, str, str]] = deque()  # (released at, number, user, item)
        # ("user"/"item", id) -> [(event ts, number)], oldest first; lists, not deques: most entities have one
        # sample, and an empty deque alone took about 650 bytes (157 MB of them at 1,500 events/s)
        self._event_ts: dict[tuple[str, str], list[tuple[float, int]]] = {}
        self._taken: set[int] = set()  # numbers of the released samples an alert has counted
        self._numbered = 0

    def __len__(self) -> int:
        return len(self._held)

    def wait_s(self) -> float:
        """Seconds until the last held sample is due (0 when nothing is held)."""
        return max(0.0, self._held[-1][0] - self.clock()) if self._held else 0.0

    def add(self, samples: Iterable[TrainingSample]) -> None:
        due = self.clock() + self.delay_s
        self._held.extend((due, s) for s in samples)

    def discard(self) -> int:
        """Forget every held sample (a stop gave up on them); returns how many."""
        n = len(self._held)
        self._held.clear()
        return n

    def due(self) -> list[TrainingSample]:
        """Take out the samples whose time is up, oldest first. Whether each still goes is decided as it is
        sent (``SampleOutlet.release``): an alert can come while an earlier one's send waits."""
        now, out = self.clock(), []
        while self._held and self._held[0][0] <= now:
            out.append(self._held.popleft()[1])
        self._forget(now - self.remember_s)
        return out

    def remember(self, sample: TrainingSample) -> int:
        """Note ``sample`` as released (``keep`` let it go to the producer), for ``take_released_in``; returns
        its number, for ``withdraw``."""
        self._numbered += 1
        self._released.append((self.clock(), self._numbered, sample.user_id, sample.target))
        for key in (("user", sample.user_id), ("item", sample.target)):
            self._event_ts.setdefault(key, []).append((sample.ts, self._numbered))
        if len(self._released) > self.remember_max:
            self._forget(float("-inf"))
        return self._numbered

    def withdraw(self, number: int) -> None:
        """A remembered sample that was not sent after all (its send failed: counted lost): no later alert counts
        it. One an alert counted while the send waited stays counted (released before the alert, and lost)."""
        self._taken.add(number)

    def take_released_in(self, entity_type: str, entity_id: str, before_ts: float) -> int:
        """How many remembered samples were of this user (``entity_type`` "user") or on this item ("item")
        with event times before ``before_ts`` (an alert's ``expires_ts``: its quarantine holds back every
        such sample), not counted by an earlier call: a bot's sample covered by two alerts (two detectors,
        or an item's alert and its members') counts once."""
        n = 0
        for ts, number in self._event_ts.get((entity_type, entity_id), ()):
            if ts < before_ts and number not in self._taken:
                self._taken.add(number)
                n += 1
        return n

    def _forget(self, before: float) -> None:
        """Drop what was released before ``before``, and the oldest beyond ``remember_max``: oldest first,
        the same order as in every entity's list, so each list loses a prefix."""
        cut: dict[tuple[str, str], int] = {}
        while self._released and (self._released[0][0] < before or len(self._released) > self.remember_max):
            _, number, user, item = self._released.popleft()
            self._taken.discard(number)
            for key in (("user", user), ("item", item)):
                cut[key] = cut.get(key, 0) + 1
        for key, n in cut.items():
            times = self._event_ts[key]
            if n == len(times):
                del self._event_ts[key]
            else:
                del times[:n]
