"""Command line: ``train`` a checkpoint from an event log, ``evaluate`` it leave-one-out.

    python -m models train --log data/amazon_beauty/sequences.txt --format sequences --out runs/beauty
    python -m models evaluate --checkpoint runs/beauty --log data/amazon_beauty/sequences.txt --format sequences
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from models.checkpoint import CheckpointError
from models.data.eventlog import FORMATS, read_events, unreadable
from models.device import resolve_device
from models.device_names import DEVICE_CHOICES, DEVICE_PATTERN
from models.ensemble import Ensemble
from models.evaluation.metrics import KS
from models.evaluation.protocol import leave_one_out
from models.history import user_histories
from models.pipeline import ALL_SCORERS, PipelineConfig, evaluate_all, train_all
from models.scorers import CovisitationConfig, PopularityConfig
from models.sequence.config import SeqConfig, TrainConfig

DAY_S = 86_400.0
NO_DECAY_DAYS = 1e9 / DAY_S  # a half-life far longer than any log


def read_titles(path: str | None) -> dict[str, str]:
    """Item titles from a TSV with a header naming ``item_id`` and a title column (``title`` or ``title_prefix``)."""
    if not path:
        return {}
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    id_col = header.index("item_id")
    title_col = header.index("title") if "title" in header else header.index("title_prefix")
    rows = (line.split("\t") for line in lines[1:] if line.strip())
    return {r[id_col]: r[title_col] for r in rows if len(r) > title_col}


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
    """Turn options into frozen model configs (the Namespace never reaches a model)."""
    base = PipelineConfig()
    half_life_days = args.half_life_days
    if half_life_days is None:  # sequences logs carry synthetic times: no decay there
        half_life_days = NO_DECAY_DAYS if args.format == "sequences" else 7.0
    return PipelineConfig(
        scorers=tuple(s for s in args.scorers.split(",") if s),
        seq=SeqConfig(hidden=args.hidden, layers=args.layers, heads=args.heads, max_len=args.max_len, dropout=args.dropout),
        train=TrainConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            patience=args.patience,
            seed=args.seed,
            bf16=False if args.no_bf16 else None,
            max_seconds=args.max_minutes * 60.0,
            threads=args.threads,
            device=args.device,
        ),
        popularity=PopularityConfig(half_life_s=half_life_days * DAY_S),
        covisitation=replace(CovisitationConfig(), half_life_s=half_life_days * DAY_S),
        text=base.text,
        val_users=args.val_users,
    )


def format_table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    """A plain-text table: one row per protocol and model, HR and NDCG at every k."""
    cols = [f"{m}@{k}" for k in KS for m in ("hr", "ndcg")]
    lines = [f"{'protocol':<10} {'model':<14} " + " ".join(f"{c:>8}" for c in cols)]
    for protocol, models in results.items():
        for name, metrics in models.items():
            lines.append(f"{protocol:<10} {name:<14} " + " ".join(f"{metrics[c]:>8.4f}" for c in cols))
    return "\n".join(lines)


def cmd_train(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    unknown = set(config.scorers) - set(ALL_SCORERS)
    if unknown:
        print(f"unknown scorers {sorted(unknown)}; choose from {ALL_SCORERS}", file=sys.stderr)
        return 2
    if not _readable(args.log, args.titles):
        return 2
    events = read_events(args.log, args.format)
    if not events:
        print(f"no events in {args.log}", file=sys.stderr)
        return 2
    trained = train_all(events, config, titles=read_titles(args.titles), progress=not args.no_progress)
    valid = evaluate_all(trained.ensemble, trained.split, target="valid")
    extra: dict[str, Any] = {
        "config": asdict(config),
        "metrics": {"valid": valid},
        "train": trained.info,
        "data": {"log": str(args.log), "format": args.format},
    }
    out = trained.ensemble.save(args.out, extra=extra)
    print(format_table(valid))
    print(f"trained in {trained.info['train_seconds']:.0f} s; weights {trained.ensemble.weights}; checkpoint {out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    if not _readable(args.log):
        return 2
    try:
        ensemble, _meta = Ensemble.load(args.checkpoint)
    except CheckpointError as exc:  # missing, empty, or not a checkpoint: the user's path, not a bug
        print(f"cannot load the checkpoint: {exc}", file=sys.stderr)
        return 2
    split = leave_one_out(user_histories(read_events(args.log, args.format)), ensemble.vocab)
    unknown = split.unknown_targets(args.target)
    start = time.perf_counter()
    results = evaluate_all(ensemble, split, target=args.target, negatives_seed=args.seed)
    doc = {
        "command": " ".join([args.prog, *(sys.argv[1:] if args.argv is None else args.argv)]),
        "checkpoint": str(args.checkpoint),
        "target": args.target,
        "n_users": len(split.users),
        "unknown_targets": unknown,
        "exclude_seen": True,
        "protocol": "full",
        "models": results["full"],
        "sampled99": {"protocol": "sampled99", "negatives_seed": args.seed, "models": results["sampled99"]},
        "eval_seconds": time.perf_counter() - start,
    }
    text = format_table(results) + (
        f"\n{unknown} of {len(split.users)} {args.target} targets are items the checkpoint does not know"
        " (counted as misses)")
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(doc, indent=1), encoding="utf-8")
        Path(args.out).with_suffix(".txt").write_text(text + "\n", encoding="utf-8")
    return 0


def _readable(*paths: str | None) -> bool:
    """Whether every given file can be read; says why not on stderr (one line, not a traceback)."""
    for path in paths:
        why = path and unreadable(path)
        if why:
            print(f"cannot read {path}: {why}", file=sys.stderr)
            return False
    return True


def _device(name: str) -> str:
    """An argparse type: a device the sequence model can use here (a bad one fails before any training)."""
    if not re.fullmatch(DEVICE_PATTERN, name):
        raise argparse.ArgumentTypeError(f"must be {DEVICE_CHOICES}, not {name!r}")
    try:
        resolve_device(name)
    except ValueError as exc:  # cuda asked for where there is none
        raise argparse.ArgumentTypeError(str(exc)) from None
    return name


def build_parser(prog: str = "python -m models") -> argparse.ArgumentParser:
    """``prog``: the command the user typed (``reco`` runs these subcommands too), shown in usage and help."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="pre-train the scorers and blend weights on an event log")
    train.add_argument("--log", required=True, help="event log file")
    train.add_argument("--format", default="jsonl", choices=sorted(FORMATS), help="log format (default jsonl)")
    train.add_argument("--out", required=True, help="checkpoint directory to write")
    train.add_argument("--titles", help="TSV of item_id and title(_prefix), enables the text scorer's data")
    train.add_argument("--scorers", default="sequence,covisitation,popularity", help=f"comma list from {','.join(ALL_SCORERS)}")
    train.add_argument("--seed", type=int, default=0, help="seed for initialisation, batching and sampling")
    train.add_argument("--epochs", type=int, default=200, help="most epochs (early stopping usually ends sooner)")
    train.add_argument("--patience", type=int, default=5, help="epochs without a better validation NDCG@10 before stopping")
    train.add_argument("--max-minutes", type=float, default=20.0, help="stop training the sequence model after this long")
    train.add_argument("--batch-size", type=int, default=128, help="users per training step")
    train.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate")
    train.add_argument("--hidden", type=int, default=64, help="embedding and transformer width")
    train.add_argument("--layers", type=int, default=2, help="transformer blocks")
    train.add_argument("--heads", type=int, default=2, help="attention heads")
    train.add_argument("--max-len", type=int, default=50, help="latest history items the model reads")
    train.add_argument("--dropout", type=float, default=0.3, help="dropout in embeddings, attention and blocks")
    train.add_argument(
        "--half-life-days", type=float, default=None,
        help="decay half-life of popularity and co-visitation (default 7, none for the sequences format)",
    )
    train.add_argument("--val-users", type=int, default=5000, help="validation users sampled for early stopping")
    train.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    train.add_argument("--no-bf16", action="store_true", help="train in fp32 (the default where the device has no native bf16: a CPU without AMX or AVX512-BF16)")
    train.add_argument("--device", type=_device, default="auto", help="where the sequence model trains: auto (the GPU when one exists, else the CPU), cpu, cuda, cuda:N")
    train.add_argument("--no-progress", action="store_true", help="hide progress bars")
    train.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="leave-one-out HR/NDCG@5,10,20, full ranking and 99 sampled negatives")
    ev.add_argument("--checkpoint", required=True, help="checkpoint directory written by train")
    ev.add_argument("--log", required=True, help="event log the checkpoint was trained on")
    ev.add_argument("--format", default="jsonl", choices=sorted(FORMATS), help="log format (default jsonl)")
    ev.add_argument("--target", default="test", choices=("test", "valid"), help="which held-out item to rank")
    ev.add_argument("--seed", type=int, default=0, help="seed of the 99 sampled negatives")
    ev.add_argument("--out", help="write results JSON here (and a .txt table beside it)")
    ev.set_defaults(func=cmd_evaluate)
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m models") -> int:
    """Entry point of ``python -m models`` (and, with ``prog="reco"``, ``reco train`` / ``reco evaluate``)."""
    args = build_parser(prog).parse_args(argv)
    args.argv, args.prog = argv, prog
    return int(args.func(args))
