"""Worker and trainer subprocesses get the malloc settings unless the operator set their own."""

from __future__ import annotations

import pytest

from stream_app.embedded import MALLOC_ENV, child_env


def test_children_keep_freed_memory_in_the_heap_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in MALLOC_ENV:
        monkeypatch.delenv(name, raising=False)
    env = child_env({"RECO_APP_ID": "x"})
    assert {k: env[k] for k in MALLOC_ENV} == MALLOC_ENV and env["RECO_APP_ID"] == "x"
    assert int(env["MALLOC_MMAP_THRESHOLD_"]) >= 64 << 20  # above a (batch, catalogue) temporary


def test_the_operators_environment_and_the_settings_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    env = child_env({"MALLOC_TOP_PAD_": "0"})
    assert env["MALLOC_TRIM_THRESHOLD_"] == "131072" and env["MALLOC_TOP_PAD_"] == "0"
    assert env["MALLOC_MMAP_THRESHOLD_"] == MALLOC_ENV["MALLOC_MMAP_THRESHOLD_"]
