"""Scoring micro-benchmark: one micro-batch of real users through the ensemble, outside the stream.

Compares, side by side in one run, the reference blend (``Ensemble.recommend``:
every scorer normalised over the whole catalogue) with the serving blend
(``models.linear_blend.LinearBlend``: the same scores in one matmul), per
device (the CPU, and CUDA when there is one), dtype and batch size. Histories
are real Amazon Beauty users' latest items; the top-10 excludes each user's
last item (as the stream excludes bought items).

    python benchmarks/scoring_micro.py --checkpoint runs/beauty-h64
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.ensemble import Ensemble  # noqa: E402
from models.linear_blend import LinearBlend  # noqa: E402
from models.serving import DTYPES  # noqa: E402

BEAUTY = ROOT / "data" / "amazon_beauty" / "sequences.txt"


def histories(n: int) -> list[list[tuple[str, str]]]:
    """The first ``n`` Beauty users' latest 50 items, as purchases."""
    out = []
    for line in BEAUTY.read_text().splitlines()[:n]:
        items = line.split()[1:]
        out.append([(i, "purchase") for i in items[-50:]])
    return out


def timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up (allocations, first CUDA kernels)
    out = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def on_device(ensemble: Ensemble, device: str, dtype: str) -> Ensemble:
    """A copy of ``ensemble`` whose sequence model sits on ``device`` in ``dtype``."""
    from models.serving import ServingConfig, prepare_for_serving
    copied = copy.deepcopy(ensemble)
    prepare_for_serving(copied, ServingConfig(device=device, dtype=dtype))
    return copied


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=ROOT / "runs" / "beauty-h64")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 32, 64, 256])
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    ensemble, _ = Ensemble.load(args.checkpoint)
    users = histories(max(args.batches))
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        for dtype in DTYPES:
            served = on_device(ensemble, device, dtype)
            blend = LinearBlend(served, device=device)
            for batch in args.batches:
                hist = users[:batch]
                bought = [{h[-1][0]} for h in hist]
                paths = {
                    "reference": lambda: served.recommend(hist, 10, exclude_seen=False, exclude=bought),
                    "linear": lambda: blend.recommend(hist, 10, exclude=bought),
                }
                for name, fn in paths.items():
                    ms = timed(fn, args.repeats)
                    med = statistics.median(ms)
                    rows.append({"device": device, "dtype": dtype, "batch": batch, "path": name,
                                 "median_ms": round(med, 3), "max_ms": round(max(ms), 3),
                                 "users_per_s": round(batch / med * 1000, 1)})
                    print(f"{device:5} {dtype:5} batch {batch:4} {name:9} median {med:8.2f} ms"
                          f"  max {rows[-1]['max_ms']:8.2f} ms  {rows[-1]['users_per_s']:10.1f} users/s", flush=True)
    result = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *(argv or sys.argv[1:])]),
        "checkpoint": str(args.checkpoint), "items": len(ensemble.vocab) - 1, "threads": args.threads,
        "machine": platform.processor() or platform.machine(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__, "repeats": args.repeats, "rows": rows,
    }
    device_tag = "cuda" if torch.cuda.is_available() else "cpu"
    out = args.out or ROOT / "benchmarks" / "results" / f"scoring_micro_{device_tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
