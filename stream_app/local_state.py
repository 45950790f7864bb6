"""Local table state (``RECO_STORE=rocksdb://``) is kept across restarts only after a clean stop.

Faust writes a table value to the local database at once but sends its
changelog record later; a restart trusts the local database and replays only
the changelog records after the offset it stored. A worker killed in between
(SIGKILL, out of memory, power loss) therefore came back with states the
changelog lacked: their events came again, looked like duplicates, and no
state was written, so the changelog stayed behind until the users' next
events, and a worker that took the partitions over (rebuilding from the
changelog) lost those events from the users' histories, and the trainer their
samples. A clean stop flushes every changelog record first, so it leaves a
marker; a start without one deletes the local tables and rebuilds them from
the changelogs, as ``memory://`` always does.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

log = logging.getLogger(__name__)
MARKER = "clean-stop"  # in the worker's data_dir: its last run stopped cleanly


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


def mark_clean_stop(data_dir: Path) -> None:
    """After a clean stop (every changelog record sent): the next start may keep the local tables."""
    (data_dir / MARKER).touch()
