"""Where the trainer's time goes, and how many samples a second it sustains, with and without the blend re-fit.

``OnlineTrainer.on_samples`` (what the trainer process runs on each batch)
is driven directly, without Kafka, on the training samples the worker would
emit for the first ``--users`` Amazon Beauty users' purchase streams (the
swap-lag benchmark's stream), from a hidden-64 checkpoint trained without
those users, in calls of ``--fetch`` samples (default ``--batch``), with the swap-lag benchmark's
promotion settings. The clock the
trainer sees advances as if samples arrived at ``--rate`` a second, so the
time-based promotion fires as it would live. Each stage is timed with
``time.perf_counter``; variants run alternately, ``--repeats`` times each,
and the table quotes medians.

    python benchmarks/trainer_stages.py --checkpoint runs/beauty-h64-rest   # made as in swap_lag.py

A trainer keeps up with an offered rate only while its busy seconds per
second of arrivals stay under 1 (``load`` in the table); above that, its
backlog and so the swap lag grow with every promotion.

The trainer process runs with glibc's malloc settings from
``stream_app.embedded.MALLOC_ENV``; they must be set before a process starts,
so set them for this one too to measure what it runs with (the JSON records them)::

    env MALLOC_MMAP_THRESHOLD_=536870912 MALLOC_TRIM_THRESHOLD_=1073741824 MALLOC_TOP_PAD_=67108864 \
        python benchmarks/trainer_stages.py --checkpoint runs/beauty-h64-rest
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.stream_throughput import load_beauty  # noqa: E402
from models.model_store import ModelStore  # noqa: E402
from models.online.blend import BlendRefitConfig  # noqa: E402
from models.online.learner import OnlineConfig  # noqa: E402
from models.online.samples import TrainingSample, log_samples  # noqa: E402
from models.online.trainer import OnlineTrainer, TrainerConfig, ensure_base  # noqa: E402
from stream_app.embedded import MALLOC_ENV  # noqa: E402


class Stopwatch:
    """Seconds spent in wrapped methods, by stage name: each stage's own time, less any wrapped call made
    inside it (the blend re-fit's scoring inside the serving ranks, a checkpoint save inside a promotion)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.nested: list[float] = []  # per open call: time spent in wrapped calls inside it

    def wrap(self, obj: object, method: str, stage: str) -> None:
        inner: Callable[..., Any] = getattr(obj, method)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            self.nested.append(0.0)
            try:
                return inner(*args, **kwargs)
            finally:
                spent = time.perf_counter() - start
                self.seconds[stage] += spent - self.nested.pop()
                if self.nested:
                    self.nested[-1] += spent

        setattr(obj, method, timed)


def run_variant(checkpoint: Path, samples: list[TrainingSample], args: argparse.Namespace,
                blend_every: int) -> dict[str, Any]:
    """One pass over ``samples``; seconds per stage and per 1k samples, and the load at ``args.rate``."""
    with tempfile.TemporaryDirectory(prefix="bench-stages-") as tmp:
        return _run_variant(ModelStore(Path(tmp)), checkpoint, samples, args, blend_every)


def _run_variant(store: ModelStore, checkpoint: Path, samples: list[TrainingSample], args: argparse.Namespace,
                 blend_every: int) -> dict[str, Any]:
    ensure_base(store, str(checkpoint))
    arrived = [0.0]
    learner_cfg = OnlineConfig(batch_size=args.batch, eval_slice=args.eval_slice,
                               blend=BlendRefitConfig(every=blend_every), device=args.device)
    trainer_cfg = TrainerConfig(eval_slice=args.eval_slice, promote_every=args.promote_every,
                                promote_every_s=args.promote_every_s)
    trainer = OnlineTrainer(store, learner_cfg, trainer_cfg, clock=lambda: arrived[0])
    watch = Stopwatch()
    watch.wrap(trainer, "_rank_fresh", "serving ranks")  # on arrival (and stale ones inside an evaluation)
    watch.wrap(trainer, "_check_probation", "probation")
    watch.wrap(trainer, "_evaluate", "evaluate+promote")
    watch.wrap(trainer.store, "save", "save checkpoint")
    wrapped_learner = None
    windows: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))  # first sample -> seconds
    start = time.perf_counter()
    fetch = args.fetch or args.batch
    for i in range(0, len(samples), fetch):
        if trainer.learner is not wrapped_learner:  # a rollback makes a new learner
            wrapped_learner = trainer.learner
            watch.wrap(wrapped_learner.blend, "observe", "blend observe")
            watch.wrap(wrapped_learner.blend, "maybe_refit", "blend refit")
            watch.wrap(wrapped_learner, "_fit", "fine-tune")
        batch = samples[i:i + fetch]
        arrived[0] += len(batch) / args.rate
        before, call_start = dict(watch.seconds), time.perf_counter()
        trainer.on_samples(batch)
        if args.windows:  # charged to the window the call's first sample falls in
            window = windows[i - i % args.windows]
            window["total"] += time.perf_counter() - call_start
            for stage, seconds in watch.seconds.items():
                window[stage] += seconds - before.get(stage, 0.0)
    total = time.perf_counter() - start
    stages = dict(watch.seconds)
    stages["other"] = total - sum(stages.values())
    n = len(samples)
    return {"samples": n, "seconds": total, "stages_s": stages, "s_per_1k": 1000.0 * total / n,
            "load_at_rate": total / (n / args.rate),
            "promotions": sum(1 for e in trainer.evaluations if e["promoted"]),
            "evaluations": len(trainer.evaluations),
            "blend_fits": len(trainer.learner.blend.fits),
            "windows": [window_row(first, samples[first:first + args.windows], seconds)
                        for first, seconds in windows.items()]}


def window_row(first: int, samples: list[TrainingSample], seconds: dict[str, float]) -> dict[str, Any]:
    """One window of samples: how long their histories were and the trainer's seconds per 1,000 of them."""
    per_1k = 1000.0 / len(samples)
    return {"first_sample": first, "samples": len(samples), "mean_history": statistics.fmean(len(s.items) for s in samples),
            "s_per_1k": per_1k * seconds["total"],
            "stage_s_per_1k": {k: per_1k * v for k, v in seconds.items() if k != "total"}}


def print_windows(runs: list[dict[str, Any]]) -> None:
    """Seconds per 1,000 samples by window (median over repeats), blend re-fit on."""
    print(f"\nby window, blend re-fit on (median of {len(runs)}): seconds per 1,000 samples")
    print(f"{'first sample':>12s} {'mean history':>12s} {'total':>7s} {'fine-tune':>9s} {'serving ranks':>13s}")
    for n, row in enumerate(runs[0]["windows"]):
        rows = [r["windows"][n] for r in runs]
        tune, ranks = (statistics.median(r["stage_s_per_1k"].get(k, 0.0) for r in rows)
                       for k in ("fine-tune", "serving ranks"))
        print(f"{row['first_sample']:12d} {row['mean_history']:12.2f} "
              f"{statistics.median(r['s_per_1k'] for r in rows):7.2f} {tune:9.2f} {ranks:13.2f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=ROOT / "runs" / "beauty-h64-rest")
    p.add_argument("--users", type=int, default=2500)
    p.add_argument("--samples", type=int, default=6000, help="samples per pass (the swap-lag run offers 18,000)")
    p.add_argument("--rate", type=float, default=300.0, help="arrival rate the trainer's clock follows")
    p.add_argument("--batch", type=int, default=256, help="samples per learning step (RECO_TRAINER_BATCH)")
    p.add_argument("--fetch", type=int, default=0,
                   help="samples per on_samples call, as the consumer returns them (0: --batch; live, often fewer)")
    p.add_argument("--promote-every", type=int, default=1000)
    p.add_argument("--promote-every-s", type=float, default=3.0)
    p.add_argument("--eval-slice", type=int, default=256)
    p.add_argument("--blend-every", type=int, default=BlendRefitConfig().every)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--windows", type=int, default=0,
                   help="also time every this many samples apart, with their mean history length (0: off)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", help="where the sequence model computes: cpu (the default here, for results comparable across hosts), auto (the GPU when one exists), cuda")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "trainer_stages.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    samples = log_samples(load_beauty(args.users))[: args.samples]
    variants = {"blend re-fit on": args.blend_every, "blend re-fit off": 0}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for r in range(args.repeats):
        for name, every in variants.items():
            runs[name].append(run_variant(args.checkpoint, samples, args, every))
            print(f"repeat {r + 1} {name}: {runs[name][-1]['s_per_1k']:.2f} s/1k", flush=True)
    summary = {}
    for name, rs in runs.items():
        stages = sorted({k for x in rs for k in x["stages_s"]})
        summary[name] = {
            "s_per_1k": statistics.median(x["s_per_1k"] for x in rs),
            "load_at_rate": statistics.median(x["load_at_rate"] for x in rs),
            "stage_s_per_1k": {k: statistics.median(1000.0 * x["stages_s"].get(k, 0.0) / x["samples"] for x in rs)
                               for k in stages},
        }
    on, off = summary["blend re-fit on"], summary["blend re-fit off"]
    doc = {"command": " ".join(["python", "benchmarks/trainer_stages.py", *sys.argv[1:]]),
           "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
           "malloc_env": {k: os.environ.get(k) for k in MALLOC_ENV},  # the trainer process gets MALLOC_ENV
           "summary": summary, "ratio_on_over_off": on["s_per_1k"] / off["s_per_1k"], "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    stages = sorted(set(on["stage_s_per_1k"]) | set(off["stage_s_per_1k"]))
    print(f"\nmedians of {args.repeats}, seconds per 1,000 samples (load = busy s per s at {args.rate:g}/s)")
    print(f"{'stage':18s} {'re-fit on':>10s} {'re-fit off':>10s}")
    for k in stages:
        print(f"{k:18s} {on['stage_s_per_1k'].get(k, 0.0):10.3f} {off['stage_s_per_1k'].get(k, 0.0):10.3f}")
    print(f"{'total':18s} {on['s_per_1k']:10.3f} {off['s_per_1k']:10.3f}")
    print(f"{'load':18s} {on['load_at_rate']:10.2f} {off['load_at_rate']:10.2f}")
    if args.windows:
        print_windows(runs["blend re-fit on"])
    print(f"on/off ratio {doc['ratio_on_over_off']:.2f}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
