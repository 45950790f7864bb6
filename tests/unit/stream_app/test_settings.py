from __future__ import annotations

import pytest

from stream_app.settings import Settings


def test_settings_come_from_prefixed_environment():
    s = Settings.from_env({"RECO_PARTITIONS": "8", "RECO_EMBEDDED_BROKER": "true", "RECO_MAX_WAIT_S": "0.2"})
    assert (s.partitions, s.embedded_broker, s.max_wait_s) == (8, True, 0.2)
    assert Settings.from_env(s.to_env()) == s


def test_bad_values_name_the_variable():
    with pytest.raises(ValueError, match="RECO_PARTITIONS: expected int"):
        Settings.from_env({"RECO_PARTITIONS": "many"})


def test_credentials_in_urls_are_masked():
    s = Settings(redis_url="redis://:hunter2@redis:6379/0")
    assert "hunter2" not in repr(s)
