"""The demo stops what it started however it is interrupted: a second Ctrl-C while it waits for the worker
still stops the trainer and closes the store, and its own SIGTERM to a starting worker is no failure."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
import types

import pytest

import stream_app.demo as demo
from stream_app import worker_process
from stream_app.worker_process import WorkerProcess


class FakeProcess:
    """A worker or trainer that records what the demo does to it; the worker's wait is cut by a Ctrl-C."""

    def __init__(self, name: str, done: list[str]) -> None:
        self.name, self.done = name, done
        self.process = types.SimpleNamespace(pid=1)

    def check(self) -> None:
        pass

    def signal_stop(self) -> None:
        self.done.append(f"SIGTERM {self.name}")

    def stop(self) -> int:
        self.done.append(f"wait {self.name}")
        if self.name == "worker":
            raise KeyboardInterrupt  # the second Ctrl-C, while the demo waits for the worker to stop
        return 0

    def ended_by_our_sigterm(self) -> bool:
        return False


def test_a_second_ctrl_c_while_the_worker_stops_still_stops_the_trainer_and_closes_the_store(
        tmp_path, monkeypatch) -> None:
    done: list[str] = []
    names = iter(["trainer", "worker"])

    async def nothing(*args, **kwargs):
        return types.SimpleNamespace(sent=0)

    async def first_ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    class Store:
        def __init__(self, *args, **kwargs) -> None:
            pass

        async def start(self) -> None:
            pass

        async def close(self) -> None:
            done.append("close store")

    monkeypatch.setattr(demo.WorkerProcess, "start", classmethod(lambda cls, *a, **k: FakeProcess(next(names), done)))
    monkeypatch.setattr(demo, "read_events", lambda *a, **k: [])
    monkeypatch.setattr(demo, "split_by_time", lambda events, fraction: ([], []))
    monkeypatch.setattr(demo, "pretrain", lambda events, out: out)
    monkeypatch.setattr(demo, "ModelStore", lambda path: types.SimpleNamespace(current=lambda: "v0001"))
    monkeypatch.setattr(demo, "RedisStore", Store)
    for name in ("prepare_all", "replay", "replay_file"):
        monkeypatch.setattr(demo, name, nothing)
    monkeypatch.setattr(demo, "wait_for_events", first_ctrl_c)
    stack = types.SimpleNamespace(kafka_url="kafka://127.0.0.1:1", redis_url="redis://127.0.0.1:1/0",
                                  bootstrap="127.0.0.1:1")

    with pytest.raises(KeyboardInterrupt):
        asyncio.run(demo._run(stack, tmp_path, 3, baseline=False))
    # both were told to stop before the demo waited on either, and the trainer's stop and the store's close
    # ran although the wait for the worker was interrupted
    assert done == ["SIGTERM worker", "SIGTERM trainer", "wait worker", "wait trainer", "close store"]


def test_a_worker_stopped_while_it_starts_is_not_reported_as_failed(tmp_path, capsys) -> None:
    """No SIGTERM handler yet (Faust sets one once started): our SIGTERM ends it with -15, which is our
    stop, not its failure, so no failure and no empty log tail."""
    log = tmp_path / "worker.log"
    process = WorkerProcess.start(demo.Settings.from_env(), log, [sys.executable, "-c", "import time; time.sleep(30)"])
    assert demo._report_stop("worker", process) is True
    assert capsys.readouterr().out == "worker stopped (while starting)\n"


def test_a_stop_whose_wait_is_cut_short_kills_the_process(tmp_path, monkeypatch) -> None:
    """The SIGKILL after the grace period was in the wait a second Ctrl-C cut short: a worker still busy
    stopping (here: one that ignores SIGTERM) outlived the demo."""
    ignores_sigterm = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                       "print('ready', flush=True); time.sleep(60)")
    process = WorkerProcess.start(demo.Settings.from_env(), tmp_path / "worker.log",
                                  [sys.executable, "-c", ignores_sigterm])
    deadline = time.monotonic() + 30
    while "ready" not in process.log() and time.monotonic() < deadline:
        time.sleep(0.05)

    def second_ctrl_c(proc, timeout_s):
        raise KeyboardInterrupt

    monkeypatch.setattr(worker_process, "terminate", second_ctrl_c)
    try:
        with pytest.raises(KeyboardInterrupt):
            process.stop()
        assert process.process.poll() == -signal.SIGKILL
    finally:
        process.kill()  # (a no-op when the stop killed it)
