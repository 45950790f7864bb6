"""Local RocksDB tables are kept across a restart only after a clean stop."""

from __future__ import annotations

from stream_app.local_state import MARKER, keep_only_if_stopped_cleanly, mark_clean_stop


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
