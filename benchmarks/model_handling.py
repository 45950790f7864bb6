"""What a promotion costs besides learning: the trainer's copy and save of a candidate, a worker's load.

For a checkpoint, medians of ``--repeats`` runs on one thread:

- ``load``: a worker loading a version for serving
  (``EnsembleRecommender.from_checkpoint`` and the score check it runs before a swap);
- ``copy``: the trainer's deep copy of its working ensemble (``OnlineLearner.candidate``),
  after the ensemble has learnt one sample (as in the trainer, whose scorers have learnt);
- ``save``: writing that learnt ensemble as a checkpoint (``Ensemble.save``).

    python benchmarks/model_handling.py --checkpoint runs/beauty-h64-rest

To compare two commits, run it from a git worktree of each, alternating.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.ensemble import Ensemble  # noqa: E402
from stream_app.model_scoring import EnsembleRecommender  # noqa: E402
from stream_app.model_updates import check_scores  # noqa: E402


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(checkpoint: Path) -> dict[str, float]:
    """One run of each step, in seconds."""
    load = timed(lambda: check_scores(EnsembleRecommender.from_checkpoint(checkpoint, k=20)))
    ensemble, _ = Ensemble.load(checkpoint)
    item = ensemble.vocab.item(1)
    for scorer in ensemble.scorers.values():  # learnt since loading, as the trainer's working copy has
        scorer.observe([(item, "view")], ensemble.vocab.item(2), "click", time.time())
    copy_s = timed(lambda: copy.deepcopy(ensemble))
    with tempfile.TemporaryDirectory() as tmp:
        save = timed(lambda: ensemble.save(tmp))
    return {"load": load, "copy": copy_s, "save": save}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=ROOT / "runs" / "beauty-h64-rest")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "model_handling.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    runs = [measure(args.checkpoint) for _ in range(args.repeats)]
    medians = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(f"{'step':6} {'median s':>9}   runs")
    for k, v in medians.items():
        print(f"{k:6} {v:9.3f}   " + " ".join(f"{r[k]:.3f}" for r in runs))
    doc = {"command": " ".join(["python", "benchmarks/model_handling.py", *(argv or sys.argv[1:])]),
           "checkpoint": str(args.checkpoint), "threads": 1, "runs": runs, "median_s": medians}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
