"""The trainer's decisions: learn, hold out, evaluate, promote, and roll back, on plain sample lists.

``OnlineTrainer.on_samples`` is everything the trainer process does with a
batch of samples read from the training-samples topic; it returns the model
store entries (promotions, rollbacks) the process then announces. No Kafka
here, so tests and benchmarks drive it directly.

- The newest ``eval_slice`` samples are held out: not learnt yet, so a
  candidate and the serving version are compared on samples neither has seen.
  Samples leave the hold-out (oldest first) to be learnt as new ones arrive,
  ``batch_size`` at a time (the consumer's batches are often far smaller, and
  each took an Adam step of its own), and all of them before an evaluation.
- During a probation each fresh sample is ranked by the serving version on
  arrival; the serving weights never change, so that rank holds until
  another version serves, and is also the serving side of the next
  evaluation. An evaluation ranks the candidate, and the serving version only
  on held-out samples it has not ranked yet. Versions that rank many samples
  (the serving one, and the previous one on probation) rank through their
  serving form (``LinearBlend``: the same ranks, a fraction of the work),
  built once per version. The learner's blend re-fit gets the serving
  version's candidate scores of the fresh samples it keeps (``per_batch`` of
  every ``keep_of``; ``models.online.blend``), taken on arrival, so those
  samples are not scored again when they are learnt; the scores join the
  re-fit's window only as their samples leave the hold-out, so no candidate
  is judged on samples its blend weights were fitted on.
- Every ``promote_every`` learnt samples (or ``promote_every_s`` seconds) the
  learner's candidate is evaluated against the serving version on the
  hold-out and promoted only if it is not worse (``should_promote``).
- After a promotion the new version is on probation: on the next
  ``rollback_window`` fresh samples (scored before anything learns them) both
  it and the version it replaced are ranked; if the new one's NDCG@10 is
  lower by more than ``rollback_margin`` (relative), the store rolls back and
  learning restarts from the old weights. No candidate is evaluated while a
  version is on probation (learning goes on), so every promoted version gets
  its verdict: promotions come at most every ``rollback_window`` samples.
  ``rollback_window`` = 0: no probation and no automatic rollback.
- Where the samples come from a log (a Kafka topic), each one's position
  (partition, offset) can come with it. The trainer keeps, per partition, the
  offset after the last sample it learnt, and every promotion records them
  (``sample_offsets``): the version holds exactly the samples before them. A
  restarted trainer resumes reading there (``resume_offsets``), so what was
  learnt but not yet promoted is learnt again rather than lost. A partition
  is recorded from the first sample of it the trainer reads (held out or
  learnt), so one a version has no offset for had nothing of it learnt, and a
  restarted trainer reads it from its beginning; the pre-trained base
  (``ensure_base``) records none, so while it serves every partition is read
  from its beginning (``stream_app.trainer.ResumeAt``). Within one
  process the offsets only move forward: after a rollback the samples the
  rolled-back version learnt are not learnt again (a restart after it does
  re-read them, from the restored version's offsets).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.checkpoint import CheckpointError
from models.ensemble import Ensemble
from models.evaluation.prequential import is_scored, metrics_at, rank_samples
from models.linear_blend import LinearBlend, serving_form
from models.model_store import ModelStore, StoreChanged
from models.online.learner import OnlineConfig, OnlineLearner, should_promote
from models.online.samples import TrainingSample

log = logging.getLogger(__name__)
# what ``OnlineTrainer.counts`` counts: samples taken and learnt (again after a rollback), candidates promoted or
# not, automatic rollbacks, and those due that the store refused (the worse version serves on)
COUNTS = ("samples_taken", "samples_redelivered", "samples_learnt", "promoted", "not_promoted", "rolled_back",
          "rollback_failed")

Position = tuple[int, int]  # (partition, offset) of a sample in the training-samples topic


@dataclass
class Held:
    """A held-out sample: when it entered the topic, where it is there, and ``ranked_by``'s rank of it
    (None for a sample no ranking counts, its target already in its history; ``ranked_by`` "": not ranked)."""

    sample: TrainingSample
    kafka_ms: int
    position: Position | None
    rank: int | None
    ranked_by: str
    blend_fed: bool = False  # its candidate scores were taken on arrival (by the serving version)
    blend_scores: Any = None  # those of its arrival batch, on its latest sample: kept for the re-fit as it leaves


@dataclass(frozen=True)
class TrainerConfig:
    """When to evaluate, promote and roll back (see the module docstring)."""

    eval_slice: int = 512
    promote_every: int = 2_000
    promote_every_s: float = 30.0
    promote_tolerance: float = 0.0
    rollback_window: int = 2_000  # 0: no probation, no automatic rollback
    rollback_margin: float = 0.1
    keep_versions: int = 0  # after each promotion, prune the store to this many versions (0: keep all)
    log_max_lines: int = 0  # ...and archive the store's log once longer, keeping those versions (0: never)

    def __post_init__(self) -> None:
        if self.eval_slice < 1 or self.promote_every < 1 or self.promote_every_s <= 0 or self.rollback_window < 0:
            raise ValueError("eval_slice and promote_every (RECO_TRAINER_EVAL_SLICE, RECO_TRAINER_PROMOTE_EVERY) must "
                             "be at least 1 (with no hold-out no candidate is ever promoted), promote_every_s "
                             "positive and rollback_window 0 or more, not "
                             f"{self.eval_slice}, {self.promote_every}, {self.promote_every_s}, {self.rollback_window}")
        if self.keep_versions == 1 or self.keep_versions < 0:
            raise ValueError(f"keep_versions (RECO_MODEL_STORE_KEEP) must be 0 (keep all) or at least 2 (the "
                             f"serving version and one to roll back to), not {self.keep_versions}")
        if self.log_max_lines and not self.keep_versions:
            raise ValueError("keep_versions 0 (RECO_MODEL_STORE_KEEP) keeps every version, so the store's log "
                             "cannot be shortened: set log_max_lines (RECO_MODEL_STORE_LOG_LINES) to 0 as well")
        # a new log is a rotate entry and the kept promotions, plus two lines while a rollback serves
        longest_new_log = self.keep_versions + 3
        if self.log_max_lines < 0 or (self.log_max_lines and self.log_max_lines <= longest_new_log):
            raise ValueError(f"log_max_lines (RECO_MODEL_STORE_LOG_LINES) must be 0 (never archive) or more than "
                             f"the {longest_new_log} lines a new log can start with, not {self.log_max_lines}")


@dataclass
class Probation:
    """A freshly promoted version, compared with the one it replaced on fresh samples."""

    previous: Ensemble
    previous_version: str
    # partition -> the first offset fresh to the promotion: those before it (a restarted trainer reads them
    # again) were its hold-out, on which the new version was chosen, so they would bias the verdict
    fresh_from: dict[int, int] = field(default_factory=dict)
    new_ranks: list[np.ndarray] = field(default_factory=list)
    old_ranks: list[np.ndarray] = field(default_factory=list)

    @property
    def n(self) -> int:
        return sum(len(r) for r in self.new_ranks)


def ensure_base(store: ModelStore, model_path: str) -> dict[str, Any] | None:
    """Put the pre-trained checkpoint in an empty store as its first serving version."""
    if store.current() is not None:
        return None
    if not model_path:
        raise ValueError("the model store is empty and no model_path is set to start from")
    ensemble, meta = Ensemble.load(model_path)
    version = store.save(ensemble, extra={"source": str(model_path), "metrics": meta.get("metrics", {})})
    return store.promote(version, reason="pre-trained base", source=str(model_path))


class OnlineTrainer:
    """Fine-tunes the store's serving version on samples and decides what serves next."""

    def __init__(self, store: ModelStore, learner_config: OnlineConfig = OnlineConfig(),
                 config: TrainerConfig = TrainerConfig(), clock: Callable[[], float] = time.time) -> None:
        version = store.current()
        if version is None:
            raise ValueError(f"model store {store.root} has no serving version (see ensure_base)")
        self.store, self.learner_config, self.config, self.clock = store, learner_config, config, clock
        self.serving_version, self.serving = self._loadable(version)
        self.learner = OnlineLearner(self.serving, learner_config)
        self.holdout: deque[Held] = deque()
        self.sample_offsets: dict[int, int] = self.resume_offsets()  # partition -> offset after the last learnt
        self.next_taken: dict[int, int] = {}  # partition -> offset after the last sample taken (held out or learnt)
        self.since_eval = 0
        self.last_eval = clock()
        self.newest_learnt_ms: int | None = None
        self.promoted_at: float | None = None  # the store's time of this trainer's latest promotion
        self.oldest_unpromoted_ms: int | None = None  # the oldest sample learnt since the last promotion
        # a version the store serves that this trainer could not load
        self._unloadable: str | None = version if version != self.serving_version else None
        self.probation: Probation | None = self._resumed_probation()
        self.evaluations: deque[dict[str, Any]] = deque(maxlen=1_000)  # the latest (a trainer runs for months)
        self.counts: dict[str, int] = dict.fromkeys(COUNTS, 0)  # since this trainer started (its metrics)
        self._forms: dict[int, tuple[Ensemble, LinearBlend | None]] = {}  # id -> (version's ensemble, its form)

    def _loadable(self, current: str) -> tuple[str, Ensemble]:
        """The serving version and its ensemble, or, if it cannot be loaded, the newest version of the serving
        stack that can (logged), as starting workers do; the next candidate may then replace it. Until
        2026-12-07 the trainer stopped, and stopped again at every restart."""
        for version in reversed(self.store.serving_stack() or [current]):
            try:
                return version, self.store.load(version)[0]
            except (CheckpointError, OSError) as exc:
                log.error("model store %s: %s cannot be loaded (%s)", self.store.root, version, exc)
        raise CheckpointError(f"model store {self.store.root}: no version it served can be loaded")

    def _resumed_probation(self) -> Probation | None:
        """A restarted trainer puts the serving version on probation again if a promotion made it serve:
        the log keeps no verdicts, so one that passed is judged again rather than one that had not been
        judged never being judged: on the samples after those its promotion was decided on (``judged_offsets``;
        a restarted trainer reads them again, from ``sample_offsets``, and until 2026-12-07 the verdict began
        with them, a slice on which the new version had just won).
        None when probation is off, the version serves by a rollback or as the base, it or the version it
        replaced cannot be loaded (logged)."""
        entry = self.store.serving_entry()
        stack = self.store.serving_stack()
        if (not self.config.rollback_window or entry is None or entry["action"] != "promote" or len(stack) < 2
                or entry.get("previous") != stack[-2] or self._unloadable is not None):
            return None
        try:
            previous, _ = self.store.load(stack[-2])
        except (CheckpointError, OSError) as exc:
            log.error("%s serves without probation: %s, which it replaced, cannot be loaded (%s)",
                      self.serving_version, stack[-2], exc)
            return None
        log.info("%s is on probation again against %s (a restarted trainer does not know its verdict)",
                 self.serving_version, stack[-2])
        fresh_from = {int(p): int(o) for p, o in (entry.get("judged_offsets") or {}).items()}
        return Probation(previous, stack[-2], fresh_from)

    def resume_offsets(self) -> dict[int, int]:
        """Per partition, the offset after the last sample the serving version learnt.

        A partition missing here (every one for the pre-trained base, promoted
        without ``sample_offsets``) had nothing of it learnt: read it from its beginning.
        """
        for entry in reversed(self.store.log()):
            if entry["action"] == "promote" and entry["version"] == self.serving_version:
                return {int(p): int(o) for p, o in (entry.get("sample_offsets") or {}).items()}
        return {}

    def on_samples(self, samples: Sequence[TrainingSample], kafka_ms: Sequence[int] | None = None,
                   positions: Sequence[Position] | None = None) -> list[dict[str, Any]]:
        """Take a batch of samples in log order; returns store entries.

        ``kafka_ms``: when each entered the topic; ``positions``: each one's
        (partition, offset) in it. A sample at a position already taken is
        dropped (``samples_redelivered``): a consumer group's rebalance hands
        the samples after the last commit over again, and learnt twice, or
        learnt and then held out, they made a candidate look better on its own
        training data.
        """
        self._follow_store()
        if positions is not None:
            samples, kafka_ms, positions = self._drop_taken(samples, kafka_ms, positions)
        self.counts["samples_taken"] += len(samples)
        entries: list[dict[str, Any]] = []
        ranks: list[int | None] = [None] * len(samples)
        ranked_by = ""  # not ranked yet: the next evaluation ranks what is still held out then
        fed = self.probation is not None and bool(samples)  # the blend re-fit gets these samples' scores now
        scores = None
        if fed:
            ranks, ranked_by = self._rank_fresh(samples), self.serving_version
            entries += self._check_probation(*self._fresh_to_probation(samples, ranks, positions))
            if self.learner_config.blend.every:  # the serving version has not learnt them either
                scores = self.learner.blend.features(self.serving, [s for s in samples if is_scored(s)])
        times = kafka_ms if kafka_ms is not None else [s.ts_ms for s in samples]
        for partition, offset in positions or ():
            self.sample_offsets.setdefault(partition, offset)  # a partition's first sample: nothing learnt yet
        where = positions if positions is not None else [None] * len(samples)
        self.holdout.extend(Held(*fields, ranked_by, fed) for fields in zip(samples, times, where, ranks))
        if scores is not None:
            self.holdout[-1].blend_scores = scores
        overflow = len(self.holdout) - self.config.eval_slice  # ready to learn
        pending = self.since_eval + max(overflow, 0)
        due = self.probation is None and (pending >= self.config.promote_every or (
            pending > 0 and self.clock() - self.last_eval >= self.config.promote_every_s))
        if overflow >= self.learner_config.batch_size or (overflow > 0 and due):  # whole steps, or all before an evaluation
            learn = [self.holdout.popleft() for _ in range(overflow)]
            for h in learn:  # out of the hold-out: a re-fit (inside ``learn``) may use them now
                self.learner.blend.keep(h.blend_scores)
            self.learner.learn([h.sample for h in learn], unobserved=[h.sample for h in learn if not h.blend_fed])
            newest, oldest = max(h.kafka_ms for h in learn), min(h.kafka_ms for h in learn)
            self.newest_learnt_ms = max(newest, self.newest_learnt_ms or newest)
            self.oldest_unpromoted_ms = min(oldest, self.oldest_unpromoted_ms or oldest)
            for h in learn:
                if h.position is not None:
                    partition, offset = h.position
                    self.sample_offsets[partition] = max(self.sample_offsets.get(partition, 0), offset + 1)
            self.since_eval += overflow
            self.counts["samples_learnt"] += overflow
        if due:
            entries += self._evaluate()
        return entries

    def _drop_taken(self, samples: Sequence[TrainingSample], kafka_ms: Sequence[int] | None,
                    positions: Sequence[Position]) -> tuple[list[TrainingSample], list[int] | None, list[Position]]:
        """The samples at positions not taken before, and their times and positions; records them as taken."""
        new = [n for n, (partition, offset) in enumerate(positions) if offset >= self.next_taken.get(partition, 0)]
        if len(new) < len(samples):
            self.counts["samples_redelivered"] += len(samples) - len(new)
            log.info("%d samples delivered again (a rebalance) dropped: already taken", len(samples) - len(new))
        for n in new:
            partition, offset = positions[n]
            self.next_taken[partition] = max(self.next_taken.get(partition, 0), offset + 1)
        return ([samples[n] for n in new], None if kafka_ms is None else [kafka_ms[n] for n in new],
                [positions[n] for n in new])

    def _follow_store(self) -> None:
        """Start over from the store's serving version if someone else changed it (``reco rollback``)."""
        current = self.store.current()
        if current is None or current == self.serving_version or current == self._unloadable:
            return
        try:
            serving, _ = self.store.load(current)
        except (CheckpointError, OSError) as exc:
            log.error("the store serves %s, which cannot be loaded (%s): still learning from %s, whose next "
                      "candidate may replace it", current, exc, self.serving_version)
            self._unloadable = current
            return
        self._unloadable = None
        log.warning("the store now serves %s (was %s): learning restarts from it", current, self.serving_version)
        self.serving = serving
        self.serving_version, self.probation = current, None
        self._restart_learning(self.serving)

    def _rank_fresh(self, samples: Sequence[TrainingSample]) -> list[int | None]:
        """The serving version's rank of each sample (None where the target is already in the history)."""
        scored = [s for s in samples if is_scored(s)]
        ranked = iter(self._ranks(self.serving, scored).tolist())
        return [next(ranked) if is_scored(s) else None for s in samples]

    def _ranks(self, ensemble: Ensemble, samples: Sequence[TrainingSample]) -> np.ndarray:
        """``rank_samples`` for a version whose weights no longer change (serving, or previous on probation),
        through its serving form, built on its first use and kept while the version is either of those."""
        key = id(ensemble)
        if key not in self._forms:
            live = {id(self.serving)} | ({id(self.probation.previous)} if self.probation else set())
            self._forms = {k: v for k, v in self._forms.items() if k in live}
            self._forms[key] = (ensemble, serving_form(ensemble))  # holding the ensemble keeps its id unique
        return rank_samples(ensemble, samples, linear=self._forms[key][1])

    def _serving_ranks(self) -> np.ndarray:
        """The serving version's ranks of the hold-out: those taken on arrival, ranking only the samples not
        ranked yet or ranked by an earlier serving version (a promotion or rollback the hold-out outlived)."""
        stale = [h for h in self.holdout if h.ranked_by != self.serving_version]
        for h, rank in zip(stale, self._rank_fresh([h.sample for h in stale])):
            h.rank, h.ranked_by = rank, self.serving_version
        return np.asarray([h.rank for h in self.holdout if h.rank is not None], dtype=np.int64)

    def _evaluate(self) -> list[dict[str, Any]]:
        held = [h.sample for h in self.holdout]
        cand_m = self.learner.evaluate(self.learner.ensemble, held)  # the working copy: copied only if promoted
        serv_m = metrics_at(self._serving_ranks())
        self.since_eval, self.last_eval = 0, self.clock()
        promote = should_promote(cand_m, serv_m, self.config.promote_tolerance)
        if not self.learner.weights_finite():  # promoted or not: learning on from NaN weights learns nothing
            log.error("candidate not promoted: its weights are not finite; learning restarts from %s",
                      self.serving_version)
            promote = False
            self._restart_learning(self.serving)
        behind_s = None if self.newest_learnt_ms is None else self.clock() - self.newest_learnt_ms / 1000.0
        self.evaluations.append({"candidate": cand_m, "serving": serv_m, "promoted": promote,
                                 "learnt": self.learner.seen, "newest_learnt_age_s": behind_s, "at": self.last_eval})
        if not promote:
            self.counts["not_promoted"] += 1
            log.info("candidate not promoted: ndcg@10 %.4f vs serving %s %.4f on %d held-out samples "
                     "(%d learnt, the newest %s s old)", cand_m["ndcg@10"], self.serving_version,
                     serv_m["ndcg@10"], cand_m["n"], self.learner.seen,
                     "?" if behind_s is None else f"{behind_s:.1f}")
            return []
        metrics = {"candidate": cand_m, "serving": serv_m}
        # what the candidate replaces: the version it learnt on from, or one the store serves that this trainer
        # could not load (the candidate may replace it, as any promotion did before promotions were checked)
        current = self.store.current()
        expected = current if current is not None and current == self._unloadable else self.serving_version
        version = None
        try:
            if current != expected:
                raise StoreChanged(f"the store serves {current}, not {expected}: it changed meanwhile")
            candidate = self.learner.candidate()  # exactly what was judged: nothing learnt in between
            version = self.store.save(candidate, extra={"metrics": metrics, "previous": self.serving_version,
                                                        "learnt_samples": self.learner.seen})
            entry = self.store.promote(version, expect_current=expected, previous=self.serving_version,
                                       metrics=metrics, newest_sample_ms=self.newest_learnt_ms,
                                       oldest_sample_ms=self.oldest_unpromoted_ms,
                                       sample_offsets={str(p): o for p, o in sorted(self.sample_offsets.items())},
                                       judged_offsets={str(p): o for p, o in sorted(self.next_taken.items())})
        except StoreChanged as exc:  # e.g. ``reco rollback`` since this evaluation began: it stands
            log.warning("candidate not promoted: %s", exc)
            self.evaluations[-1]["promoted"] = False
            self.counts["not_promoted"] += 1
            if version is not None:
                self.store.discard(version)
            self._follow_store()
            return []
        self.counts["promoted"] += 1
        self.promoted_at = entry["ts"]
        self._tidy_store()
        if self.config.rollback_window and expected == self.serving_version:
            self.probation = Probation(self.serving, self.serving_version)
        elif self.config.rollback_window:  # a rollback would restore the version no one could load
            log.warning("%s replaces %s, which could not be loaded: no probation", version, expected)
        self._unloadable = None
        self.oldest_unpromoted_ms = None
        self.serving, self.serving_version = candidate, version
        return [entry]

    def _tidy_store(self) -> None:
        """Delete the versions no rollback can reach any more (``ModelStore.prune``) and archive a long log
        (``ModelStore.rotate_log``); a failure is logged, and the store stays as it was."""
        if self.config.keep_versions:
            try:
                pruned = self.store.prune(self.config.keep_versions)
            except OSError as exc:
                log.error("pruning the model store failed (what was renamed .pruned-* no longer serves; the "
                          "next prune deletes it): %r", exc)
            else:
                if pruned:
                    log.info("model store pruned: %s", ", ".join(pruned))
        if self.config.log_max_lines:
            try:
                self.store.rotate_log(self.config.log_max_lines, keep=self.config.keep_versions)
            except (OSError, CheckpointError) as exc:
                log.error("archiving the model store's log failed (the log stays as it was): %r", exc)

    def _fresh_to_probation(self, samples: Sequence[TrainingSample], ranks: Sequence[int | None],
                            positions: Sequence[Position] | None
                            ) -> tuple[Sequence[TrainingSample], Sequence[int | None]]:
        """The samples (and ranks) the probation may judge: not those its promotion was decided on."""
        fresh_from = self.probation.fresh_from if self.probation is not None else {}
        if positions is None or not fresh_from:
            return samples, ranks
        keep = [n for n, (partition, offset) in enumerate(positions) if offset >= fresh_from.get(partition, 0)]
        return [samples[n] for n in keep], [ranks[n] for n in keep]

    def _check_probation(self, samples: Sequence[TrainingSample], ranks: Sequence[int | None]
                         ) -> list[dict[str, Any]]:
        """Add fresh samples (and the serving version's ``ranks`` of them) to the probation; roll back if due."""
        p = self.probation
        assert p is not None
        p.new_ranks.append(np.asarray([r for r in ranks if r is not None], dtype=np.int64))
        p.old_ranks.append(self._ranks(p.previous, [s for s in samples if is_scored(s)]))
        if p.n < self.config.rollback_window:
            return []
        self.probation = None
        new = metrics_at(np.concatenate(p.new_ranks))
        old = metrics_at(np.concatenate(p.old_ranks))
        if new["ndcg@10"] >= old["ndcg@10"] * (1.0 - self.config.rollback_margin):
            return []
        log.warning("rolling back %s: ndcg@10 %.4f vs %.4f of %s on %d fresh samples",
                    self.serving_version, new["ndcg@10"], old["ndcg@10"], p.previous_version, new["n"])
        try:
            entry = self.store.rollback(expect_current=self.serving_version,
                                        reason="online metric below the previous version",
                                        metrics={"new": new, "old": old})
        except StoreChanged as exc:  # someone else rolled back or promoted meanwhile: that stands
            log.warning("rollback of %s not done: %s", self.serving_version, exc)
            self._follow_store()
            return []
        except ValueError as exc:  # the previous version was pruned or is damaged: the new one serves on
            log.error("rollback of %s not done: %s", self.serving_version, exc)
            self.counts["rollback_failed"] += 1  # not a passed probation: the metrics must tell them apart
            return []
        self.counts["rolled_back"] += 1
        self.serving, self.serving_version = p.previous, p.previous_version
        self._restart_learning(p.previous)
        return [entry]

    def _restart_learning(self, ensemble: Ensemble) -> None:
        """Learn on from ``ensemble``'s weights; the replay reservoir of past samples is kept.

        The new lineage has learnt nothing yet: what the discarded learner
        learnt no longer counts for the next promotion's sample times, nor
        towards the next evaluation.
        """
        learner = OnlineLearner(ensemble, self.learner_config)
        learner.keep_replay_of(self.learner)
        self.learner = learner
        for h in self.holdout:  # scores taken for the old learner's re-fit: the new one scores them as they leave
            h.blend_fed, h.blend_scores = False, None
        self.since_eval, self.last_eval = 0, self.clock()  # its candidate is due once it has learnt enough itself
        self.newest_learnt_ms = self.oldest_unpromoted_ms = None
