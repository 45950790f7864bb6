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


def test_fausts_own_environment_variables_do_not_override_the_settings(monkeypatch, tmp_path):
    """Faust reads unprefixed variables (WEB_PORT, TOPIC_PARTITIONS, ...) over its arguments; a Kubernetes
    service called "web" sets WEB_PORT=tcp://10.0.0.5:80. The RECO_* settings must decide."""
    from stream_app.app import create_app

    for name, value in {"TOPIC_PARTITIONS": "1", "WEB_PORT": "tcp://10.0.0.5:80", "WEB_BIND": "0.0.0.0",
                        "BROKER_SESSION_TIMEOUT": "60", "PROCESSING_GUARANTEE": "exactly_once"}.items():
        monkeypatch.setenv(name, value)
    s = Settings.from_env({"RECO_WEB_BIND": "0.0.0.0"}, data_dir=str(tmp_path / "data"))
    conf = create_app(s).conf
    assert (conf.topic_partitions, conf.web_port, conf.web_bind) == (s.partitions, s.web_port, "0.0.0.0")
    assert conf.broker_session_timeout == s.broker_session_timeout_s
    # a live member finishing a long batch (a Redis stall) keeps its partitions for a minute, as in Faust;
    # until 2026-12-07 it was dropped at the session timeout, 10 s, and its late writes raced the new owner
    assert conf.broker_rebalance_timeout == s.broker_rebalance_timeout_s == 60.0
    assert conf.processing_guarantee.value == "at_least_once"


@pytest.mark.parametrize("name, raw", [("HISTORY_LEN", "0"), ("PARTITIONS", "0"), ("TOP_K", "-5"),
                                       ("MAX_WAIT_S", "nan"), ("SAMPLE_HOLDBACK_S", "inf"),
                                       ("MAX_FUTURE_SKEW_S", "-1"), ("REDIS_TIMEOUT_S", "0"),
                                       ("REDIS_READ_TIMEOUT_S", "0")])
def test_numbers_no_part_of_the_service_can_work_with_are_refused_by_name(name, raw):
    """``RECO_HISTORY_LEN=0`` used to keep every event of every user (``del events[:-0]`` deletes nothing)."""
    with pytest.raises(ValueError, match=f"RECO_{name}"):
        Settings.from_env({f"RECO_{name}": raw})


def test_an_unknown_reco_variable_is_warned_about(caplog):
    assert Settings.from_env({"RECO_PARTITON": "8"}).partitions == 4
    assert "RECO_PARTITON is not a setting" in caplog.text


def test_two_settings_naming_one_topic_are_refused():
    """``RECO_DEAD_LETTER_TOPIC=events`` would feed every rejected event back into the input."""
    with pytest.raises(ValueError, match="RECO_EVENTS_TOPIC and RECO_DEAD_LETTER_TOPIC name one topic"):
        Settings.from_env({"RECO_DEAD_LETTER_TOPIC": "events"})


@pytest.mark.parametrize("name, raw, says", [
    ("STORE", "rocksdb:/data", "memory:// or rocksdb://"), ("DEVICE", "gpu", "cuda"),
    ("TRAINER_DEVICE", "cuda0", "cuda:N"), ("MODEL_DTYPE", "fp16", "fp32 or bf16"),
    ("LOG_LEVEL", "verbose", "debug, info"), ("WEB_PORT", "70000", "at most 65535"),
    ("BROKER_HEARTBEAT_INTERVAL_S", "30", "below RECO_BROKER_SESSION_TIMEOUT_S"), ("EVENTS_TOPIC", "", "name a topic"),
    ("BROKER_REBALANCE_TIMEOUT_S", "5", "at least RECO_BROKER_SESSION_TIMEOUT_S")])
def test_values_of_the_wrong_form_are_refused_at_start_by_name(name, raw, says):
    """Until 2026-12-07 these passed, and failed later, elsewhere (a typo in RECO_STORE at the first table)."""
    with pytest.raises(ValueError, match=f"RECO_{name}.*{says}"):
        Settings.from_env({f"RECO_{name}": raw})


def test_the_accepted_forms_pass():
    s = Settings.from_env({"RECO_STORE": "rocksdb://", "RECO_DEVICE": "cuda:1", "RECO_LOG_LEVEL": "DEBUG",
                           "RECO_MODEL_DTYPE": "bf16", "RECO_TRAINER_DEVICE": "cpu"})
    assert (s.store, s.device, s.log_level) == ("rocksdb://", "cuda:1", "DEBUG")


@pytest.mark.parametrize("name, raw", [("ANOMALY_DETECTION", ""), ("EMIT_TRAINING_SAMPLES", " ")])
def test_an_empty_switch_is_refused_not_taken_as_off(name, raw):
    """``RECO_ANOMALY_DETECTION: ${UNSET}`` in compose gives an empty value: it switched fraud detection off."""
    with pytest.raises(ValueError, match=f"RECO_{name}: expected a boolean"):
        Settings.from_env({f"RECO_{name}": raw})


@pytest.mark.parametrize("name, raw", [("BROKER_HEARTBEAT_INTERVAL_S", "0.0004"), ("FETCH_MAX_WAIT_MS", "60000"),
                                       ("FETCH_MAX_WAIT_MS", "0")])
def test_broker_timings_kafka_clients_cannot_keep_are_refused(name, raw):
    """A heartbeat that rounds to 0 ms; an idle Fetch longer than aiokafka's 40 s request timeout (every poll
    of a quiet topic fails); a Fetch that never waits (a busy loop)."""
    with pytest.raises(ValueError, match=f"RECO_{name}"):
        Settings.from_env({f"RECO_{name}": raw})


def test_timings_kafka_would_refuse_or_a_stuck_write_outlasts_are_doubted():
    """On Apache Kafka: a session timeout under the broker's default minimum (6 s), and a Redis write whose
    retries outlast the rebalance timeout. The embedded broker (demo, tests) is left alone."""
    doubts = Settings.from_env({"RECO_BROKER_SESSION_TIMEOUT_S": "3", "RECO_REDIS_TIMEOUT_S": "10"}).doubts()
    assert len(doubts) == 2
    assert "up to 99 s" in doubts[0] and "group.min.session.timeout.ms" in doubts[1], doubts
    assert Settings.from_env({"RECO_BROKER_SESSION_TIMEOUT_S": "3", "RECO_REDIS_TIMEOUT_S": "10",
                              "RECO_EMBEDDED_BROKER": "true"}).doubts() == []
    assert Settings().doubts() == []  # the defaults: 27 s of retries at most, a 60 s rebalance timeout


def test_the_join_request_outlasts_a_long_rebalance_timeout(tmp_path):
    """aiokafka bounds a JoinGroup by the request timeout (Faust's 90 s) while the broker may hold it for the
    rebalance timeout: a longer one timed out on the client."""
    from stream_app.app import create_app

    conf = create_app(Settings(broker_rebalance_timeout_s=120.0, data_dir=str(tmp_path))).conf
    assert conf.broker_request_timeout >= 125.0
    assert create_app(Settings(data_dir=str(tmp_path))).conf.broker_request_timeout == 90.0


def test_the_readme_names_every_setting_with_its_default():
    """The README's settings table is what operators read: a setting missing there, or a default that moved,
    is a setting nobody can find or one documented wrong."""
    import re
    from dataclasses import fields
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    rows = dict(re.findall(r"^\| `(RECO_[A-Z0-9_]+)` \| ([^|]+) \|", readme, flags=re.M))

    def shown(value: object) -> str:
        if isinstance(value, bool):
            return f"`{str(value).lower()}`"
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return "(empty)" if value == "" else f"`{value}`"

    expected = {f"RECO_{f.name.upper()}": shown(f.default) for f in fields(Settings)}
    assert {name: rows.get(name, "missing").strip() for name in expected} == expected
    assert set(rows) <= set(expected), set(rows) - set(expected)  # no row for a setting that is gone
