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


def test_a_rollback_whose_announcement_fails_says_how_to_finish_and_reco_announce_does(
        tmp_path, monkeypatch, capsys) -> None:
    """The store rolled back but the broker refused the announcement: the command fails, says workers still
    serve the old version and to run ``reco announce`` (not rollback again); that announces what serves."""
    import stream_app.model_updates as model_updates

    store = ModelStore(tmp_path)
    promoted(store, 3)
    monkeypatch.setenv("RECO_MODEL_STORE", str(tmp_path))
    announced: list[dict] = []

    async def broker_down(settings, entry, producer=None):
        raise ConnectionError("broker unreachable")

    async def broker_up(settings, entry, producer=None):
        announced.append(entry)

    monkeypatch.setattr(model_updates, "announce", broker_down)
    assert main(["rollback"]) == 1
    said = capsys.readouterr().err
    assert "workers serve v0003 until it is announced" in said and "reco announce" in said
    assert ModelStore(tmp_path).serving_stack() == ["v0001", "v0002"]  # rolled back once

    monkeypatch.setattr(model_updates, "announce", broker_up)
    assert main(["announce"]) == 0
    assert [(e["action"], e["version"]) for e in announced] == [("rollback", "v0002")]
    assert ModelStore(tmp_path).serving_stack() == ["v0001", "v0002"]  # announcing changes nothing
