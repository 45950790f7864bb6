"""Local RocksDB tables are kept across a restart only after a clean stop."""

from __future__ import annotations

import asyncio
import os

import pytest

from stream_app.local_state import (
    MARKER,
    ChangelogLedger,
    hold_data_dir,
    keep_only_if_stopped_cleanly,
    mark_clean_stop,
)


def tables_in(tmp_path):
    tabledir = tmp_path / "v1" / "tables"
    (tabledir / "reco-user-state-0.db").mkdir(parents=True)
    return tabledir


def test_after_a_crash_the_local_tables_are_rebuilt(tmp_path) -> None:
    tabledir = tables_in(tmp_path)
    assert keep_only_if_stopped_cleanly(tmp_path, tabledir) and not tabledir.exists()


def test_after_a_clean_stop_they_are_kept_until_the_next_crash(tmp_path) -> None:
    tabledir = tables_in(tmp_path)
    mark_clean_stop(tmp_path)
    assert not keep_only_if_stopped_cleanly(tmp_path, tabledir) and tabledir.exists()
    assert not (tmp_path / MARKER).exists()  # this run has not stopped cleanly yet
    assert keep_only_if_stopped_cleanly(tmp_path, tabledir) and not tabledir.exists()


def test_a_first_start_has_nothing_to_delete(tmp_path) -> None:
    assert not keep_only_if_stopped_cleanly(tmp_path, tmp_path / "v1" / "tables")


def test_no_marker_while_a_changelog_record_is_unconfirmed(tmp_path) -> None:
    """Exit 0 is not enough: Faust swallows an error while stopping, and its buffer stops flushing after
    0.1 s without progress (a review helper's scripts). The marker needs every record confirmed."""
    loop = asyncio.new_event_loop()
    ledger = ChangelogLedger()
    confirmed, failed, unsent = loop.create_future(), loop.create_future(), loop.create_future()
    for fut in (confirmed, failed, unsent):
        ledger.record(fut)
    confirmed.set_result("metadata")
    failed.set_exception(RuntimeError("delivery failed"))
    loop.run_until_complete(asyncio.sleep(0))  # done callbacks run on the loop
    assert (ledger.sent, ledger.confirmed) == (3, 1)
    assert not mark_clean_stop(tmp_path, ledger) and not (tmp_path / MARKER).exists()
    everything = ChangelogLedger()
    ok = loop.create_future()
    everything.record(ok)
    ok.set_result("metadata")
    loop.run_until_complete(asyncio.sleep(0))
    assert mark_clean_stop(tmp_path, everything) and (tmp_path / MARKER).exists()
    loop.close()


def test_two_workers_cannot_share_a_data_dir(tmp_path) -> None:
    fd = hold_data_dir(tmp_path)
    with pytest.raises(RuntimeError, match="in use by another worker"):
        hold_data_dir(tmp_path)
    os.close(fd)
    os.close(hold_data_dir(tmp_path))  # free again once the first lets go
