"""Swap lag: from a training sample entering the topic to weights that include it serving traffic.

On the embedded broker and Redis, one worker and one trainer process run the
real learning loop while Amazon Beauty events (the first users' sequences, a
purchase stream) are offered at a fixed rate. The trainer fine-tunes the
hidden-64 checkpoint over the full Beauty catalogue and evaluates a candidate
every ``--promote-every`` samples (or ``--promote-every-s`` seconds). For each
version the worker swaps to, the lag is the swap time minus the Kafka
timestamp of the newest training sample learnt into that version (both clocks
are this machine's): the best case. The oldest sample new to that version
waited longest; its lag is reported too (the worst case). The worker logs each
swap; this script reads the log. It also reports how many events the worker
had not yet counted when the drain ended, how long after the last event was
offered it had counted them all (the worker's backlog), and each process's
CPU (cores, from ``/proc``) over the offered stream and the drain.

    tail -n +2501 data/amazon_beauty/sequences.txt > /tmp/beauty_rest.txt
    python -m models train --log /tmp/beauty_rest.txt --format sequences --out runs/beauty-h64-rest \
        --scorers sequence,covisitation,popularity --hidden 64 --max-minutes 6 --threads 1 --no-progress
    python benchmarks/swap_lag.py --checkpoint runs/beauty-h64-rest

The checkpoint must not have seen the streamed users (the first ``--users``
of the log): a model trained on them ranks their held-out samples from
memory, and learning their events again only double-counts them, so the
fine-tuned candidates lose to it and are (rightly) not promoted, leaving
little to measure.

``--tolerance`` is the relative NDCG@10 loss a candidate may show on the
held-out slice and still be promoted (default 0: only a candidate that is not
worse is promoted, as in production); the lag only exists for promoted versions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.stream_throughput import fresh_settings, load_beauty, paced_produce  # noqa: E402
from models.model_store import ModelStore  # noqa: E402
from stream_app.embedded import embedded_stack  # noqa: E402
from stream_app.kafka_admin import ensure_topics  # noqa: E402
from stream_app.topics import all_topics  # noqa: E402
from stream_app.settings import Settings  # noqa: E402
from stream_app.sinks.redis import RedisStore  # noqa: E402
from stream_app.worker_process import WorkerProcess  # noqa: E402

SWAP_LINE = re.compile(r"now serving model (v\d+) \((\w+)\), swap lag ([0-9.]+) s")


def swaps_in(log_text: str) -> list[dict]:
    return [{"version": v, "action": a, "swap_lag_s": float(lag)} for v, a, lag in SWAP_LINE.findall(log_text)]


async def scenario(args, stack, workdir: Path) -> dict:
    settings = fresh_settings(
        stack, workdir, model_path=str(args.checkpoint), model_store=str(workdir / "store"), log_level="info",
        trainer_promote_every=args.promote_every, trainer_promote_every_s=args.promote_every_s,
        trainer_eval_slice=args.eval_slice, trainer_promote_tolerance=args.tolerance,
        trainer_blend_every=args.blend_every, trainer_rollback_window=args.rollback_window)
    await ensure_topics(stack.bootstrap, all_topics(settings), settings.partitions)
    events = load_beauty(args.users)[: int(args.rate * args.seconds)]
    trainer = WorkerProcess.start(settings, workdir / "trainer.log", [sys.executable, "-m", "stream_app", "trainer"])
    store = ModelStore(settings.model_store)
    while store.current() is None:
        trainer.check()
        await asyncio.sleep(0.2)
    worker = WorkerProcess.start(settings, workdir / "worker.log")
    redis = RedisStore(settings.redis_url, prefix=settings.redis_prefix)
    await redis.start()
    try:
        await asyncio.sleep(8.0)  # worker start-up (model load, group join)
        worker.check()
        pids = {"worker": worker.process.pid, "trainer": trainer.process.pid,
                "broker": stack.broker.process.pid, "redis": stack.redis.process.pid}
        cpu_start = {n: cpu_seconds(p) for n, p in pids.items()}
        own_start, wall_start = time.process_time(), time.monotonic()
        offered = await paced_produce(stack, settings.events_topic, events, args.rate)
        offered_at = time.monotonic()
        deadline = offered_at + args.drain_s
        caught_up_s = None  # seconds after the last event was offered until the worker had counted them all
        while time.monotonic() < deadline:  # let the trainer catch up and the last promotion land
            worker.check()
            trainer.check()
            if caught_up_s is None and (await redis.counters())["events_in"] >= len(events):
                caught_up_s = time.monotonic() - offered_at
            await asyncio.sleep(0.5)
        counters = await redis.counters()
        wall = time.monotonic() - wall_start
        cpu = {n: (c - cpu_start[n]) / wall if c is not None and cpu_start[n] is not None else None
               for n, c in ((n, cpu_seconds(p)) for n, p in pids.items())}
        cpu["load generator"] = (time.process_time() - own_start) / wall
        swaps_by_drain_end = len(swaps_in(worker.log()))
        while caught_up_s is None and time.monotonic() < deadline + args.settle_s:
            if (await redis.counters())["events_in"] >= len(events):
                caught_up_s = time.monotonic() - offered_at
                break
            worker.check()
            await asyncio.sleep(0.5)
    finally:
        worker.stop()
        trainer.stop()
        await redis.close()
    promotions = [e for e in store.history() if e["action"] == "promote"][1:]  # the first one is the base
    swaps = [s for s in swaps_in(worker.log())[:swaps_by_drain_end] if s["action"] == "promote"]
    span_s = {e["version"]: (e["newest_sample_ms"] - e["oldest_sample_ms"]) / 1000.0 for e in promotions
              if e.get("newest_sample_ms") is not None and e.get("oldest_sample_ms") is not None}
    for s in swaps:  # the version's oldest new sample waited this much longer than its newest
        if s["version"] in span_s:
            s["oldest_sample_lag_s"] = s["swap_lag_s"] + span_s[s["version"]]
    return {
        "offered_events_per_s": offered, "events": len(events), "counters": counters,
        "backlog_at_drain_end": len(events) - counters["events_in"], "caught_up_after_s": caught_up_s,
        "cpu_cores": cpu,
        "promotions": promotions,
        "candidates_not_promoted": trainer.log().count("candidate not promoted"),
        "swaps": swaps,
        "swap_lag_s": summary([s["swap_lag_s"] for s in swaps]),
        "oldest_sample_lag_s": summary([s["oldest_sample_lag_s"] for s in swaps if "oldest_sample_lag_s" in s]),
    }


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a process has used so far (Linux ``/proc``); None where unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def summary(lags: list[float]) -> dict[str, float] | None:
    return {"p50": statistics.median(lags), "max": max(lags), "n": len(lags)} if lags else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=ROOT / "runs" / "beauty-h64-rest")
    p.add_argument("--users", type=int, default=2500)
    p.add_argument("--rate", type=float, default=300.0, help="offered events/s")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--drain-s", type=float, default=20.0)
    p.add_argument("--settle-s", type=float, default=60.0,
                   help="after the drain, wait up to this long for the worker to count every event (backlog)")
    p.add_argument("--promote-every", type=int, default=1000)
    p.add_argument("--promote-every-s", type=float, default=3.0)
    p.add_argument("--eval-slice", type=int, default=256)
    p.add_argument("--tolerance", type=float, default=0.0)
    p.add_argument("--blend-every", type=int, default=Settings().trainer_blend_every, help="0: no blend re-fit")
    p.add_argument("--rollback-window", type=int, default=Settings().trainer_rollback_window,
                   help="fresh samples a new version's probation takes (0: none)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "swap_lag.json")
    p.add_argument("--keep-workdir", action="store_true",
                   help="keep the worker's and trainer's logs and the model store (150-200 MB) for inspection")
    args = p.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-swap-"))
    try:
        with embedded_stack(workdir / "stack") as stack:
            result = asyncio.run(scenario(args, stack, workdir))
    finally:
        if args.keep_workdir:
            print(f"logs and model store kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    result = {"command": " ".join(["python", "benchmarks/swap_lag.py", *sys.argv[1:]]), **result}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'version':8s} {'swap lag s':>10s} {'oldest s':>9s}   (newest / oldest sample learnt into it)")
    for s in result["swaps"]:
        print(f"{s['version']:8s} {s['swap_lag_s']:10.2f} {s.get('oldest_sample_lag_s', float('nan')):9.2f}")
    print(f"promotions {len(result['promotions'])}, swaps {len(result['swaps'])}, lag {result['swap_lag_s']}, "
          f"oldest-sample lag {result['oldest_sample_lag_s']}")
    cores = ", ".join(f"{n} {c:.2f}" for n, c in result["cpu_cores"].items() if c is not None)
    print(f"backlog at the drain's end {result['backlog_at_drain_end']} events, all counted "
          f"{result['caught_up_after_s']} s after the last was offered; CPU cores while offered + drain: {cores}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
