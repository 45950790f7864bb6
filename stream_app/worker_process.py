"""Run a stream worker as a child process and wait on its progress (demo and tests)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from stream_app.embedded import child_env, terminate
from stream_app.settings import Settings
from stream_app.sinks.base import Store


class WorkerError(RuntimeError):
    """The worker died, crashed an agent, or stopped making progress."""


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log_path: Path
    signalled: bool = False  # we sent it SIGTERM while it ran

    @classmethod
    def start(cls, settings: Settings, log_path: Path, argv: list[str] | None = None) -> WorkerProcess:
        """Run ``argv`` (default: ``python -m stream_app worker``) with ``settings`` in its environment."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                argv or [sys.executable, "-m", "stream_app", "worker"],
                env=child_env(settings.to_env()), stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return cls(proc, log_path)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def check(self) -> None:
        """Raise if the process exited or an agent crashed (Faust keeps running then)."""
        if self.process.poll() is not None:
            raise WorkerError(f"worker exited with {self.process.returncode}:\n{self.log()[-3000:]}")
        text = self.log()
        if "Crashed reason" in text or "Traceback" in text:
            raise WorkerError(f"worker agent crashed:\n{text[-4000:]}")

    def signal_stop(self) -> None:
        """Send SIGTERM without waiting, so that several processes stop at once."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.signalled = True

    def stop(self, timeout_s: float = 30.0) -> int:
        """Graceful stop (SIGTERM); SIGKILL if it does not exit in time. A SIGTERM sent again after
        ``signal_stop`` is harmless: Faust and the trainer act on the first."""
        self.signal_stop()
        try:
            return terminate(self.process, timeout_s)
        except BaseException:  # the wait was cut short (a second Ctrl-C): SIGKILL, not left running
            self.kill()
            raise

    def ended_by_our_sigterm(self) -> bool:
        """Whether our SIGTERM ended it before it set its handler (it was still starting): not a failure."""
        return self.signalled and self.process.returncode == -signal.SIGTERM

    def kill(self) -> None:
        """Crash it (SIGKILL): no clean shutdown, no final commit."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


async def wait_for_events(store: Store, total: int, worker: WorkerProcess, timeout_s: float = 120.0,
                          stall_s: float = 60.0, counted: tuple[str, ...] = ("events_in",)) -> dict[str, int]:
    """Wait until the sum of the ``counted`` counters in the store reaches ``total``.

    The default counts every message read; ``("processed", "rejected")`` counts
    distinct events when re-deliveries (duplicates) are expected.

    Fails fast if the worker dies, an agent crashes, or no progress is made for ``stall_s``.
    """
    deadline = time.monotonic() + timeout_s
    last, last_change = -1, time.monotonic()
    while True:
        worker.check()
        counters = await store.counters()
        seen = sum(counters.get(name, 0) for name in counted)
        if seen >= total:
            return counters
        if seen != last:
            last, last_change = seen, time.monotonic()
        now = time.monotonic()
        if now > deadline or now - last_change > stall_s:
            raise WorkerError(f"worker accounted for {seen} of {total} events; counters {counters}\n"
                              f"{worker.log()[-3000:]}")
        await asyncio.sleep(0.2)


def metric_samples(port: int, family_name: str) -> list[Sample]:
    """One metric family's samples on a worker's Prometheus endpoint ([] if it has none yet)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics/", timeout=5).read().decode()
    for family in text_string_to_metric_families(text):
        if family.name == family_name:
            return family.samples
    return []


def processed_by(port: int) -> float:
    """How many events the worker serving ``port`` has processed (its own count, not the group's)."""
    return sum(s.value for s in metric_samples(port, "reco_events")
               if s.name == "reco_events_total" and s.labels["outcome"] == "processed")
