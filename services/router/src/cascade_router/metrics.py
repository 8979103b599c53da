"""Router-specific Prometheus metrics (the shared RED/stage/fallback metrics live in cascade_platform).

Names are part of the deployment contract (dashboards, alert rules); ``docs/observability.md`` lists
them all with their labels.
"""

from __future__ import annotations

from cascade_platform.metrics import LATENCY_BUCKETS
from prometheus_client import Counter, Gauge, Histogram

RECOMMEND_TOTAL = Counter(
    "cascade_recommend_total", "Recommend responses served, by experiment variant.", ["variant"]
)
RECOMMEND_DEGRADED_TOTAL = Counter(
    "cascade_recommend_degraded_total",
    "Recommend responses served with at least one fallback (degraded=true), by variant.",
    ["variant"],
)
RECOMMEND_SECONDS = Histogram(
    "cascade_recommend_seconds",
    "Router-side Recommend latency (validation to response built), by variant.",
    ["variant"],
    buckets=LATENCY_BUCKETS,
)
ASSIGNMENTS = Counter(
    "cascade_experiment_assignments_total",
    "Requests assigned, by experiment ('' = none/holdout), variant and whether the variant was forced.",
    ["experiment", "variant", "forced"],
)
EXPERIMENT_INFO = Gauge(
    "cascade_experiment_info",
    "Active experiment arms (value 1): experiment, type, variant, ranker version and traffic percent.",
    ["experiment", "type", "variant", "ranker_version", "traffic"],
)
EXPERIMENT_CONFIG_INFO = Gauge(
    "cascade_experiments_config_info", "Digest of the active experiment config (value 1).", ["digest"]
)
EXPERIMENT_RELOADS = Counter(
    "cascade_experiments_reloads_total",
    "Experiment file changes seen by the hot reload: applied or rejected (old config kept).",
    ["outcome"],
)
EXPOSURES = Counter(
    "cascade_exposures_total",
    "Exposure events: queued (accepted by the in-memory queue), sent (acknowledged by Kafka), "
    "dropped (queue full), failed (Kafka send error).",
    ["outcome"],
)
EXPOSURE_QUEUE = Gauge("cascade_exposure_queue_depth", "Exposure events waiting to be sent to Kafka.")
SHADOW_REQUESTS = Counter(
    "cascade_shadow_requests_total",
    "Shadow ranking attempts by outcome: scored, failed, skipped_busy, skipped_sample, no_primary.",
    ["version", "outcome"],
)
SHADOW_SECONDS = Histogram(
    "cascade_shadow_seconds", "Latency of the shadow Rank call.", ["version"], buckets=LATENCY_BUCKETS
)
_UNIT = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
_CORR = (-1.0, -0.5, 0.0, 0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
SHADOW_OVERLAP = Histogram(
    "cascade_shadow_overlap_at_10",
    "|top-10 of the served ranker ∩ top-10 of the shadow ranker| / 10 over the same candidates.",
    ["version"],
    buckets=_UNIT,
)
SHADOW_KENDALL = Histogram(
    "cascade_shadow_kendall_tau",
    "Kendall tau-b between served and shadow scores of the same candidates.",
    ["version"],
    buckets=_CORR,
)
SHADOW_SPEARMAN = Histogram(
    "cascade_shadow_spearman",
    "Spearman rank correlation between served and shadow scores of the same candidates.",
    ["version"],
    buckets=_CORR,
)
INTERLEAVED = Counter(
    "cascade_interleave_requests_total",
    "Interleave-experiment requests: interleaved, or fallback (an arm could not score: plain list).",
    ["experiment", "outcome"],
)
BATCH_LOOKUPS = Counter(
    "cascade_batch_lookups_total",
    "Batch-prediction lookups (cache or fallback): hit, miss or error.",
    ["mode", "outcome"],
)
