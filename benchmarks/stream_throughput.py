"""Stream throughput and event-to-Redis latency on the embedded broker and Redis.

All paths run in one process tree on this machine, side by side, over the same
pre-produced backlog of real events (Amazon Beauty as a purchase stream, the
Taobao sample), each on fresh topics:

- ``aiokafka``: a plain consumer, ``getmany`` + ``orjson.loads`` (the hardware limit);
- ``faust_noop``: a Faust agent that does nothing per event (the framework's limit);
- ``per_event``: the stream worker with ``max_batch=1``: every event scored alone;
- ``micro_batched``: the stream worker as configured (batches of up to 256, ``stream_app.agents.batching``).

The two worker paths score with the same trained ensemble (transformer +
co-visitation + popularity). Then, at a fixed offered load of 500 events/s,
the worker's event-to-Redis latency (from each event's Kafka timestamp to its
user's list in Redis, the worker's own Prometheus histogram, read before and
after). Finally the effect of bf16, torch.compile and the batch limit.

    python benchmarks/stream_throughput.py --beauty-checkpoint runs/beauty-h64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.cli import main as models_cli  # noqa: E402
from models.data.eventlog import read_log  # noqa: E402
from models.data.events import Event  # noqa: E402
from stream_app.demo import demo_settings  # noqa: E402
from stream_app.topics import all_topics  # noqa: E402
from stream_app.embedded import EmbeddedStack, embedded_stack, free_port  # noqa: E402
from stream_app.kafka_admin import ensure_topics  # noqa: E402
from stream_app.replay.producer import encode, order_for_replay, replay  # noqa: E402
from stream_app.settings import Settings  # noqa: E402
from stream_app.sinks.redis import RedisStore  # noqa: E402
from stream_app.worker_process import WorkerProcess, metric_samples, processed_by  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
BEAUTY = ROOT / "data" / "amazon_beauty" / "sequences.txt"
TAOBAO = ROOT / "data" / "sample" / "taobao_user_behavior.csv"
PATHS = ("aiokafka", "faust_noop", "per_event", "micro_batched")


def load_beauty(n_users: int) -> list[Event]:
    """The first ``n_users`` Beauty users' full sequences, in (synthetic) time order."""
    lines = BEAUTY.read_text().splitlines()[:n_users]
    with tempfile.TemporaryDirectory() as tmp:
        subset = Path(tmp) / "beauty_subset.txt"
        subset.write_text("\n".join(lines) + "\n")
        return order_for_replay([e for e in read_log(subset, "sequences") if isinstance(e, Event)])


def fresh_settings(stack: EmbeddedStack, workdir: Path, **overrides) -> Settings:
    tag = uuid.uuid4().hex[:8]
    return demo_settings(
        stack, workdir / tag, app_id=f"bench-{tag}", redis_prefix=f"bench-{tag}",
        events_topic=f"events-{tag}", recommendations_topic=f"recs-{tag}", dead_letter_topic=f"dlq-{tag}",
        item_activity_topic=f"items-{tag}", item_touches_topic=f"touches-{tag}", alerts_topic=f"alerts-{tag}",
        training_samples_topic=f"samples-{tag}", model_updates_topic=f"models-{tag}",
        **{"log_level": "error", **overrides})


async def produce_backlog(stack: EmbeddedStack, settings: Settings, events: list[Event]) -> None:
    await ensure_topics(stack.bootstrap, all_topics(settings), settings.partitions)
    await replay(events, bootstrap=stack.bootstrap, topic=settings.events_topic, progress=False)


async def aiokafka_rate(stack: EmbeddedStack, settings: Settings, n: int) -> float:
    consumer = AIOKafkaConsumer(settings.events_topic, bootstrap_servers=stack.bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        seen, start = 0, time.perf_counter()  # from the first fetch request on
        while seen < n:
            for msgs in (await consumer.getmany(timeout_ms=500, max_records=10_000)).values():
                for m in msgs:
                    orjson.loads(m.value)
                seen += len(msgs)
        return n / (time.perf_counter() - start)
    finally:
        await consumer.stop()


async def counter_rate(store: RedisStore, proc_check, n: int, max_s: float) -> float:
    """Events/s from the worker's Redis counter, between 5% and 95% of the backlog (or ``max_s``)."""
    samples: list[tuple[float, int]] = []
    t_first = None
    while True:
        proc_check()
        count = (await store.counters()).get("events_in", 0)
        now = time.perf_counter()
        if count >= 0.05 * n:
            t_first = t_first or now
            samples.append((now, count))
        if count >= 0.95 * n or (t_first and now - t_first > max_s):
            break
        await asyncio.sleep(0.05)
    (t0, c0), (t1, c1) = samples[0], samples[-1]
    return (c1 - c0) / (t1 - t0) if t1 > t0 else float("nan")


async def worker_rate(stack, settings: Settings, n: int, workdir: Path, noop: bool, max_s: float) -> float:
    store = RedisStore(settings.redis_url, prefix=settings.redis_prefix)
    await store.start()
    argv = [sys.executable, str(ROOT / "benchmarks" / "noop_worker.py")] if noop else None
    worker = WorkerProcess.start(settings, workdir / f"worker-{settings.app_id}.log", argv)
    try:
        return await counter_rate(store, worker.check, n, max_s)
    finally:
        worker.stop()
        await store.close()


# -- more than one worker process --------------------------------------------------------------

def group_settings(settings: Settings, workers: int) -> list[Settings]:
    """``workers`` members of one worker group: the same app and topics, each its own web port and data dir."""
    return [settings] + [replace(settings, web_port=free_port(), data_dir=f"{settings.data_dir}-{i}")
                         for i in range(1, workers)]


async def start_group(group: list[Settings], workdir: Path, settle_s: float) -> list[WorkerProcess]:
    """Start the group's workers, wait until each serves its web endpoint, then ``settle_s`` more seconds
    for the consumer group to form and split the partitions before any event arrives."""
    workers = [WorkerProcess.start(s, workdir / f"worker-{s.app_id}-{s.web_port}.log") for s in group]
    for settings, worker in zip(group, workers):
        while True:
            worker.check()
            try:
                metric_samples(settings.web_port, "reco_events")
                break
            except OSError:
                await asyncio.sleep(0.2)
    await asyncio.sleep(settle_s)
    return workers


async def group_rate(stack, settings: Settings, events: list[Event], workers: int, workdir: Path,
                     max_s: float) -> dict:
    """Events/s of ``workers`` worker processes over a backlog produced once they have formed their group,
    and each one's share of the events."""
    group = group_settings(settings, workers)
    await ensure_topics(stack.bootstrap, all_topics(settings), settings.partitions)
    store = RedisStore(settings.redis_url, prefix=settings.redis_prefix)
    await store.start()
    procs = await start_group(group, workdir, settle_s=6.0)
    try:
        await replay(events, bootstrap=stack.bootstrap, topic=settings.events_topic, progress=False)

        def check() -> None:
            for w in procs:
                w.check()

        rate = await counter_rate(store, check, len(events), max_s)
        return {"events_per_s": rate, "processed_by_worker": [processed_by(s.web_port) for s in group]}
    finally:
        for w in procs:
            w.stop()
        await store.close()


def run_path(stack, workdir, path: str, events: list[Event], checkpoint: Path, max_s: float) -> float:
    overrides = {}
    if path in ("per_event", "micro_batched"):
        overrides = dict(model_path=str(checkpoint), max_batch=1 if path == "per_event" else 256)
    settings = fresh_settings(stack, workdir, **overrides)
    asyncio.run(produce_backlog(stack, settings, events))
    if path == "aiokafka":
        return asyncio.run(aiokafka_rate(stack, settings, len(events)))
    return asyncio.run(worker_rate(stack, settings, len(events), workdir, path == "faust_noop", max_s))


# -- latency at a fixed offered load --------------------------------------------------------

def latency_histogram(ports: list[int]) -> dict[float, float]:
    """The event-to-Redis histogram's cumulative buckets, summed over the workers on ``ports``."""
    buckets: dict[float, float] = {}
    for port in ports:
        for s in metric_samples(port, "reco_event_to_redis_seconds"):
            if s.name.endswith("_bucket"):
                buckets[float(s.labels["le"])] = buckets.get(float(s.labels["le"]), 0.0) + s.value
    return buckets


def quantile(buckets: dict[float, float], q: float) -> float:
    """Prometheus-style histogram_quantile: linear within the bucket, in ms."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    rank, prev_bound, prev_count = q * total, 0.0, 0.0
    for b in bounds:
        if buckets[b] >= rank:
            if b == float("inf"):
                return prev_bound * 1000
            span = buckets[b] - prev_count
            return 1000 * (prev_bound + (b - prev_bound) * ((rank - prev_count) / span if span else 0))
        prev_bound, prev_count = b, buckets[b]
    return float("nan")


async def paced_produce(stack, topic: str, events: list[Event], rate: float) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, linger_ms=0)
    await producer.start()
    start = time.perf_counter()
    try:
        for i, ev in enumerate(events):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            key, value = encode(ev)
            await producer.send(topic, value=value, key=key)
        await producer.flush()
    finally:
        await producer.stop()
    return len(events) / (time.perf_counter() - start)


def run_latency(stack, workdir, events: list[Event], checkpoint: Path, rate: float, seconds: float,
                workers: int = 0, **overrides) -> dict[str, float]:
    """Event-to-Redis latency at ``rate`` events/s offered. ``workers`` = 0: one worker started on a
    500-event warm-up backlog; N: N workers (one group) started first and settled, then the warm-up."""
    settings = fresh_settings(stack, workdir, model_path=str(checkpoint), **overrides)
    warm, load = events[:500], events[500: 500 + int(rate * seconds)]
    group = group_settings(settings, max(workers, 1))

    async def scenario() -> dict[str, float]:
        store = RedisStore(settings.redis_url, prefix=settings.redis_prefix)
        await store.start()
        if workers:
            await ensure_topics(stack.bootstrap, all_topics(settings), settings.partitions)
            procs = await start_group(group, workdir, settle_s=6.0)
            await replay(warm, bootstrap=stack.bootstrap, topic=settings.events_topic, progress=False)
        else:
            await produce_backlog(stack, settings, warm)
            procs = [WorkerProcess.start(settings, workdir / f"latency-{settings.app_id}.log")]
        ports = [s.web_port for s in group]

        async def wait_counted(n: int) -> None:
            while (await store.counters())["events_in"] < n:
                for w in procs:
                    w.check()
                await asyncio.sleep(0.1)

        try:
            await wait_counted(len(warm))
            await asyncio.sleep(1.0)
            before = latency_histogram(ports)
            offered = await paced_produce(stack, settings.events_topic, load, rate)
            await wait_counted(len(warm) + len(load))
            await asyncio.sleep(0.5)
            after = latency_histogram(ports)
            delta = {b: after[b] - before.get(b, 0.0) for b in after}
            return {"p50": quantile(delta, 0.5), "p99": quantile(delta, 0.99),
                    "offered_events_per_s": offered, "events": len(load), "workers": len(group),
                    "processed_by_worker": [processed_by(s.web_port) for s in group]}
        finally:
            for w in procs:
                w.stop()
            await store.close()

    return asyncio.run(scenario())


def train_checkpoint(log: Path, fmt: str, out: Path, minutes: float) -> Path:
    if not (out / "meta.json").exists():
        code = models_cli(["train", "--log", str(log), "--format", fmt, "--out", str(out),
                           "--scorers", "sequence,covisitation,popularity", "--hidden", "64",
                           "--max-minutes", str(minutes), "--threads", "2", "--no-progress"])
        assert code == 0, "training failed"
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--beauty-checkpoint", type=Path, default=ROOT / "runs" / "beauty-h64",
                   help="ensemble checkpoint over the full Beauty catalogue (trained here if missing)")
    p.add_argument("--train-minutes", type=float, default=6.0, help="training budget when a checkpoint is missing")
    p.add_argument("--beauty-users", type=int, default=2500, help="Beauty users replayed (their full sequences)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-seconds", type=float, default=25.0, help="measuring window per worker run")
    p.add_argument("--rate", type=float, default=500.0, help="offered load for the latency test, events/s")
    p.add_argument("--latency-seconds", type=float, default=20.0)
    p.add_argument("--skip-ablations", action="store_true")
    p.add_argument("--latency-only", action="store_true",
                   help="only the latency test, --repeats times (settings from RECO_* in the environment)")
    p.add_argument("--quick", metavar="DATASET", choices=["beauty", "taobao"],
                   help="only the micro-batched worker on one data set, once, printed, no JSON (for profiling)")
    p.add_argument("--scale-out", type=int, nargs="+", metavar="N",
                   help="only Beauty with N worker processes for each N given (e.g. 1 2), alternating, --repeats "
                        "times: backlog throughput and latency at --rate; writes --out")
    p.add_argument("--workers", type=int, default=0,
                   help="with --quick or --latency-only: this many worker processes in one group, started and "
                        "settled before the events are produced (0: one worker started on the backlog, as before)")
    p.add_argument("--out", type=Path, default=RESULTS / "stream_throughput.json")
    args = p.parse_args(argv)
    if args.latency_only:
        checkpoint = train_checkpoint(BEAUTY, "sequences", args.beauty_checkpoint, args.train_minutes)
        workdir = Path(tempfile.mkdtemp(prefix="bench-stream-"))
        try:
            events = load_beauty(args.beauty_users)
            with embedded_stack(workdir / "stack") as stack:
                runs_ms = [run_latency(stack, workdir, events, checkpoint, args.rate, args.latency_seconds,
                                       workers=args.workers) for _ in range(args.repeats)]
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        doc = {"command": " ".join(["python", "benchmarks/stream_throughput.py", *sys.argv[1:]]),
               "reco_env": {k: v for k, v in os.environ.items() if k.startswith("RECO_")},
               "p50_ms": statistics.median(r["p50"] for r in runs_ms),
               "p99_ms": statistics.median(r["p99"] for r in runs_ms), "runs": runs_ms}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"latency at {args.rate:.0f} events/s, medians of {args.repeats}: "
              f"p50 {doc['p50_ms']:.1f} ms, p99 {doc['p99_ms']:.1f} ms; wrote {args.out}")
        return 0

    if args.scale_out:
        return scale_out(args)
    checkpoints = {
        "beauty": train_checkpoint(BEAUTY, "sequences", args.beauty_checkpoint, args.train_minutes),
        "taobao": train_checkpoint(TAOBAO, "taobao", ROOT / "runs" / "taobao-h64", 1.0),
    }
    datasets = {"beauty": load_beauty(args.beauty_users),
                "taobao": order_for_replay([e for e in read_log(TAOBAO, "taobao") if isinstance(e, Event)])}
    workdir = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    if args.quick:
        with embedded_stack(workdir / "stack") as stack:
            if args.workers:
                settings = fresh_settings(stack, workdir, model_path=str(checkpoints[args.quick]), max_batch=256)
                got = asyncio.run(group_rate(stack, settings, datasets[args.quick], args.workers, workdir,
                                             args.max_seconds))
                rate = got["events_per_s"]
                print(f"processed by each worker: {got['processed_by_worker']}")
            else:
                rate = run_path(stack, workdir, "micro_batched", datasets[args.quick], checkpoints[args.quick],
                                args.max_seconds)
        print(f"{args.quick} micro_batched: {rate:,.0f} events/s")
        return 0
    result: dict = {"command": " ".join(["python", "benchmarks/stream_throughput.py", *sys.argv[1:]]),
                    "machine": {"cpus": 2, "python": platform.python_version()},
                    "datasets": {k: len(v) for k, v in datasets.items()}, "paths": {}}
    try:
        with embedded_stack(workdir / "stack") as stack:
            for name, events in datasets.items():
                runs: dict[str, list[float]] = {path: [] for path in PATHS}
                for r in range(args.repeats):
                    for path in PATHS:  # interleaved, so drift hits every path alike
                        rate = run_path(stack, workdir, path, events, checkpoints[name], args.max_seconds)
                        runs[path].append(rate)
                        print(f"{name:7s} {path:14s} run {r}: {rate:10,.0f} events/s", flush=True)
                result["paths"][name] = {path: {"events_per_s": statistics.median(v), "runs": v}
                                         for path, v in runs.items()}
            beauty = datasets["beauty"]
            result["latency_ms"] = run_latency(stack, workdir, beauty, checkpoints["beauty"], args.rate,
                                               args.latency_seconds)
            result["offered_events_per_s"] = args.rate
            if not args.skip_ablations:
                result["ablations"] = ablations(stack, workdir, beauty, checkpoints["beauty"], args)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for name in datasets:
        r = result["paths"][name]
        r["ratios"] = {
            "micro_batched_over_per_event": r["micro_batched"]["events_per_s"] / r["per_event"]["events_per_s"],
            "micro_batched_over_faust_noop": r["micro_batched"]["events_per_s"] / r["faust_noop"]["events_per_s"],
            "faust_noop_over_aiokafka": r["faust_noop"]["events_per_s"] / r["aiokafka"]["events_per_s"],
        }
    # the headline figures are Beauty's (full 12k catalogue)
    for path in PATHS:
        result[path] = {"events_per_s": result["paths"]["beauty"][path]["events_per_s"]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    return 0


def scale_out(args: argparse.Namespace) -> int:
    """Throughput and latency with 1..N worker processes in one group, side by side on the same stack."""
    checkpoint = train_checkpoint(BEAUTY, "sequences", args.beauty_checkpoint, args.train_minutes)
    events = load_beauty(args.beauty_users)
    runs: dict[int, list[dict]] = {n: [] for n in args.scale_out}
    workdir = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    try:
        with embedded_stack(workdir / "stack") as stack:
            for r in range(args.repeats):
                for n in args.scale_out:  # alternating, so drift hits every group size alike
                    settings = fresh_settings(stack, workdir, model_path=str(checkpoint))
                    got = asyncio.run(group_rate(stack, settings, events, n, workdir, args.max_seconds))
                    lat = run_latency(stack, workdir, events, checkpoint, args.rate, args.latency_seconds, workers=n)
                    runs[n].append({**got, "latency_ms": lat})
                    print(f"run {r} workers {n}: {got['events_per_s']:,.0f} events/s, at {args.rate:g} events/s "
                          f"p50 {lat['p50']:.0f} ms, p99 {lat['p99']:.0f} ms (by worker {lat['processed_by_worker']})",
                          flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    summary = {n: {"events_per_s": statistics.median(x["events_per_s"] for x in rs),
                   "p50_ms": statistics.median(x["latency_ms"]["p50"] for x in rs),
                   "p99_ms": statistics.median(x["latency_ms"]["p99"] for x in rs)} for n, rs in runs.items()}
    base = summary[args.scale_out[0]]["events_per_s"]
    doc = {"command": " ".join(["python", "benchmarks/stream_throughput.py", *sys.argv[1:]]),
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
           "events": len(events), "offered_events_per_s": args.rate, "summary": summary,
           "throughput_ratio_over_first": {n: v["events_per_s"] / base for n, v in summary.items()}, "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\n| workers | events/s (median of {args.repeats}) | ratio | p50 ms at {args.rate:g}/s | p99 ms |")
    print("|---|---|---|---|---|")
    for n, v in summary.items():
        print(f"| {n} | {v['events_per_s']:,.0f} | {v['events_per_s'] / base:.2f} | {v['p50_ms']:,.0f} "
              f"| {v['p99_ms']:,.0f} |")
    print(f"wrote {args.out}")
    return 0


def ablations(stack, workdir, events, checkpoint, args) -> list[dict]:
    variants = [dict(model_dtype="fp32", model_compile=False, max_batch=256),
                dict(model_dtype="bf16", model_compile=False, max_batch=256),
                dict(model_dtype="fp32", model_compile=True, max_batch=256),
                dict(model_dtype="bf16", model_compile=True, max_batch=256),
                dict(model_dtype="fp32", model_compile=False, max_batch=32),
                dict(model_dtype="fp32", model_compile=False, max_batch=64)]
    out = []
    for v in variants:
        settings = fresh_settings(stack, workdir, model_path=str(checkpoint), **v)
        asyncio.run(produce_backlog(stack, settings, events))
        rate = asyncio.run(worker_rate(stack, settings, len(events), workdir, False, args.max_seconds))
        lat = run_latency(stack, workdir, events, checkpoint, args.rate, args.latency_seconds / 2, **v)
        out.append({**v, "events_per_s": rate, "p50_ms": lat["p50"], "p99_ms": lat["p99"]})
        print(f"ablation {v}: {rate:,.0f} events/s, p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms", flush=True)
    return out


def print_table(result: dict) -> None:
    print("\n| data | path | events/s (median) | runs |")
    print("|---|---|---|---|")
    for name, paths in result["paths"].items():
        for path in PATHS:
            runs = ", ".join(f"{x:,.0f}" for x in paths[path]["runs"])
            print(f"| {name} | {path} | {paths[path]['events_per_s']:,.0f} | {runs} |")
        ratios = paths["ratios"]
        print(f"| {name} | micro-batched / per-event | {ratios['micro_batched_over_per_event']:.1f}x | |")
        print(f"| {name} | micro-batched / no-op Faust | {ratios['micro_batched_over_faust_noop']:.2f} | |")
    lat = result["latency_ms"]
    print(f"\nevent-to-Redis latency at {lat['offered_events_per_s']:.0f} events/s offered: "
          f"p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms")
    if "ablations" in result:
        print("\n| dtype | compile | max batch | events/s | p50 ms | p99 ms |")
        print("|---|---|---|---|---|---|")
        for a in result["ablations"]:
            print(f"| {a['model_dtype']} | {a['model_compile']} | {a['max_batch']} | {a['events_per_s']:,.0f} | "
                  f"{a['p50_ms']:.1f} | {a['p99_ms']:.1f} |")


if __name__ == "__main__":
    raise SystemExit(main())
