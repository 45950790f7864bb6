"""Training samples wait a moment before they leave the worker, so a late alert can still stop them.

A detector decides only once it has seen enough of a user's traffic; the
first events of a bot can be processed in an earlier micro-batch than the
alert. Samples are therefore held ``delay_s`` seconds (processing time) and
released only if their user and item are not quarantined by then. Held
samples live in memory: a worker that crashes, or is stopped, loses the
last ``delay_s`` of them (training data is best effort; the events
themselves are safe in Kafka; checked by stopping a demo worker holding 30 s
of samples: it exits cleanly and they are gone). The hold delays samples
before they enter the topic, so it comes on top of the measured swap lag,
which starts there.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable

from models.online.samples import TrainingSample


class Holdback:
    """Samples in arrival order, each released ``delay_s`` after it was added."""

    def __init__(self, delay_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.delay_s = delay_s
        self.clock = clock
        self._held: deque[tuple[float, TrainingSample]] = deque()

    def __len__(self) -> int:
        return len(self._held)

    def add(self, samples: Iterable[TrainingSample]) -> None:
        due = self.clock() + self.delay_s
        self._held.extend((due, s) for s in samples)

    def release(self, keep: Callable[[TrainingSample], bool]) -> tuple[list[TrainingSample], int]:
        """The samples whose time is up and that ``keep`` accepts, and how many it refused."""
        now, out, dropped = self.clock(), [], 0
        while self._held and self._held[0][0] <= now:
            _, sample = self._held.popleft()
            if keep(sample):
                out.append(sample)
            else:
                dropped += 1
        return out, dropped
