"""Outbound gRPC: channels with client-side load balancing and calls with deadlines, propagation
and error mapping.

Every call has a deadline: ``min(timeout, what is left of the current request's deadline)``.
Transport-level failures of a dependency (UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL, ...) become
:class:`UnavailableError`, which fail-open stages turn into a fallback. INVALID_ARGUMENT / NOT_FOUND
from downstream keep their meaning.

Every :class:`Caller` goes through its target's :class:`~cascade_platform.breaker.CircuitBreaker`
(an open circuit fails at once with ``CircuitOpenError``, an ``UnavailableError``) and, for methods
declared ``idempotent``, retries UNAVAILABLE with full-jitter backoff within the same deadline
(:class:`~cascade_platform.breaker.RetryConfig`). See docs/resilience.md.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import grpc
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

from cascade_core.errors import InvalidArgumentError, NotFoundError, UnavailableError
from cascade_platform import breaker as cb
from cascade_platform import metrics, tracing
from cascade_platform.context import remaining_s, request_id_var, trace_headers_var

_tracer = trace.get_tracer("cascade.grpc.client")
_SERVICE_CONFIG = json.dumps({
    "loadBalancingConfig": [{"round_robin": {}}],
})


def make_channel(target: str, *, options: list[tuple[str, Any]] | None = None) -> grpc.aio.Channel:
    """An aio channel: plaintext, or mTLS (``CASCADE_CLIENT_TLS__*``); sends the internal service token
    when ``CASCADE_INTERNAL_AUTH__TOKEN_FILE`` is set (see cascade_platform.tls / auth).

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
    from cascade_platform.tls import secure_channel  # mTLS + service token when configured

    return secure_channel(target, opts)


# Outcomes that say the target is unhealthy (counted by its breaker). Any other answer proves it is up.
BREAKER_FAILURES = frozenset({
    grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DATA_LOSS,
    grpc.StatusCode.UNIMPLEMENTED,
})
# Retried (idempotent methods only): the connection was refused or reset, the request did not run.
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE})


# A call whose timeout the propagated deadline cut below this fraction of its own timeout does not count
# DEADLINE_EXCEEDED against the target's breaker (see Caller.__call__).
CUT_SHORT_FRACTION = 0.5


class Caller:
    """Calls one method of one downstream service, with metrics and spans (bound once at start-up).

    ``idempotent`` declares that the method may run twice (reads): only then is UNAVAILABLE retried.
    ``breaker`` defaults to a new breaker for this target; ``retry`` to the process's RetryConfig.
    """

    def __init__(
        self,
        service: str,
        target_name: str,
        method: Any,
        default_timeout_s: float,
        *,
        idempotent: bool = False,
        breaker: cb.CircuitBreaker | None = None,
        retry: cb.RetryConfig | None = None,
    ) -> None:
        self.service = service
        self.target_name = target_name
        self.method = method
        self.default_timeout_s = default_timeout_s
        self.idempotent = idempotent
        self.breaker = breaker if breaker is not None else cb.CircuitBreaker(service, target_name)
        self.retry = retry if retry is not None else cb.settings().retry
        self._handled = {c: metrics.GRPC_CLIENT_HANDLED.labels(service, target_name, c.name) for c in grpc.StatusCode}
        self._seconds = metrics.GRPC_CLIENT_SECONDS.labels(service, target_name)
        self._retries = cb.CLIENT_RETRIES.labels(service, target_name)

    async def __call__(self, request: Any, timeout_s: float | None = None) -> Any:
        timeout = self.default_timeout_s if timeout_s is None else timeout_s
        left = remaining_s()
        if left is not None:
            timeout = min(timeout, left)
        if timeout <= 0:
            self._handled[grpc.StatusCode.DEADLINE_EXCEEDED].inc()
            raise UnavailableError(f"{self.target_name}: no time left in the request deadline")
        deadline = time.monotonic() + timeout  # retries share it: never past the propagated deadline
        # A deadline the *caller* cut short says nothing about the target: a client sending 1 ms deadlines
        # (or an earlier slow stage eating the budget) must not open this target's breaker for everyone.
        cut_short = timeout < CUT_SHORT_FRACTION * self.default_timeout_s
        md: dict[str, str] = {}
        rid = request_id_var.get()
        if rid:
            md["x-request-id"] = rid
        if not tracing.enabled():  # no span objects: the caller's trace headers are forwarded as they came
            return await self._attempts(request, deadline, cut_short, (*md.items(), *trace_headers_var.get()), None)
        with _tracer.start_as_current_span(self.target_name, kind=SpanKind.CLIENT) as span:
            propagate.inject(md)
            return await self._attempts(request, deadline, cut_short, tuple(md.items()), span)

    async def _attempts(self, request: Any, deadline: float, cut_short: bool, metadata: tuple, span: Any) -> Any:
        attempts = self.retry.max_attempts if self.idempotent else 1
        attempt = 0
        while True:
            attempt += 1
            probe = self.breaker.before_call()  # CircuitOpenError: fail fast, no RPC made
            t0 = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                resp = await self.method(request, timeout=deadline - time.monotonic(), metadata=metadata)
            except grpc.aio.AioRpcError as e:
                code = e.code()
                if code == grpc.StatusCode.DEADLINE_EXCEEDED and cut_short:
                    self.breaker.on_ignored(probe)
                elif code in BREAKER_FAILURES:
                    self.breaker.on_failure(probe)
                elif code == grpc.StatusCode.CANCELLED:
                    self.breaker.on_ignored(probe)
                else:
                    self.breaker.on_success(probe)
                if code in RETRYABLE and attempt < attempts:
                    pause = cb.backoff_s(attempt, self.retry)
                    if deadline - time.monotonic() - pause >= self.retry.min_attempt_s:
                        self._retries.inc()
                        if span is not None:
                            span.add_event("retry", {"attempt": attempt + 1, "code": code.name})
                        await asyncio.sleep(pause)
                        continue
                detail = e.details() or code.name
                if code == grpc.StatusCode.INVALID_ARGUMENT:
                    raise InvalidArgumentError(self.target_name, detail) from None
                if code == grpc.StatusCode.NOT_FOUND:
                    raise NotFoundError(f"{self.target_name}: {detail}") from None
                raise UnavailableError(f"{self.target_name} {code.name}: {detail}") from None
            except BaseException:  # cancelled by our caller: says nothing about the target
                self.breaker.on_ignored(probe)
                raise
            else:
                self.breaker.on_success(probe)
                return resp
            finally:
                self._handled[code].inc()
                self._seconds.observe(time.perf_counter() - t0)
