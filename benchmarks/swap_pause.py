"""Does a hot swap pause the worker? The event loop's stalls while a version loads, and the first batch after.

A worker loads an announced version in its loader thread while the event loop
goes on taking batches, then swaps between two batches. Two things could
still pause serving: the load holding the interpreter lock (or starting a
full garbage collection) while the loop waits, and the new version's first
batch being slow. For each of ``--swaps`` swaps, in a child process set up as
a worker is (torch, transformers and Faust imported, the serving version
loaded), this measures:

- the event loop's worst stall during the load (a probe task sleeping 5 ms
  records how late it wakes), and the full collections that ran meanwhile;
- the new version's first batch of ``--batch`` users against the median of
  its next five (Beauty histories, cut at random lengths).

Two heaps, alternating child processes: ``settled`` freezes the start-up heap
as ``reco worker`` does (``stream_app.gc_tuning.settle_heap``), ``default``
leaves CPython's collector as it is.

    python benchmarks/swap_pause.py --checkpoint runs/beauty-h64-rest
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import json
import random
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HEAPS = ("settled", "default")


def child(checkpoint: Path, heap: str, swaps: int, batch: int, sequences: Path) -> dict:
    """One child process's measurements (run with ``--child``)."""
    import torch

    importlib.import_module("faust")  # loaded in a worker: its objects are part of the heap a collection walks

    from stream_app.gc_tuning import settle_heap
    from stream_app.model_scoring import EnsembleRecommender
    from stream_app.model_updates import check_scores

    torch.set_num_threads(1)
    users = [line.split()[1:] for line in sequences.read_text().splitlines()[:3000] if line.strip()]
    rng = random.Random(0)

    def histories() -> list[list[tuple[str, str]]]:
        return [[(i, "purchase") for i in u[: rng.randint(1, len(u))]] for u in rng.choices(users, k=batch)]

    def load() -> EnsembleRecommender:
        recommender = EnsembleRecommender.from_checkpoint(checkpoint)
        check_scores(recommender)
        return recommender

    def score_s(recommender: EnsembleRecommender) -> float:
        h = histories()
        start = time.perf_counter()
        recommender.rank(h, [set() for _ in h])
        return time.perf_counter() - start

    full: list[float] = []
    started: dict[int, float] = {}

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            started[info["generation"]] = time.perf_counter()
        elif info["generation"] == 2:
            full.append(time.perf_counter() - started[2])

    async def probe(stop: asyncio.Event, lags: list[float]) -> None:
        while not stop.is_set():
            start = time.perf_counter()
            await asyncio.sleep(0.005)
            lags.append(time.perf_counter() - start - 0.005)

    async def run() -> list[dict]:
        serving = load()
        if heap == "settled":
            settle_heap()
        gc.callbacks.append(on_gc)
        pool, loop, out = ThreadPoolExecutor(max_workers=1), asyncio.get_running_loop(), []
        for _ in range(swaps):
            stop, lags = asyncio.Event(), []
            full.clear()
            task = asyncio.create_task(probe(stop, lags))
            serving = await loop.run_in_executor(pool, load)  # the old version is freed here, as in a swap
            stop.set()
            await task
            in_load = list(full)
            first = score_s(serving)
            later = statistics.median(score_s(serving) for _ in range(5))
            out.append({"worst_stall_s": max(lags), "full_collections_s": in_load,
                        "first_batch_s": first, "later_batch_s": later})
        return out

    return {"heap": heap, "swaps": asyncio.run(run())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=ROOT / "runs" / "beauty-h64-rest")
    p.add_argument("--sequences", type=Path, default=ROOT / "data" / "amazon_beauty" / "sequences.txt")
    p.add_argument("--swaps", type=int, default=20, help="swaps per child process")
    p.add_argument("--rounds", type=int, default=3, help="child processes per heap, alternating")
    p.add_argument("--batch", type=int, default=128, help="users per scored batch")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "swap_pause.json")
    p.add_argument("--child", choices=HEAPS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.checkpoint, args.child, args.swaps, args.batch, args.sequences)))
        return 0
    runs: dict[str, list[dict]] = {h: [] for h in HEAPS}
    for _ in range(args.rounds):
        for heap in HEAPS:
            out = subprocess.run([sys.executable, __file__, "--child", heap, "--checkpoint", str(args.checkpoint),
                                  "--sequences", str(args.sequences), "--swaps", str(args.swaps),
                                  "--batch", str(args.batch)], capture_output=True, text=True, check=True)
            runs[heap] += json.loads(out.stdout.splitlines()[-1])["swaps"]
    summary = {}
    print(f"{'heap':8} {'swaps':>5} {'stall p50 ms':>12} {'stall max ms':>12} {'full GCs':>8} "
          f"{'1st batch ms':>12} {'later ms':>9}")
    for heap, swaps in runs.items():
        stalls = [s["worst_stall_s"] * 1e3 for s in swaps]
        row = {"swaps": len(swaps), "worst_stall_ms_p50": statistics.median(stalls), "worst_stall_ms_max": max(stalls),
               "full_collections": sum(len(s["full_collections_s"]) for s in swaps),
               "full_collection_ms_max": max((f * 1e3 for s in swaps for f in s["full_collections_s"]), default=None),
               "first_batch_ms_p50": statistics.median(s["first_batch_s"] * 1e3 for s in swaps),
               "later_batch_ms_p50": statistics.median(s["later_batch_s"] * 1e3 for s in swaps)}
        summary[heap] = row
        print(f"{heap:8} {row['swaps']:5d} {row['worst_stall_ms_p50']:12.1f} {row['worst_stall_ms_max']:12.1f} "
              f"{row['full_collections']:8d} {row['first_batch_ms_p50']:12.1f} {row['later_batch_ms_p50']:9.1f}")
    doc = {"command": "python benchmarks/swap_pause.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "checkpoint": str(args.checkpoint), "batch": args.batch, "summary": summary, "runs": runs}
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
