"""Local table state (``RECO_STORE=rocksdb://``) is kept across restarts only after a clean stop.

Faust writes a table value to the local database at once but sends its
changelog record later; a restart trusts the local database and replays only
the changelog records after the offset it stored. A worker killed in between
(SIGKILL, out of memory, power loss) therefore came back with states the
changelog lacked: their events came again, looked like duplicates, and no
state was written, so the changelog stayed behind until the users' next
events, and a worker that took the partitions over (rebuilding from the
changelog) lost those events from the users' histories, and the trainer their
samples. So a stop leaves a marker only when the broker confirmed every
changelog record the run sent (``ChangelogLedger``: exit code 0 is not enough,
since Faust logs and swallows an error while stopping, and its producer buffer
stops flushing after 0.1 s without progress); a start without the marker
deletes the local tables and rebuilds them from the changelogs, as
``memory://`` always does.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from faust.tables.base import Collection

log = logging.getLogger(__name__)
MARKER = "clean-stop"  # in the worker's data_dir: its last run stopped cleanly


@dataclass
class ChangelogLedger:
    """Changelog records this process sent, and those the broker confirmed."""

    sent: int = 0
    confirmed: int = 0

    def record(self, fut: asyncio.Future) -> None:
        self.sent += 1
        fut.add_done_callback(self._done)

    def _done(self, fut: asyncio.Future) -> None:
        if not fut.cancelled() and fut.exception() is None:
            self.confirmed += 1

    @property
    def complete(self) -> bool:
        return self.confirmed == self.sent


LEDGER = ChangelogLedger()


def count_changelog_records() -> None:
    """Count every table's changelog sends and confirmations in ``LEDGER`` (idempotent)."""
    if getattr(Collection, "_ledgered", False):
        return
    send = Collection.send_changelog

    def counted_send(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        fut = send(self, *args, **kwargs)
        LEDGER.record(fut)
        return fut

    Collection.send_changelog = counted_send  # type: ignore[method-assign]
    Collection._ledgered = True  # type: ignore[attr-defined]


def hold_data_dir(data_dir: Path) -> int:
    """Lock ``data_dir`` for this process (the lock goes with it) and return the lock's descriptor; raise if
    another worker holds it: the marker is the folder's, so two workers on one folder would keep a crashed
    one's tables, or delete the other's open ones."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / ".lock", os.O_CREAT | os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RuntimeError(f"{data_dir} is in use by another worker: give each worker its own RECO_DATA_DIR") from None
    return fd


def keep_only_if_stopped_cleanly(data_dir: Path, tabledir: Path) -> bool:
    """At start: delete ``tabledir`` unless the last run left the marker, and remove the marker (this run has
    not stopped cleanly yet). Returns whether local tables were deleted."""
    marker = data_dir / MARKER
    clean = marker.exists()
    marker.unlink(missing_ok=True)
    if clean or not tabledir.exists():
        return False
    log.warning("the last run of this worker did not stop cleanly: local tables in %s deleted, rebuilding them "
                "from their changelogs", tabledir)
    shutil.rmtree(tabledir)
    return True


def mark_clean_stop(data_dir: Path, ledger: ChangelogLedger = LEDGER) -> bool:
    """After a stop: if the broker confirmed every changelog record sent (``count_changelog_records``), let
    the next start keep the local tables. Returns whether it may."""
    if not ledger.complete:
        log.warning("%d of %d changelog records were not confirmed at the stop: the next start rebuilds the "
                    "local tables from their changelogs", ledger.sent - ledger.confirmed, ledger.sent)
        return False
    (data_dir / MARKER).touch()
    return True
