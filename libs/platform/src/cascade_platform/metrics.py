"""Prometheus metrics shared by every service (RED per RPC, stages, models, fallbacks).

Metric names are part of the deployment contract (alert rules, HPA custom metrics, dashboards).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5)

GRPC_SERVER_HANDLED = Counter(
    "cascade_grpc_server_handled_total", "RPCs completed by the server.", ["service", "method", "code"]
)
GRPC_SERVER_SECONDS = Histogram(
    "cascade_grpc_server_handling_seconds", "Server-side RPC latency.", ["service", "method"],
    buckets=LATENCY_BUCKETS,
)
GRPC_INFLIGHT = Gauge("cascade_grpc_inflight_requests", "RPCs being handled now.", ["service"])
GRPC_CLIENT_HANDLED = Counter(
    "cascade_grpc_client_handled_total", "Outbound RPCs completed.", ["service", "target", "code"]
)
GRPC_CLIENT_SECONDS = Histogram(
    "cascade_grpc_client_handling_seconds", "Outbound RPC latency.", ["service", "target"],
    buckets=LATENCY_BUCKETS,
)
STAGE_SECONDS = Histogram(
    "cascade_stage_seconds", "Pipeline stage latency.", ["service", "stage"], buckets=LATENCY_BUCKETS
)
CANDIDATES = Histogram(
    "cascade_candidates", "Candidates per request after a stage.", ["service", "stage"],
    buckets=(0, 1, 10, 25, 50, 100, 200, 400, 800, 1600),
)
FALLBACKS = Counter("cascade_fallback_total", "Stages served by a fallback.", ["service", "stage"])
MODEL_INFO = Gauge("cascade_model_info", "Model versions loaded (value 1).", ["service", "model", "version"])
READY = Gauge("cascade_ready", "1 when the service reports SERVING.", ["service"])


def start_metrics_server(port: int, host: str = "0.0.0.0") -> int:
    """Serve /metrics on ``port`` (0 = disabled). Returns the port."""
    if port:
        start_http_server(port, addr=host)
    return port
