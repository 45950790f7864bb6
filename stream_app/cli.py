"""``reco``: the command line (worker, replay, demo, train, evaluate)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable
from typing import Any

from models.data.eventlog import FORMATS, unreadable
from stream_app.settings import Settings


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reco", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("worker", help="run a stream worker (settings from RECO_* environment variables)")
    sub.add_parser("trainer", help="run the trainer: fine-tune on training samples, promote to the model store")
    sub.add_parser("rollback", help="serve the model version that served before the current one, and announce it")
    sub.add_parser("announce", help="announce the version the model store serves again (after an announcement "
                                    "failed; workers already serving it ignore it)")
    m = sub.add_parser("models", help="list the model store's log (promotions and rollbacks)")
    m.add_argument("--all", action="store_true", help="the archived logs' entries too, oldest first")

    r = sub.add_parser("replay", help="replay a historical event log into the events topic")
    r.add_argument("path", help="the log file")
    r.add_argument("--format", required=True, choices=sorted(FORMATS),
                   help="jsonl: our events; taobao: UserBehavior CSV; otto: sessions JSONL; "
                        "sequences: one user per line (Amazon Beauty)")
    r.add_argument("--speed", type=_positive(float), default=None,
                   help="event-time speed-up (60 = one hour of events per minute); default: as fast as possible")
    r.add_argument("--max-gap-s", type=_positive(float), default=5.0,
                   help="with --speed: the longest wait, in real seconds, between two events (a quiet spell "
                        "in the log, or one event long before the rest, is cut to this); default: 5")
    r.add_argument("--limit", type=_positive(int), default=None,
                   help="replay only the first N records (in event-time order)")
    r.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    d = sub.add_parser("demo", help="embedded broker + Redis + worker, replay the bundled sample, print top-10s")
    d.add_argument("--users", type=_positive(int, zero=True), default=3, help="how many users' top-10 to print")
    d.add_argument("--baseline", action="store_true",
                   help="the popularity + co-visitation skeleton on the whole sample (no model, no trainer)")

    for name, what in (("train", "pre-train the models on an event log"),
                       ("evaluate", "evaluate the models offline")):
        sub.add_parser(name, help=what + " (see: reco %s --help)" % name, add_help=False)
    return p


def _positive(kind: type, zero: bool = False) -> Callable[[str], Any]:
    """An argparse type: ``kind`` greater than zero (``zero``: or zero)."""
    def parse(text: str) -> Any:
        value = kind(text)
        if not (value >= 0 if zero else value > 0):
            raise argparse.ArgumentTypeError(f"must be {'0 or more' if zero else 'greater than 0'}, not {text}")
        return value
    return parse


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("train", "evaluate"):
        from models.cli import main as models_main

        return models_main(argv, prog="reco")
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except ValueError as exc:  # a RECO_* variable nothing can work with: the message names it
        print(f"reco: {exc}", file=sys.stderr)
        return 2
    if args.command in ("worker", "trainer"):
        from stream_app.topics import BrokerUnreachable

        why = _startup_error(args.command, settings)
        if why:
            print(f"reco: {why}", file=sys.stderr)
            return 2
        for doubt in settings.doubts():  # before the process's logging is set up: plain lines, once
            print(f"reco: warning: {doubt}", file=sys.stderr)
        try:
            if args.command == "worker":
                from stream_app.worker import run_worker

                run_worker(settings)
            else:
                from stream_app.trainer import main as trainer_main

                trainer_main(settings)
        except BrokerUnreachable as exc:  # at start only: one line, exit 1
            print(f"reco: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.command in ("rollback", "models", "announce"):
        return _models_command(args.command, settings, every=getattr(args, "all", False))
    if args.command == "replay":
        from aiokafka.errors import KafkaConnectionError

        from stream_app.kafka_admin import ensure_topics
        from stream_app.replay.producer import replay_file
        from stream_app.tansu_compat import bootstrap_from_url

        why = unreadable(args.path)
        if why:
            print(f"cannot read {args.path}: {why}", file=sys.stderr)
            return 2
        bootstrap = bootstrap_from_url(settings.kafka_url)
        try:
            asyncio.run(ensure_topics(bootstrap, [settings.events_topic], settings.partitions,
                                      settings.replication_factor))
            summary = asyncio.run(replay_file(args.path, args.format, settings, bootstrap=bootstrap,
                                              topic=settings.events_topic, speed=args.speed,
                                              max_gap_s=args.max_gap_s, limit=args.limit,
                                              progress=not args.no_progress))
        except KafkaConnectionError as exc:
            print(f"reco: cannot reach the broker at {bootstrap} (RECO_KAFKA_URL): {exc}", file=sys.stderr)
            return 1
        print(summary)
        return 0
    if args.command == "demo":
        from stream_app.demo import run_demo

        try:
            return run_demo(users=args.users, baseline=args.baseline)
        except KeyboardInterrupt as stop:  # Ctrl-C (no message), or SIGTERM/SIGHUP (``stop_on_terminate``): all stopped
            print(f"demo interrupted ({str(stop) or 'Ctrl-C'}); everything it started is stopped", file=sys.stderr)
            return 130
    raise AssertionError(args.command)


def _startup_error(command: str, settings: Settings) -> str | None:
    """Why ``command`` (worker or trainer) cannot start with these settings, before it connects anywhere: what
    only that process reads (the anomaly config file; the trainer's store and its configs), refused by name."""
    if command == "worker":
        from stream_app.anomaly import make_monitor

        try:
            make_monitor(settings)
        except (OSError, ValueError, TypeError) as exc:  # unreadable, not JSON, an unknown or bad threshold
            return f"RECO_ANOMALY_CONFIG ({settings.anomaly_config}): {exc}"
        return None
    if not settings.model_store:
        return "RECO_MODEL_STORE must name the model store directory (the trainer writes its versions there)"
    from models.model_store import ModelStore
    from stream_app.trainer import trainer_configs

    try:
        trainer_configs(settings)
    except ValueError as exc:  # the message names the RECO_* variable
        return str(exc)
    if ModelStore(settings.model_store).current() is None:  # the first start: the base comes from RECO_MODEL_PATH
        if not settings.model_path:
            return (f"the model store {settings.model_store} is empty: set RECO_MODEL_PATH to the pre-trained "
                    "checkpoint to start from (`reco train ... --out DIR`)")
        from models.checkpoint import CheckpointError, verify_checkpoint

        try:
            verify_checkpoint(settings.model_path)  # missing, not a checkpoint, or damaged
        except CheckpointError as exc:
            return f"RECO_MODEL_PATH: {exc}"
    return None


def _models_command(command: str, settings: Settings, every: bool = False) -> int:
    """``reco models`` prints the store's log (``every``: its archives' too); ``reco rollback`` rolls back and
    announces it; ``reco announce`` announces what serves again."""
    import json

    from models.model_store import ModelStore
    from stream_app.model_updates import announce

    if not settings.model_store:
        print("RECO_MODEL_STORE is not set", file=sys.stderr)
        return 2
    if not os.path.isdir(settings.model_store):  # a typo would read as an empty store ("serving: None")
        print(f"RECO_MODEL_STORE: no directory {settings.model_store}", file=sys.stderr)
        return 2
    store = ModelStore(settings.model_store)
    if command == "models":
        for entry in store.history() if every else store.log():
            print(json.dumps(entry))
        archives = store.archives()
        if archives and not every:
            print(f"(earlier entries: {len(archives)} archived logs in {archives[0].parent}; reco models --all)")
        print(f"serving: {store.current()}")
        return 0
    if command == "announce":
        entry = store.serving_entry()
        if entry is None:
            print("the model store serves nothing yet", file=sys.stderr)
            return 1
        asyncio.run(announce(settings, entry))
        print(f"announced {entry['version']} ({entry['action']})")
        return 0
    try:
        entry = store.rollback(reason="manual (reco rollback)")
    except ValueError as exc:
        print(f"cannot roll back: {exc}", file=sys.stderr)
        return 1
    try:
        asyncio.run(announce(settings, entry))
    except Exception as exc:  # noqa: BLE001 - the store changed: say so, and how to finish, not just fail
        print(f"rolled back from {entry['from_version']} to {entry['version']} in the model store, but "
              f"announcing it failed ({exc!r}): workers serve {entry['from_version']} until it is announced. "
              "Run `reco announce` (not `reco rollback` again: that would roll back one more version); a "
              "starting trainer also announces what the store serves.", file=sys.stderr)
        return 1
    print(f"rolled back from {entry['from_version']} to {entry['version']}")
    return 0
