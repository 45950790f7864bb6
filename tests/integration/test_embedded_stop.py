"""A process running the embedded stack that gets SIGTERM or SIGHUP stops the broker and Redis it started
(they run in sessions of their own: before, they were left running)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.integration

HOLDS_A_STACK = """
import sys, time
from pathlib import Path
from stream_app.embedded import embedded_stack, stop_on_terminate
import signal
signal.signal(signal.SIGINT, signal.SIG_IGN)  # as in a script's background job: Ctrl-C's signal ignored
with stop_on_terminate(), embedded_stack(Path(sys.argv[1])) as stack:
    print(stack.broker.process.pid, stack.redis.process.pid, flush=True)
    time.sleep(60)
"""


def running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie no one reaped yet has stopped too
        return fh.read().split(") ")[-1][0] != "Z"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_terminated_process_stops_its_embedded_services(tmp_path, sig):
    with subprocess.Popen([sys.executable, "-c", HOLDS_A_STACK, str(tmp_path)], stdout=subprocess.PIPE,
                          text=True) as holder:
        try:
            pids = [int(p) for p in holder.stdout.readline().split()]
            assert len(pids) == 2 and all(running(p) for p in pids)
            holder.send_signal(sig)
            holder.wait(timeout=30)
        finally:
            holder.kill()
    deadline = time.monotonic() + 10
    while any(running(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in pids if running(p)]
