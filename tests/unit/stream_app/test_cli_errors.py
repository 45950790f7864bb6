"""``reco``'s commands fail on a user's mistake with one line on stderr and an exit code, not a traceback."""

from __future__ import annotations

import pytest

from stream_app.cli import main


def test_reco_train_help_names_reco(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert capsys.readouterr().out.startswith("usage: reco train ")


def test_a_bad_setting_is_one_line_and_exit_2(monkeypatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RECO_PARTITIONS", "abc")
    assert main(["models"]) == 2
    assert capsys.readouterr().err == "reco: RECO_PARTITIONS: expected int, got 'abc'\n"


def test_replay_to_an_unreachable_broker_is_one_line_and_exit_1(tmp_path, monkeypatch, capsys) -> None:
    log = tmp_path / "events.csv"
    log.write_text("1,2,3,pv,1511544070\n")
    monkeypatch.setenv("RECO_KAFKA_URL", "kafka://127.0.0.1:1")  # nothing listens on port 1
    assert main(["replay", str(log), "--format", "taobao", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("reco: cannot reach the broker at 127.0.0.1:1 (RECO_KAFKA_URL): ") and err.count("\n") == 1


@pytest.mark.parametrize("command", ["worker", "trainer"])
def test_a_worker_or_trainer_without_a_broker_is_one_line_and_exit_1(command, tmp_path, monkeypatch, capsys) -> None:
    from models.ensemble import Ensemble
    from models.scorers.popularity import PopularityScorer
    from models.vocab import ItemVocab

    Ensemble(vocab := ItemVocab(), {"popularity": PopularityScorer(vocab)}).save(tmp_path / "base")
    monkeypatch.setenv("RECO_KAFKA_URL", "kafka://127.0.0.1:1")
    monkeypatch.setenv("RECO_MODEL_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("RECO_MODEL_PATH", str(tmp_path / "base"))  # the trainer's first start: the base it takes
    monkeypatch.setenv("RECO_DATA_DIR", str(tmp_path / "data"))
    assert main([command]) == 1
    err = capsys.readouterr().err
    assert err.startswith("reco: cannot reach the broker at 127.0.0.1:1 (RECO_KAFKA_URL): ") and err.count("\n") == 1


def test_a_worker_prints_its_doubts_about_the_settings_once_before_it_starts(monkeypatch, capsys) -> None:
    monkeypatch.setenv("RECO_KAFKA_URL", "kafka://127.0.0.1:1")
    monkeypatch.setenv("RECO_REDIS_TIMEOUT_S", "10")  # 8 retries of 10 s outlast the 60 s rebalance timeout
    assert main(["worker"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("reco: warning: a Redis write may retry for up to 99 s") and len(err) == 2, err
    assert main(["models"]) == 2 and "warning" not in capsys.readouterr().err  # only where it matters


@pytest.mark.parametrize(("env", "said"), [
    ({}, "reco: RECO_MODEL_STORE must name the model store directory"),
    ({"RECO_MODEL_STORE": "{store}", "RECO_MODEL_STORE_KEEP": "1"}, "reco: keep_versions (RECO_MODEL_STORE_KEEP) must"),
    ({"RECO_MODEL_STORE": "{store}"}, "reco: the model store {store} is empty: set RECO_MODEL_PATH"),
    ({"RECO_MODEL_STORE": "{store}", "RECO_MODEL_PATH": "{store}/nope"}, "reco: RECO_MODEL_PATH: no meta.json in"),
], ids=["store-unset", "keep-one", "empty-store-no-base", "base-missing"])
def test_a_trainer_setting_it_cannot_work_with_is_refused_before_it_connects(env, said, tmp_path, monkeypatch,
                                                                            capsys) -> None:
    """Nothing listens on port 1: a refusal that came after connecting would say the broker is unreachable."""
    monkeypatch.setenv("RECO_KAFKA_URL", "kafka://127.0.0.1:1")
    monkeypatch.delenv("RECO_MODEL_STORE", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(store=tmp_path))
    assert main(["trainer"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(said.format(store=tmp_path)) and err.count("\n") == 1, err


@pytest.mark.parametrize("config", ["missing.json", "{not json", '{"rate_burst": {"max_events": -5}}',
                                    '{"no_such_detector": {}}', '{"rate_burst": 5}', "[1, 2]"])
def test_a_worker_with_an_anomaly_config_it_cannot_use_is_refused_by_name(config, tmp_path, monkeypatch,
                                                                         capsys) -> None:
    path = tmp_path / "missing.json"
    if config != "missing.json":
        path = tmp_path / "anomaly.json"
        path.write_text(config)
    monkeypatch.setenv("RECO_KAFKA_URL", "kafka://127.0.0.1:1")
    monkeypatch.setenv("RECO_ANOMALY_CONFIG", str(path))
    assert main(["worker"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"reco: RECO_ANOMALY_CONFIG ({path}): ") and err.count("\n") == 1, err


@pytest.mark.parametrize("command", ["models", "rollback", "announce"])
def test_a_model_store_that_does_not_exist_is_an_error_naming_it(command: str, tmp_path, monkeypatch,
                                                                 capsys) -> None:
    missing = tmp_path / "no-such-store"
    monkeypatch.setenv("RECO_MODEL_STORE", str(missing))
    assert main([command]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"RECO_MODEL_STORE: no directory {missing}\n" and captured.out == ""


def test_demo_refuses_a_negative_user_count(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["demo", "--users", "-3"])
    assert stop.value.code == 2 and "argument --users: must be 0 or more, not -3" in capsys.readouterr().err


@pytest.mark.parametrize(("interrupt", "said"), [(KeyboardInterrupt(), "Ctrl-C"),
                                                 (KeyboardInterrupt("signal SIGTERM"), "signal SIGTERM")])
def test_an_interrupted_demo_says_what_interrupted_it(interrupt, said, monkeypatch, capsys) -> None:
    import stream_app.demo as demo

    def interrupted(**kwargs) -> int:
        raise interrupt

    monkeypatch.setattr(demo, "run_demo", interrupted)
    assert main(["demo"]) == 130
    assert capsys.readouterr().err == f"demo interrupted ({said}); everything it started is stopped\n"
