"""Outbound gRPC: channels with client-side load balancing and calls with deadlines, propagation
and error mapping.

Every call has a deadline: ``min(timeout, what is left of the current request's deadline)``.
Transport-level failures of a dependency (UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL, ...) become
:class:`UnavailableError`, which fail-open stages turn into a fallback. INVALID_ARGUMENT / NOT_FOUND
from downstream keep their meaning.
"""

from __future__ import annotations

import json
import time
from typing import Any

import grpc
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

from cascade_core.errors import InvalidArgumentError, NotFoundError, UnavailableError
from cascade_platform import metrics
from cascade_platform.context import remaining_s, request_id_var

_tracer = trace.get_tracer("cascade.grpc.client")
_SERVICE_CONFIG = json.dumps({
    "loadBalancingConfig": [{"round_robin": {}}],
})


def make_channel(target: str, *, options: list[tuple[str, Any]] | None = None) -> grpc.aio.Channel:
    """A plaintext aio channel (no TLS/mTLS support yet).

    ``dns:///name:port`` targets resolve every address behind a headless Service; the service config
    selects client-side ``round_robin`` over them.
    """
    opts = [
        ("grpc.service_config", _SERVICE_CONFIG),
        ("grpc.enable_retries", 0),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.max_receive_message_length", 32 * 1024 * 1024),
        # Reconnect quickly after a dependency restarts (default backoff grows to 120 s).
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.min_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 2000),
    ]
    if options:
        opts.extend(options)
    return grpc.aio.insecure_channel(target, options=opts)


class Caller:
    """Calls one method of one downstream service, with metrics and spans (bound once at start-up)."""

    def __init__(self, service: str, target_name: str, method: Any, default_timeout_s: float) -> None:
        self.service = service
        self.target_name = target_name
        self.method = method
        self.default_timeout_s = default_timeout_s
        self._handled = {c: metrics.GRPC_CLIENT_HANDLED.labels(service, target_name, c.name) for c in grpc.StatusCode}
        self._seconds = metrics.GRPC_CLIENT_SECONDS.labels(service, target_name)

    async def __call__(self, request: Any, timeout_s: float | None = None) -> Any:
        timeout = self.default_timeout_s if timeout_s is None else timeout_s
        left = remaining_s()
        if left is not None:
            timeout = min(timeout, left)
        if timeout <= 0:
            self._handled[grpc.StatusCode.DEADLINE_EXCEEDED].inc()
            raise UnavailableError(f"{self.target_name}: no time left in the request deadline")
        md: dict[str, str] = {}
        rid = request_id_var.get()
        if rid:
            md["x-request-id"] = rid
        t0 = time.perf_counter()
        code = grpc.StatusCode.OK
        with _tracer.start_as_current_span(self.target_name, kind=SpanKind.CLIENT):
            propagate.inject(md)
            try:
                return await self.method(request, timeout=timeout, metadata=tuple(md.items()))
            except grpc.aio.AioRpcError as e:
                code = e.code()
                detail = e.details() or code.name
                if code == grpc.StatusCode.INVALID_ARGUMENT:
                    raise InvalidArgumentError(self.target_name, detail) from None
                if code == grpc.StatusCode.NOT_FOUND:
                    raise NotFoundError(f"{self.target_name}: {detail}") from None
                raise UnavailableError(f"{self.target_name} {code.name}: {detail}") from None
            finally:
                self._handled[code].inc()
                self._seconds.observe(time.perf_counter() - t0)
