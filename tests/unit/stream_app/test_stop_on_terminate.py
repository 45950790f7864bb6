"""``stop_on_terminate`` takes only the signals left at their default action, and gives them back."""

from __future__ import annotations

import signal
import threading

from stream_app.embedded import stop_on_terminate


def test_takes_sigterm_leaves_an_ignored_sighup_and_restores_both() -> None:
    before_term, before_hup = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup: closing the terminal must not stop it
    try:
        with stop_on_terminate():
            assert callable(signal.getsignal(signal.SIGTERM))
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, before_term)
        signal.signal(signal.SIGHUP, before_hup)


def test_outside_the_main_thread_it_changes_nothing() -> None:
    seen = []

    def run() -> None:
        with stop_on_terminate():
            seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert seen == [signal.getsignal(signal.SIGTERM)]
