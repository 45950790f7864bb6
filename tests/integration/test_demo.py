"""The README's main command: the demo runs end to end on its own embedded stack."""

from __future__ import annotations

import re

import pytest

from stream_app.demo import run_demo

pytestmark = pytest.mark.integration


def test_demo_serves_the_pretrained_ensemble_and_accounts_for_every_event(capsys):
    assert run_demo(users=2) == 0
    out = capsys.readouterr().out
    print(out)  # shown with the failure: the demo prints a process's log tail when it exits non-zero
    # the later 40% of the real sample (1,728 events) plus 8 malformed lines: the counts add up
    assert "events in 1736 = processed 1728 + rejected 8 + duplicates 0" in out
    # users are served by a version from the model store, which the trainer started
    served = re.findall(r"events seen, model (v\d{4})", out)
    assert len(served) == 2
    assert "promote v0001" in out and set(served) <= set(re.findall(r"promote (v\d{4})", out))
    assert len(re.findall(r"^\s+\d+\. item ", out, flags=re.M)) == 20
    assert "worker stopped (exit 0)" in out and "trainer stopped (exit 0)" in out
    # every processed event's training sample is accounted for once the worker has stopped
    line = re.search(r"training samples: processed (\d+) - quarantined (\d+) = sent (\d+) \+ dropped (\d+) "
                     r"\+ lost (\d+)", out)
    assert line, out
    processed, quarantined, sent, dropped, lost = map(int, line.groups())
    assert processed == 1728 and processed - quarantined == sent + dropped and lost == 0
