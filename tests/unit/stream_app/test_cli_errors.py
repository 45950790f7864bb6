"""``reco``'s commands fail on a user's mistake with one line on stderr and an exit code, not a traceback."""

from __future__ import annotations

import pytest

from stream_app.cli import main


def test_reco_train_help_names_reco(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert capsys.readouterr().out.startswith("usage: reco train ")
