"""Online learning, prequential: does learning from the stream beat a frozen model?

Per data set, the log is put in time order and cut by time: the first
``--pretrain-fraction`` (60 %) pre-trains a fresh ensemble (transformer +
co-visitation + popularity, ``models.pipeline.train_all``, hidden 64, one
thread, at most 10 minutes); the rest is streamed test-then-train
(``models.evaluation.prequential``: every micro-batch of events is first
ranked, each user's top-10 against the item they then touched, and only then
learnt from) four times from that same start:

- ``frozen``: nothing learns, neither weights nor co-visitation/popularity
  counts nor the blend (a model that does not learn). Users' histories still
  advance: they are data, not model state. Items new to the stream are
  unknown to it;
- ``stats_only``: co-visitation and popularity observe every event, new
  items join the vocabulary, and the blend weights are re-fitted on fresh
  samples (``OnlineConfig(train_sequence=False)``; ``models.online.blend``);
- ``online``: that plus fine-tuning of the transformer (``OnlineLearner``:
  small learning rate, new samples mixed with a replay buffer seeded with
  the pre-training log);
- ``online_fixed_blend``: ``online`` with the pre-trained blend weights kept
  (``--blend-every 0`` for every variant turns the re-fit off).

and, with ``--retrain-at F`` (default 0.8), the usual alternative to
learning online, a periodic batch retrain:

- ``retrained``: frozen until the ``F`` point of the log (by time), then a
  fresh ensemble pre-trained the same way on everything before that point
  serves the rest, frozen. The table also reports every variant over that
  last part alone, where the retrained model has seen all the data the online
  learner has.

Gains over ``frozen`` come with a 95% paired bootstrap interval over scored
events (``models.evaluation.prequential.gain_interval``).

Event time. Taobao events carry Unix times. Amazon Beauty sequences carry
only each user's own order, so ``models.data.timeline.stagger_users`` defines
time: every user starts at a random moment (seeded) in a ``--horizon-days``
window and then touches one item a day, in their own order. The streamed
part therefore holds mostly users who arrive after the cut (and the tails of
the few who straddle it), and items first reached there are new items.

After ``train_all`` (which holds out each user's last two events for early
stopping and blend weights), co-visitation and popularity are recounted on
every pre-training event, since all of them lie before the stream. Scored
events: those whose item is not already in the user's latest 50 (repeats can
never be a hit, as the top-10 excludes history); unknown items count as misses.

``--stream-end F`` streams only up to fraction F of the log (validation: tune on 0.4 to 0.6, test on 0.6 to 1).

    python benchmarks/online_learning.py            # both data sets: two ~12-minute pre-trainings, then ~30 minutes
    python benchmarks/online_learning.py --quick    # 4,000 Beauty users, 1 minute of pre-training
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.data.eventlog import read_events  # noqa: E402
from models.data.events import Event  # noqa: E402
from models.data.timeline import split_by_time, stagger_users  # noqa: E402
from models.ensemble import Ensemble  # noqa: E402
from models.evaluation.prequential import (  # noqa: E402
    PrequentialResult,
    count_edges,
    gain_interval,
    metrics_at,
    prequential,
)
from models.history import user_histories  # noqa: E402
from models.online.learner import OnlineConfig, OnlineLearner  # noqa: E402
from models.online.samples import log_samples  # noqa: E402
from models.pipeline import PipelineConfig, replay_counts, train_all  # noqa: E402
from models.scorers import CovisitationConfig, CovisitationScorer, PopularityConfig, PopularityScorer  # noqa: E402
from models.sequence.config import SeqConfig, TrainConfig  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
BEAUTY = ROOT / "data" / "amazon_beauty" / "sequences.txt"
TAOBAO = ROOT / "data" / "sample" / "taobao_user_behavior.csv"
DAY_S = 86_400.0
NO_DECAY_S = 1e9  # half-life for Beauty: staggered times carry no trends to decay
VARIANTS = ("frozen", "stats_only", "online", "online_fixed_blend")
RETRAINED = "retrained"


def load_events(name: str, args: argparse.Namespace) -> tuple[list[Event], dict[str, Any]]:
    """The data set's events in time order, and how they were timed."""
    if name == "beauty":
        events = read_events(BEAUTY, "sequences")
        if args.beauty_users:
            users = set(list(dict.fromkeys(e.user_id for e in events))[: args.beauty_users])
            events = [e for e in events if e.user_id in users]
        events = stagger_users(events, horizon_s=args.horizon_days * DAY_S, seed=args.seed)
        timing = {"log": str(BEAUTY.relative_to(ROOT)), "format": "sequences",
                  "time": f"stagger_users: user start uniform in {args.horizon_days:g} days (seed {args.seed}), "
                          "then one item per day in the user's order"}
    else:
        events = sorted(read_events(TAOBAO, "taobao"), key=lambda e: e.ts)
        timing = {"log": str(TAOBAO.relative_to(ROOT)), "format": "taobao", "time": "the log's Unix times"}
    return events, timing


def cut(events: list[Event], start: float, end: float) -> tuple[list[Event], list[Event]]:
    """The first ``start`` of the log by time, and the events from there up to fraction ``end`` (``split_by_time``)."""
    pre, _ = split_by_time(events, start)
    upto, _ = split_by_time(events, end)
    return pre, upto[len(pre):]


def pipeline_config(name: str, args: argparse.Namespace) -> PipelineConfig:
    half_life = NO_DECAY_S if name == "beauty" else 7 * DAY_S
    return PipelineConfig(
        scorers=("sequence", "covisitation", "popularity"),
        seq=SeqConfig(hidden=64),
        train=TrainConfig(max_seconds=args.pretrain_minutes * 60.0, threads=1, seed=args.seed, device=args.device),
        popularity=PopularityConfig(half_life_s=half_life),
        covisitation=replace(CovisitationConfig(), half_life_s=half_life),
    )


def recount(ensemble: Ensemble, events: list[Event]) -> None:
    """Rebuild co-visitation and popularity from every event (``train_all`` held out users' last two)."""
    fresh = {}
    for name, scorer in ensemble.scorers.items():
        if isinstance(scorer, (CovisitationScorer, PopularityScorer)):
            fresh[name] = type(scorer)(ensemble.vocab, scorer.config)
    replay_counts(list(fresh.values()), events, holdout=0)
    ensemble.scorers.update(fresh)


def _digest(events: list[Event], config: PipelineConfig) -> str:
    """sha256 of the pre-training events (user, item, type, time) and the pipeline settings."""
    h = hashlib.sha256(json.dumps(asdict(config), sort_keys=True, default=str).encode())
    for e in events:
        h.update(f"{e.user_id}\t{e.item_id}\t{e.event_type}\t{e.ts!r}\n".encode())
    return h.hexdigest()


def pretrain(name: str, pre: list[Event], args: argparse.Namespace, fraction: float) -> tuple[Ensemble, dict[str, Any]]:
    """A fresh ensemble on the first ``fraction`` of the log (``pre``).

    Cached under ``--cache`` as ``<name>-pre<fraction>`` when given: the
    retrained variant at 0.8 and a run pre-trained on 0.8 share one. The
    cache records a digest of the events it was trained on and of its
    settings, and a run whose own differ refuses it: a cache made with
    another ``--seed`` (another timeline) or by ``--quick`` would otherwise
    have seen this run's stream. (Caches made before 2026-12-07 carry no
    digest: they are used, with a warning.)
    """
    tag = f"-pre{fraction:g}"
    cached = args.cache / f"{name}{tag}" if args.cache else None
    config = pipeline_config(name, args)
    digest = _digest(pre, config)
    if cached is not None and (cached / "meta.json").is_file():
        ensemble, meta = Ensemble.load(cached)
        made_from = meta["pretrain"].get("digest")
        if made_from is None:
            print(f"{name}{tag}: WARNING: {cached} records no digest of what it was trained on; "
                  "check that it was made with this run's settings", flush=True)
        elif made_from != digest:
            raise SystemExit(f"{cached} was pre-trained on other events or settings than this run's "
                             f"(digest {made_from[:12]} against {digest[:12]}): use another --cache")
        print(f"{name}{tag}: pre-trained ensemble loaded from {cached}", flush=True)
        return ensemble, meta["pretrain"]
    trained = train_all(pre, config, progress=False)
    recount(trained.ensemble, pre)
    info = {"seconds": round(trained.info["train_seconds"], 1), "weights": trained.ensemble.weights,
            "best_epoch": trained.info.get("sequence_train", {}).get("best_epoch"),
            "epochs": len(trained.info.get("sequence_train", {}).get("losses") or ()),  # run, to the cap or stop
            "config": asdict(config), "digest": digest}
    if cached is not None:
        trained.ensemble.save(cached, extra={"pretrain": info})
    print(f"{name}{tag}: pre-trained in {info['seconds']:.0f} s, weights {info['weights']}", flush=True)
    return trained.ensemble, info


def stream(
    variant: str, ensemble: Ensemble, pre: list[Event], rest: list[Event], config: OnlineConfig, args: argparse.Namespace
) -> tuple[PrequentialResult, dict[str, Any]]:
    """One prequential pass over ``rest`` from the pre-trained state; the result and the final blend."""
    histories = user_histories(pre)
    if variant == "frozen":
        result = prequential(rest, lambda: ensemble, histories=histories, batch_size=args.stream_batch)
        return result, {"weights": ensemble.weights}
    torch.manual_seed(args.torch_seed)  # fine-tuning's dropout draws from torch's global generator
    if variant == "stats_only":
        config = replace(config, train_sequence=False)
    if variant == "online_fixed_blend":
        config = replace(config, blend=replace(config.blend, every=0))
    learner = OnlineLearner(ensemble, config)
    if args.replay_seed:
        learner.remember(log_samples(pre))
    result = prequential(rest, lambda: learner.ensemble, learn=learner.learn, histories=histories,
                         batch_size=args.stream_batch)
    fits = learner.blend.fits
    return result, {"weights": learner.ensemble.weights, "blend_fits": len(fits),
                    "blend_moves": sum(bool(f["moved"]) for f in fits)}


def retrained(name: str, events: list[Event], frozen: PrequentialResult,
              args: argparse.Namespace) -> tuple[PrequentialResult, int, dict[str, Any]]:
    """The ``retrained`` variant over the whole stream, the stream index where its retrained part starts, and
    its pre-training's record (under the same ``--pretrain-minutes`` cap, which at 0.8 allows fewer epochs).

    Up to the retrain point it is the frozen run (the same model); after it, a
    fresh pre-training on everything before that point serves, frozen.
    """
    pre, rest = cut(events, args.retrain_at, args.stream_end)
    ensemble, info = pretrain(name, pre, args, args.retrain_at)
    after = prequential(rest, lambda: ensemble, histories=user_histories(pre), batch_size=args.stream_batch)
    start = len(frozen.ts) - len(rest)  # the stream is sorted, so the part after the point is its suffix
    ranks = np.concatenate([frozen.ranks[:start], after.ranks])
    scored = np.concatenate([frozen.scored[:start], after.scored])
    return PrequentialResult(frozen.ts, scored, ranks, after.seconds, after.learn_calls), start, info


def learner_cost(ensemble: Ensemble, pre: list[Event], rest: list[Event], config: OnlineConfig,
                 sizes: list[int], repeats: int, replay_seed: bool) -> dict[str, Any]:
    """Seconds per ``learn`` call of N samples, of ``candidate()``, and of a checkpoint save/load."""
    samples = log_samples(rest, histories=user_histories(pre))
    learner = OnlineLearner(ensemble, config)
    if replay_seed:
        learner.remember(log_samples(pre))
    out: dict[str, Any] = {"learn": []}
    pos = 0
    for n in sizes:
        secs = []
        for _ in range(repeats):
            batch = samples[pos : pos + n]
            pos = (pos + n) % max(1, len(samples) - n)
            secs.append(learner.learn(batch)["seconds"])
        med = statistics.median(secs)
        out["learn"].append({"samples": n, "median_s": round(med, 4), "s_per_1k_samples": round(med / n * 1000, 3)})
    t0 = time.perf_counter()
    candidate = learner.candidate()
    out["candidate_s"] = round(time.perf_counter() - t0, 4)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        candidate.save(tmp)
        out["save_s"] = round(time.perf_counter() - t0, 4)
        t0 = time.perf_counter()
        Ensemble.load(tmp)
        out["load_s"] = round(time.perf_counter() - t0, 4)
        out["checkpoint_mb"] = round(sum(p.stat().st_size for p in Path(tmp).iterdir()) / 2**20, 1)
    t0 = time.perf_counter()
    OnlineLearner.evaluate(candidate, samples[: config.eval_slice])
    out["evaluate_s"] = round(time.perf_counter() - t0, 4)
    out["evaluate_samples"] = min(config.eval_slice, len(samples))
    return out


def run_dataset(name: str, args: argparse.Namespace, config: OnlineConfig) -> dict[str, Any]:
    events, timing = load_events(name, args)
    pre, rest = cut(events, args.pretrain_fraction, args.stream_end)
    new_items = len({e.item_id for e in rest} - {e.item_id for e in pre})
    print(f"{name}: {len(events)} events, pre-training on {len(pre)}, streaming {len(rest)} "
          f"({new_items} items new to the stream)", flush=True)
    ensemble, info = pretrain(name, pre, args, args.pretrain_fraction)
    out: dict[str, Any] = {"data": {**timing, "events": len(events), "pretrain_events": len(pre),
                                    "stream_events": len(rest), "new_items_in_stream": new_items,
                                    "pretrain_fraction": args.pretrain_fraction, "stream_end": args.stream_end},
                           "pretrain": {k: v for k, v in info.items() if k != "config"}}
    results: dict[str, PrequentialResult] = {}
    for variant in args.variants:
        t0 = time.perf_counter()
        results[variant], blend = stream(variant, ensemble, pre, rest, config, args)
        m = results[variant].metrics(10)
        out[variant] = {"ndcg@10": round(m["ndcg@10"], 5), "hr@10": round(m["hr@10"], 5), "scored": m["n"],
                        "seconds": round(time.perf_counter() - t0, 1),
                        "learn_seconds": round(results[variant].seconds["learn"], 1), "blend": blend}
        print(f"{name}: {variant:10} NDCG@10 {m['ndcg@10']:.4f}  HR@10 {m['hr@10']:.4f}  "
              f"({m['n']} scored, {out[variant]['seconds']:.0f} s)", flush=True)
    if args.pretrain_fraction < args.retrain_at < args.stream_end and "frozen" in results:
        results[RETRAINED], tail_from, info = retrained(name, events, results["frozen"], args)
        m = results[RETRAINED].metrics(10)
        out[RETRAINED] = {"ndcg@10": round(m["ndcg@10"], 5), "hr@10": round(m["hr@10"], 5), "scored": m["n"],
                          "retrain_at": args.retrain_at,
                          "pretrain": {k: v for k, v in info.items() if k not in ("config", "digest")}}
        print(f"{name}: {RETRAINED:10} NDCG@10 {m['ndcg@10']:.4f}  HR@10 {m['hr@10']:.4f}", flush=True)
        tail = np.arange(len(rest)) >= tail_from
        out["after_retrain"] = {v: {k: (round(x, 5) if isinstance(x, float) else x)
                                    for k, x in metrics_at(r.ranks[tail & r.scored], 10).items()}
                                for v, r in results.items()}
        base_tail = out["after_retrain"]["frozen"]["ndcg@10"]
        for v, row in out["after_retrain"].items():
            row["gain_vs_frozen"] = round(row["ndcg@10"] / base_tail - 1, 4) if base_tail and v != "frozen" else None
    if "online" in results:
        out["learn_s_per_1k_samples"] = round(results["online"].seconds["learn"] / len(rest) * 1000, 3)
    if "frozen" in results:
        base = out["frozen"]["ndcg@10"]
        out["ndcg_gain_vs_frozen"] = {v: round(out[v]["ndcg@10"] / base - 1, 4) if base else None
                                      for v in results if v != "frozen"}
        out["ndcg_gain_interval_95"] = {v: [round(x, 4) for x in gain_interval(results["frozen"], r, seed=args.seed)]
                                        for v, r in results.items() if v != "frozen"}
        users = np.asarray([e.user_id for e in rest])  # whole users resampled: the interval to quote
        out["ndcg_gain_interval_95_by_user"] = {
            v: [round(x, 4) for x in gain_interval(results["frozen"], r, seed=args.seed, groups=users)]
            for v, r in results.items() if v != "frozen"}
    some = next(iter(results.values()))
    edges = count_edges(some.ts, args.windows)
    out["windows"] = {v: [{k: (round(x, 5) if isinstance(x, float) else x) for k, x in w.items()}
                          for w in r.windows(edges, 10)] for v, r in results.items()}
    if args.cost_sizes:
        out["learner_cost"] = learner_cost(ensemble, pre, rest, config, args.cost_sizes, args.cost_repeats,
                                           args.replay_seed)
        print(f"{name}: learner cost {out['learner_cost']}", flush=True)
    return out


def attach_swap_lag(doc: dict[str, Any], source: Path) -> None:
    """Copy the swap lag measured by ``benchmarks/swap_lag.py`` (Beauty, worker + trainer) into ``doc``.

    It is measured there, on the embedded stack, not here: the lag is set by
    the sample hold-back, the trainer's cadence and the checkpoint load, not by
    the data set, so Taobao gets ``None``.
    """
    if not source.is_file():
        return
    measured = json.loads(source.read_text())
    lag = measured.get("swap_lag_s") or {}
    doc["swap_lag"] = {"source": source.relative_to(ROOT).as_posix(), "command": measured.get("command"),
                       "p50_s": lag.get("p50"), "max_s": lag.get("max"), "n": lag.get("n")}
    for name in ("beauty", "taobao"):
        if name in doc:
            doc[name]["swap_lag_s"] = lag.get("p50") if name == "beauty" else None


def plot(doc: dict[str, Any], datasets: list[str], path: Path) -> None:
    """NDCG@10 per time window, one panel per data set (needs the ``bench`` extra: matplotlib)."""
    try:
        import matplotlib
    except ImportError:
        print(f"no plot written: matplotlib is missing (pip install -e '.[bench]'); {path.stem}.json is complete")
        return

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4), squeeze=False)
    for ax, name in zip(axes[0], datasets):
        windows = doc[name]["windows"]
        t0 = next(iter(windows.values()))[0]["start_ts"]
        for variant, rows in windows.items():
            x = [(w["end_ts"] - t0) / DAY_S for w in rows]
            ax.plot(x, [w["ndcg@10"] for w in rows], marker="o", label=variant)
        ax.set_title(f"{name}: prequential NDCG@10 per window")
        ax.set_xlabel("days since stream start (window end; windows of equal event counts)")
        ax.set_ylabel("NDCG@10")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def markdown(doc: dict[str, Any], datasets: list[str]) -> str:
    lines = [f"`{doc['command']}`", "", "Whole streamed part:", "",
             "| data set | variant | NDCG@10 | HR@10 | scored events | NDCG vs frozen | 95% interval |",
             "|---|---|---|---|---|---|---|"]
    for name in datasets:
        d = doc[name]
        for v in (*VARIANTS, RETRAINED):
            if v in d:
                gain = d.get("ndcg_gain_vs_frozen", {}).get(v)
                low, high = d.get("ndcg_gain_interval_95", {}).get(v, (None, None))
                lines.append(f"| {name} | {v} | {d[v]['ndcg@10']:.4f} | {d[v]['hr@10']:.4f} | {d[v]['scored']} | "
                             + (f"{gain:+.1%} | {low:+.1%} to {high:+.1%} |" if gain is not None else "- | - |"))
    if any("after_retrain" in doc[name] for name in datasets):
        lines += ["", "After the retrain point only (the retrained model has seen everything before it):", "",
                  "| data set | variant | NDCG@10 | HR@10 | scored events | NDCG vs frozen |", "|---|---|---|---|---|---|"]
        for name in datasets:
            for v, row in doc[name].get("after_retrain", {}).items():
                gain = row.get("gain_vs_frozen")
                lines.append(f"| {name} | {v} | {row['ndcg@10']:.4f} | {row['hr@10']:.4f} | {row['n']} | "
                             + (f"{gain:+.1%} |" if gain is not None else "- |"))
    lines += ["", "| data set | learn() samples | median s | s per 1k samples |", "|---|---|---|---|"]
    for name in datasets:
        for row in doc[name].get("learner_cost", {}).get("learn", []):
            lines.append(f"| {name} | {row['samples']} | {row['median_s']:.3f} | {row['s_per_1k_samples']:.3f} |")
    lines += ["", "| data set | candidate() s | save s | load s | checkpoint MB | evaluate s (samples) |",
              "|---|---|---|---|---|---|"]
    for name in datasets:
        c = doc[name].get("learner_cost")
        if c:
            lines.append(f"| {name} | {c['candidate_s']:.3f} | {c['save_s']:.3f} | {c['load_s']:.3f} | "
                         f"{c['checkpoint_mb']} | {c['evaluate_s']:.3f} ({c['evaluate_samples']}) |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["beauty", "taobao"], choices=["beauty", "taobao"])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--quick", action="store_true", help="4,000 Beauty users, 1 minute of pre-training, no cost runs")
    p.add_argument("--beauty-users", type=int, default=0, help="only the first N Beauty users (0: all)")
    p.add_argument("--horizon-days", type=float, default=365.0, help="Beauty users' start times spread over this")
    p.add_argument("--pretrain-fraction", type=float, default=0.6, help="share of events (by time) to pre-train on")
    p.add_argument("--stream-end", type=float, default=1.0,
                   help="stream only up to this share of events (by time), e.g. 0.6 for a validation split")
    p.add_argument("--retrain-at", type=float, default=0.8,
                   help="add the 'retrained' variant: a fresh pre-training at this point of the log "
                        "(0, or not before --stream-end: off)")
    p.add_argument("--pretrain-minutes", type=float, default=10.0,
                   help="cap on the transformer's pre-training (fp32 on this 2-core AVX2 CPU: about 20 epochs at the 60%% cut)")
    p.add_argument("--cache", type=Path, default=None,
                   help="directory for pre-trained ensembles: reused if present (delete to retrain)")
    p.add_argument("--stream-batch", type=int, default=256, help="events per micro-batch (tested, then learnt)")
    p.add_argument("--lr", type=float, default=OnlineConfig.lr)
    p.add_argument("--steps-per-batch", type=int, default=OnlineConfig.steps_per_batch)
    p.add_argument("--batch-size", type=int, default=OnlineConfig.batch_size, help="new samples per Adam step")
    p.add_argument("--replay-fraction", type=float, default=OnlineConfig.replay_fraction)
    p.add_argument("--replay-size", type=int, default=OnlineConfig.replay_size)
    p.add_argument("--blend-per-batch", type=int, default=OnlineConfig.blend.per_batch,
                   help="samples of every 256 offered (keep_of) that the blend re-fit keeps")
    p.add_argument("--blend-window", type=int, default=OnlineConfig.blend.window,
                   help="latest kept samples a blend re-fit uses")
    p.add_argument("--blend-every", type=int, default=OnlineConfig.blend.every,
                   help="re-fit the blend weights every N fresh samples (0: keep the pre-trained blend)")
    p.add_argument("--no-replay-seed", dest="replay_seed", action="store_false",
                   help="start the replay buffer empty, as the trainer process does (default: seeded with the "
                        "pre-training log)")
    p.add_argument("--windows", type=int, default=10, help="time windows (equal event counts) in the plot")
    p.add_argument("--cost-sizes", type=int, nargs="*", default=[64, 256, 1024], help="learn() sizes to time")
    p.add_argument("--cost-repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="where the sequence model computes: cpu (the default here, for results comparable across hosts), auto (the GPU when one exists), cuda")
    p.add_argument("--torch-seed", type=int, default=0,
                   help="seeds torch before each learning variant (dropout); before 2026-12-07 it was not seeded")
    p.add_argument("--out", type=Path, default=RESULTS / "online_learning.json")
    args = p.parse_args(argv)
    if not args.pretrain_fraction < args.stream_end <= 1.0:
        p.error("--stream-end must lie after --pretrain-fraction and at most 1")
    if args.quick:
        args.beauty_users = args.beauty_users or 4000
        args.pretrain_minutes = min(args.pretrain_minutes, 1.0)
        args.cost_sizes = []
    torch.set_num_threads(1)
    config = OnlineConfig(lr=args.lr, steps_per_batch=args.steps_per_batch, batch_size=args.batch_size,
                          replay_fraction=args.replay_fraction, replay_size=args.replay_size, seed=args.seed,
                          device=args.device,
                          blend=replace(OnlineConfig.blend, every=args.blend_every, per_batch=args.blend_per_batch,
                                        window=args.blend_window))
    start = time.perf_counter()
    doc: dict[str, Any] = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *(sys.argv[1:] if argv is None else argv)]),
        "machine": platform.processor() or platform.machine(), "torch": torch.__version__, "threads": 1,
        "online_config": asdict(config), "stream_batch": args.stream_batch, "quick": args.quick,
        "replay_seeded_with_pretraining_log": args.replay_seed,
    }
    for name in args.datasets:
        doc[name] = run_dataset(name, args, config)
    doc["total_seconds"] = round(time.perf_counter() - start, 1)
    attach_swap_lag(doc, RESULTS / "swap_lag.json")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    table = markdown(doc, args.datasets)
    args.out.with_suffix(".md").write_text(table)
    plot(doc, args.datasets, args.out.with_suffix(".png"))
    print(table)
    print(f"wrote {args.out} (+ .md, .png) in {doc['total_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
