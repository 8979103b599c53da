"""Gateway HTTP metrics (RED per route template, so labels stay bounded)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from cascade_platform.metrics import LATENCY_BUCKETS
from fastapi import Request, Response
from prometheus_client import Counter, Histogram

HTTP_REQUESTS = Counter(
    "cascade_gateway_http_requests_total",
    "HTTP requests answered by the gateway.",
    ["route", "method", "status"],
)
HTTP_SECONDS = Histogram(
    "cascade_gateway_http_request_seconds",
    "HTTP request latency.",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)


async def metrics_middleware(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    t0 = time.perf_counter()
    status = 500
    try:
        response = await call_next(request)
        status = response.status_code
        return response
    finally:
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        HTTP_REQUESTS.labels(template, request.method, str(status)).inc()
        HTTP_SECONDS.labels(template, request.method).observe(time.perf_counter() - t0)
