"""``reco models``: the store's log, and with --all its archived entries too."""

from __future__ import annotations

import json

from models.model_store import ModelStore
from stream_app.cli import main
from tests.unit.models.test_model_store_rotation import promoted


def test_reco_models_shows_the_log_and_with_all_the_archives_too(tmp_path, monkeypatch, capsys) -> None:
    store = ModelStore(tmp_path)
    promoted(store, 5)
    store.rotate_log(max_lines=4, keep=2)
    monkeypatch.setenv("RECO_MODEL_STORE", str(tmp_path))

    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["action"] for line in lines[:3]] == ["rotate", "promote", "promote"]
    assert lines[3:] == [f"(earlier entries: 1 archived logs in {tmp_path / 'log-archive'}; reco models --all)",
                         "serving: v0005"]

    assert main(["models", "--all"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line).get("version") for line in lines[:-1]] == ["v0001", "v0002", "v0003", "v0004", "v0005",
                                                                         None]
    assert lines[-1] == "serving: v0005"
