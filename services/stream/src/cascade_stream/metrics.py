"""Prometheus metrics of the stream worker (names are part of the deployment contract: alerts, dashboards)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Fine buckets around the sub-second freshness goal (benchmarks read quantiles from them).
FRESHNESS_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.125,
    0.15,
    0.2,
    0.25,
    0.3,
    0.4,
    0.5,
    0.6,
    0.75,
    0.9,
    1.0,
    1.25,
    1.5,
    2.0,
    3.0,
    5.0,
    10.0,
    30.0,
    60.0,
)
STEP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

EVENTS = Counter(
    "cascade_stream_events_total",
    "Events consumed and committed, by outcome: processed (features written), duplicate (event_id seen), "
    "stale (older than every window of its entity), dlq (sent to the dead-letter topic).",
    ["pipeline", "result"],
)
DLQ = Counter(
    "cascade_stream_dlq_total",
    "Events sent to the dead-letter topic, by rejected field.",
    ["pipeline", "field"],
)
LAG = Gauge(
    "cascade_stream_consumer_lag",
    "Messages not yet processed (high watermark - next offset).",
    ["pipeline", "partition"],
)
FRESHNESS = Histogram(
    "cascade_feature_freshness_seconds",
    "Event time -> the event's effect visible in the online store.",
    ["view"],
    buckets=FRESHNESS_BUCKETS,
)
STEP_SECONDS = Histogram(
    "cascade_stream_step_seconds", "Micro-batch step latency.", ["pipeline", "step"], buckets=STEP_BUCKETS
)
BATCH_EVENTS = Histogram(
    "cascade_stream_batch_events",
    "Events per micro-batch.",
    ["pipeline"],
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000),
)
ROWS_WRITTEN = Counter(
    "cascade_stream_rows_written_total", "Feature rows written to the online store.", ["view"]
)
WRITE_FAILURES = Counter(
    "cascade_stream_write_failures_total", "Failed online-store writes (retried).", ["view"]
)
REPLAYED = Counter(
    "cascade_stream_replayed_events_total",
    "Events re-read to rebuild window state after an assignment (not re-counted).",
    ["pipeline"],
)
ENTITIES = Gauge("cascade_stream_entities", "Entities held in window state.", ["pipeline"])
ASSIGNED = Gauge(
    "cascade_stream_assigned_partitions", "Partitions owned (ready or rebuilding).", ["pipeline", "state"]
)
