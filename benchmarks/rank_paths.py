"""Ranking targets over the whole catalogue: the reference path against the serving form, side by side.

The trainer ranks every fresh sample's target by the serving version (and,
on probation, the previous one). For ``--samples`` Amazon Beauty training
samples (the swap-lag benchmark's stream) and a checkpoint, medians of
``--repeats`` alternating runs on one thread:

- ``reference``: ``rank_samples`` normalising every scorer over the catalogue, blending, counting;
- ``serving form``: ``rank_samples`` through ``LinearBlend.rank_targets`` (one matmul per chunk);
- ``build``: building that form (``linear_blend.serving_form``), once per version;
- counting the items above each target, a (512, catalogue) bool tensor summed as torch's default int64
  against int32;
- z-scoring a (64, catalogue) block of sequence logits (``models.ensemble.standardise``) against the
  previous fast path (``isfinite().all()`` then ``std_mean``), reproduced here as ``standardise_before``.

The two paths must give identical ranks (checked on every run).

    python benchmarks/rank_paths.py --checkpoint runs/beauty-h64-rest
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.stream_throughput import load_beauty  # noqa: E402
from models.ensemble import Ensemble, standardise  # noqa: E402
from models.evaluation.prequential import is_scored, rank_samples  # noqa: E402
from models.history import encode  # noqa: E402
from models.linear_blend import serving_form  # noqa: E402
from models.online.samples import log_samples  # noqa: E402
from models.scorers.sequence import SequenceScorer  # noqa: E402


def standardise_before(scores: torch.Tensor) -> torch.Tensor:
    """``standardise``'s fast path before the change: ``isfinite().all()`` and ``std_mean`` (Welford)."""
    body = scores[:, 1:]
    if not torch.isfinite(body).all():
        raise ValueError("the fast path only")
    std, mean = torch.std_mean(body, dim=1, keepdim=True, correction=0)
    std = std.clamp(min=1e-6)
    z = (scores - mean) / std
    z[:, :1] = (body.amin(1, keepdim=True) - mean) / std
    return z


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=ROOT / "runs" / "beauty-h64-rest")
    p.add_argument("--users", type=int, default=2500)
    p.add_argument("--samples", type=int, default=2048)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "rank_paths.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    ensemble, _ = Ensemble.load(args.checkpoint)
    samples = [s for s in log_samples(load_beauty(args.users)) if is_scored(s)][: args.samples]
    scores = torch.randn(512, len(ensemble.vocab))
    above = scores > scores[:, 5:6]
    encoded = [encode(ensemble.vocab, s.history) for s in samples[:64]]
    sequence = next(n for n, sc in ensemble.scorers.items() if isinstance(sc, SequenceScorer))
    logits = ensemble.scorers[sequence].score_rows([r for r, _ in encoded], [t for _, t in encoded])
    seconds: dict[str, list[float]] = {"reference": [], "serving form": [], "build": [],
                                       "bool sum int64": [], "bool sum int32": [],
                                       "standardise before": [], "standardise": []}
    for _ in range(args.repeats):
        t, want = timed(lambda: rank_samples(ensemble, samples))
        seconds["reference"].append(t)
        t, form = timed(lambda: serving_form(ensemble))
        seconds["build"].append(t)
        t, got = timed(lambda: rank_samples(ensemble, samples, linear=form))
        seconds["serving form"].append(t)
        if not (got == want).all():
            raise SystemExit("the serving form ranked differently from the reference path")
        seconds["bool sum int64"].append(timed(lambda: above.sum(1))[0])
        seconds["bool sum int32"].append(timed(lambda: above.sum(1, dtype=torch.int32))[0])
        t, old = timed(lambda: standardise_before(logits))
        seconds["standardise before"].append(t)
        t, new = timed(lambda: standardise(logits))
        seconds["standardise"].append(t)
        if not torch.allclose(old, new, atol=1e-5):
            raise SystemExit("standardise changed its result beyond float rounding")
    med = {k: statistics.median(v) for k, v in seconds.items()}
    doc = {"command": " ".join(["python", "benchmarks/rank_paths.py", *sys.argv[1:]]),
           "samples": len(samples), "catalogue": len(ensemble.vocab) - 1, "threads": 1,
           "median_s": med, "runs_s": seconds,
           "ratio_serving_form_over_reference": med["serving form"] / med["reference"],
           "ratio_int32_over_int64": med["bool sum int32"] / med["bool sum int64"],
           "ratio_standardise_over_before": med["standardise"] / med["standardise before"]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"medians of {args.repeats}, {len(samples)} samples, {doc['catalogue']} items, one thread")
    for name, value in med.items():
        print(f"{name:16s} {value * 1000:9.1f} ms")
    print(f"serving form / reference {doc['ratio_serving_form_over_reference']:.2f}, "
          f"int32 / int64 sum {doc['ratio_int32_over_int64']:.2f}, "
          f"standardise now / before {doc['ratio_standardise_over_before']:.2f}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
