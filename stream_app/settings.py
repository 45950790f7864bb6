"""One frozen settings object, read from ``RECO_*`` environment variables.

The same names configure the embedded demo, the tests and docker-compose.
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass, fields, replace
from typing import Any

from models.device_names import DEVICE_CHOICES, DEVICE_PATTERN

PREFIX = "RECO_"
# numeric settings that must be at least 1, above 0, or may take any sign; every other one must be 0 or more
_AT_LEAST_ONE = {"fetch_max_wait_ms", "partitions", "replication_factor", "max_batch", "max_event_bytes",
                 "history_len", "top_k", "covis_window", "covis_max_neighbors", "popular_candidates", "torch_threads",
                 "trainer_batch", "trainer_eval_slice", "trainer_promote_every", "redis_ttl_s"}
_ABOVE_ZERO = {"popularity_half_life_s", "trainer_lr", "trainer_promote_every_s", "redis_timeout_s",
               "redis_read_timeout_s", "broker_session_timeout_s", "broker_heartbeat_interval_s", "commit_interval_s"}
_ANY_SIGN = {"trainer_promote_tolerance", "trainer_rollback_margin"}
# text settings with a fixed form (a regular expression the whole value must match), and what they take
_FORMS = {"device": (DEVICE_PATTERN, DEVICE_CHOICES), "trainer_device": (DEVICE_PATTERN, DEVICE_CHOICES),
          "model_dtype": ("fp32|bf16", "fp32 or bf16"), "store": ("(memory|rocksdb)://.*", "memory:// or rocksdb://"),
          "log_level": ("(?i)debug|info|warning|error|critical", "debug, info, warning, error or critical")}
_PORTS = ("web_port", "trainer_web_port")
log = logging.getLogger(__name__)
_SECRET_WORDS = ("password", "secret", "token")
# the Redis client's backoff between tries (redis-py's EqualJitterBackoff: at most min(cap, base * 2**failures))
REDIS_BACKOFF_BASE_S, REDIS_BACKOFF_CAP_S = 0.05, 2.0
# aiokafka's default request timeout, which the alerts and model-updates readers keep (the trainer's is longer:
# ``join_request_timeout_s``): a Fetch blocking longer than that fails and is logged, on every idle poll; an
# idle Fetch may take three quarters of it
AIOKAFKA_REQUEST_TIMEOUT_S = 40.0
_FETCH_MAX_WAIT_MS_MAX = 30_000
KAFKA_MIN_SESSION_TIMEOUT_S = 6.0  # Apache Kafka's default group.min.session.timeout.ms


@dataclass(frozen=True)
class Settings:
    """Everything a worker, the replay tool or the demo needs to know."""

    app_id: str = "reco"
    kafka_url: str = "kafka://127.0.0.1:9092"
    redis_url: str = "redis://127.0.0.1:6379/0"
    embedded_broker: bool = False  # tansu work-arounds (see stream_app/tansu_compat.py)
    # Longest a Fetch may block when no data is waiting. Kafka answers as soon as data arrives,
    # so this only bounds idle polls there; tansu answers only when it expires, so on tansu it is
    # the delivery latency (the demo and tests use 20 ms). Faust's own default is 1,500 ms.
    fetch_max_wait_ms: int = 500

    events_topic: str = "events"
    recommendations_topic: str = "recommendations"
    dead_letter_topic: str = "events-dead-letter"
    item_activity_topic: str = "item-activity"
    item_touches_topic: str = "item-touches"  # internal: each event with its user's context, by item (shilling)
    alerts_topic: str = "alerts"
    training_samples_topic: str = "training-samples"
    partitions: int = 4
    replication_factor: int = 1

    max_batch: int = 256  # most events per micro-batch (stream_app.agents.batching.take_batches)
    # How long a lone event waits for others to batch with. Events that arrived while the previous
    # batch was processed go at once (Faust's own take waits this long after every batch).
    max_wait_s: float = 0.005
    max_event_bytes: int = 4096
    max_future_skew_s: float = 300.0  # event times further ahead than this are rejected
    history_len: int = 50  # rolling events kept per user
    top_k: int = 10
    emit_training_samples: bool = True  # one training sample per processed event, for the trainer
    sample_holdback_s: float = 1.0  # training samples wait this long, so a late alert can still stop them
    anomaly_detection: bool = True  # fraud/anomaly detectors -> alerts topic, quarantine from learning
    anomaly_config: str = ""  # JSON file overriding detector thresholds: {"rate_burst": {"max_events": 60}, ...}

    popularity_half_life_s: float = 86_400.0
    covis_window: int = 3  # previous items paired with each new one
    covis_max_neighbors: int = 50
    popular_candidates: int = 200
    covis_weight: float = 1.0
    popularity_weight: float = 0.3

    model_path: str = ""  # an ensemble checkpoint directory; empty: the popularity+co-visitation baseline
    torch_threads: int = 1  # intra-op threads of the scoring thread (leave cores to Faust and the broker)
    device: str = "auto"  # auto (cuda when available, else cpu) | cpu | cuda
    model_dtype: str = "fp32"  # fp32 | bf16
    model_compile: bool = False  # torch.compile the sequence model's scoring
    model_store: str = ""  # directory of versioned checkpoints (models.model_store); empty: no hot swaps
    model_updates_topic: str = "model-updates"
    model_store_keep: int = 20  # versions the trainer keeps (the serving one and 19 to roll back to); 0: all
    model_store_log_lines: int = 2_000  # the store's log is archived once longer (ModelStore.rotate_log); 0: never

    # the trainer (stream_app/trainer.py): fine-tunes the serving version on training samples
    trainer_batch: int = 256  # samples per learning step
    trainer_lr: float = 5e-4
    trainer_replay_size: int = 50_000  # past samples kept against forgetting
    trainer_blend_every: int = 1_024  # kept samples (64 of every 256) between blend-weight re-fits (0: never)
    trainer_eval_slice: int = 512  # newest samples held out to compare candidate and serving
    trainer_promote_every: int = 2_000  # samples learnt between two candidate evaluations
    trainer_promote_every_s: float = 30.0  # ...or seconds, whichever comes first
    trainer_promote_tolerance: float = 0.0  # relative NDCG@10 a candidate may lose and still be promoted
    trainer_rollback_window: int = 2_000  # fresh samples on which a new version is compared with the old (0: off)
    trainer_rollback_margin: float = 0.1  # relative NDCG@10 drop of the new version that rolls it back
    trainer_device: str = "auto"  # where the trainer fine-tunes: auto (cuda when available, else cpu) | cpu | cuda

    redis_prefix: str = "reco"
    redis_ttl_s: int = 7 * 86_400
    # times a Redis command or write is re-sent after a connection error or timeout, backing off from 50 ms to
    # 2 s (8: 4.5 to 9 s in all while connections are refused; 22 to 27 s when Redis hangs, each try then also
    # waiting out redis_timeout_s); every write counts once however often it is sent. 0: a failure stops the worker
    redis_retries: int = 8
    redis_timeout_s: float = 2.0  # to connect, and for each reply (a batch's write takes milliseconds)
    # longest an HTTP request waits on Redis, retries included, before it answers 503: the write path's retries
    # ride out an outage (seconds), a shopper's page should not wait on them
    redis_read_timeout_s: float = 1.0
    web_port: int = 6066
    web_bind: str = "127.0.0.1"  # the worker's HTTP endpoint (metrics, health); 0.0.0.0 in a container
    trainer_web_port: int = 6067  # the trainer's /metrics/ and /health/ (on web_bind); 0: none
    data_dir: str = ".run/worker"
    store: str = "memory://"  # tables in memory, rebuilt from their changelogs at start; rocksdb://: on disk
    broker_session_timeout_s: float = 10.0
    broker_heartbeat_interval_s: float = 1.0
    # how long a rebalance waits for a live member to rejoin; one still finishing a batch (a Redis stall rides
    # out up to ~30 s of retries) is dropped after it, and its late writes race the partition's new owner.
    # Faust's default; dead members go at the session timeout whatever this is
    broker_rebalance_timeout_s: float = 60.0
    commit_interval_s: float = 1.0
    # the producer waits up to this long to batch messages per partition (aiokafka linger_ms; 0: send at once).
    # 5 ms, Kafka 4.0's own client default: the swap-lag run's worker used 0.65 of a core, not 0.69
    producer_linger_s: float = 0.005
    log_level: str = "info"

    def __post_init__(self) -> None:
        """Refuse values no part of the service can work with (each names its ``RECO_*`` variable)."""
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            least = 1 if f.name in _AT_LEAST_ONE else 0
            if not math.isfinite(value) or (f.name not in _ANY_SIGN and (
                    value < least or (value == 0 and f.name in _ABOVE_ZERO))):
                need = ("a finite number" if f.name in _ANY_SIGN else f"at least {least}" if least
                        else "above 0" if f.name in _ABOVE_ZERO else "0 or more")
                raise ValueError(f"{PREFIX}{f.name.upper()} must be {need}, not {value!r}")
        for name, (form, choices) in _FORMS.items():
            if not re.fullmatch(form, getattr(self, name)):
                raise ValueError(f"{PREFIX}{name.upper()} must be {choices}, not {getattr(self, name)!r}")
        for name in _PORTS:
            if getattr(self, name) > 65_535:
                raise ValueError(f"{PREFIX}{name.upper()} must be a port number (at most 65535), not {getattr(self, name)}")
        if self.broker_rebalance_timeout_s < self.broker_session_timeout_s:
            raise ValueError(f"{PREFIX}BROKER_REBALANCE_TIMEOUT_S ({self.broker_rebalance_timeout_s}) must be at "
                             f"least {PREFIX}BROKER_SESSION_TIMEOUT_S ({self.broker_session_timeout_s}): a live "
                             "member finishing its batch would be dropped sooner than a dead one")
        if self.fetch_max_wait_ms > _FETCH_MAX_WAIT_MS_MAX:
            raise ValueError(f"{PREFIX}FETCH_MAX_WAIT_MS must be at most {_FETCH_MAX_WAIT_MS_MAX}, not "
                             f"{self.fetch_max_wait_ms}: an idle Fetch would outlast the consumers' "
                             f"{AIOKAFKA_REQUEST_TIMEOUT_S:g} s request timeout and fail at every poll")
        if self.broker_heartbeat_interval_s < 0.001:
            raise ValueError(f"{PREFIX}BROKER_HEARTBEAT_INTERVAL_S must be at least 0.001 (Kafka counts whole ms), "
                             f"not {self.broker_heartbeat_interval_s}")
        if self.broker_heartbeat_interval_s >= self.broker_session_timeout_s:
            raise ValueError(f"{PREFIX}BROKER_HEARTBEAT_INTERVAL_S ({self.broker_heartbeat_interval_s}) must be below "
                             f"{PREFIX}BROKER_SESSION_TIMEOUT_S ({self.broker_session_timeout_s}): the broker would "
                             "expel every consumer between two heartbeats")
        named: dict[str, str] = {}  # topic -> the first setting naming it (one topic for two: e.g. dead
        for f in fields(self):  # letters sent back into the events)
            topic = getattr(self, f.name)
            if f.name.endswith("_topic") and not topic:
                raise ValueError(f"{PREFIX}{f.name.upper()} must name a topic")
            if f.name.endswith("_topic") and named.setdefault(topic, f.name) != f.name:
                raise ValueError(f"{PREFIX}{named[topic].upper()} and {PREFIX}{f.name.upper()} name one topic, "
                                 f"{topic!r}: each needs its own")

    def join_request_timeout_s(self, floor: float) -> float:
        """A consumer's request timeout, at least ``floor`` (its client's default): a JoinGroup waits up to the
        rebalance timeout at the broker, so the request must outlast it (the Java client adds 5 s the same way)."""
        return max(floor, self.broker_rebalance_timeout_s + 5.0)

    @property
    def redis_retry_budget_s(self) -> float:
        """The longest one Redis write can take while Redis hangs: every try waits out ``redis_timeout_s``,
        and the backoff between tries at its most."""
        backoff = sum(min(REDIS_BACKOFF_CAP_S, REDIS_BACKOFF_BASE_S * 2 ** n) for n in range(1, self.redis_retries + 1))
        return (self.redis_retries + 1) * self.redis_timeout_s + backoff

    def doubts(self) -> list[str]:
        """Combinations that work, but not as an operator would want on Apache Kafka (``reco worker`` and ``reco
        trainer`` print them at start; none on the embedded broker, where the demo and the tests keep group
        timeouts short on purpose)."""
        if self.embedded_broker:
            return []
        out = []
        if self.redis_retry_budget_s > self.broker_rebalance_timeout_s:
            out.append(f"a Redis write may retry for up to {self.redis_retry_budget_s:.0f} s "
                       f"({PREFIX}REDIS_RETRIES, {PREFIX}REDIS_TIMEOUT_S), longer than "
                       f"{PREFIX}BROKER_REBALANCE_TIMEOUT_S ({self.broker_rebalance_timeout_s:g} s): a worker stuck "
                       "in it during a rebalance is dropped from the group, and its late writes race the "
                       "partitions' new owner")
        if self.broker_session_timeout_s < KAFKA_MIN_SESSION_TIMEOUT_S:
            out.append(f"{PREFIX}BROKER_SESSION_TIMEOUT_S ({self.broker_session_timeout_s:g} s) is below Apache "
                       f"Kafka's default group.min.session.timeout.ms ({KAFKA_MIN_SESSION_TIMEOUT_S:g} s): such "
                       "a broker refuses the consumers' JoinGroup unless its minimum was lowered")
        return out

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``RECO_<FIELD>`` variables, then apply overrides."""
        env = os.environ if environ is None else environ
        known = {PREFIX + f.name.upper() for f in fields(cls)}
        for name in sorted(n for n in env if n.startswith(PREFIX) and n not in known):
            log.warning("%s is not a setting (a typo?); ignored", name)
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = _parse(raw, type(f.default), f.name)
        return replace(cls(**values), **overrides)

    def to_env(self) -> dict[str, str]:
        """The ``RECO_*`` variables that reproduce these settings in a child process."""
        return {PREFIX + f.name.upper(): str(getattr(self, f.name)) for f in fields(self)}

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if any(w in f.name for w in _SECRET_WORDS) or (isinstance(value, str) and "@" in value):
                value = "***"
            shown.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(shown)})"


def _parse(raw: str, kind: type, name: str) -> Any:
    if kind is bool:
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        # an empty value too: ``RECO_ANOMALY_DETECTION: ${UNSET}`` in compose used to switch detection off
        raise ValueError(f"{PREFIX}{name.upper()}: expected a boolean (true/false, 1/0, yes/no, on/off), got {raw!r}")
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"{PREFIX}{name.upper()}: expected {kind.__name__}, got {raw!r}") from None
