"""Per-request context (request id, absolute deadline) carried in contextvars across awaits."""

from __future__ import annotations

import contextvars
import time

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("cascade_request_id", default="")
deadline_var: contextvars.ContextVar[float | None] = contextvars.ContextVar("cascade_deadline", default=None)
# W3C trace headers (``traceparent``, ``tracestate``) received with the current request while tracing is
# off here: forwarded verbatim on outbound calls so a trace crossing this service stays one trace.
trace_headers_var: contextvars.ContextVar[tuple[tuple[str, str], ...]] = contextvars.ContextVar(
    "cascade_trace_headers", default=()
)
# The authenticated client id (cascade_platform.auth); "" when the service does not authenticate.
client_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("cascade_client_id", default="")


def remaining_s() -> float | None:
    """Seconds left before the current request's deadline (None when it has none)."""
    d = deadline_var.get()
    return None if d is None else d - time.monotonic()
