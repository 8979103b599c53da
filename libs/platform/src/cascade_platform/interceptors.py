"""Server interceptor: domain errors -> status codes, RED metrics, trace spans, request context.

* :class:`cascade_core.errors.CascadeError` subclasses become their status code with the error's
  message (which names what to fix); RESOURCE_EXHAUSTED carries ``retry-after-s`` (seconds, ms
  precision) and ``retry-after`` (whole seconds, rounded up, as HTTP's Retry-After) trailing metadata.
* Any other exception is a bug: logged with its traceback, returned as INTERNAL (no details leaked).
* The caller's deadline becomes the request's absolute deadline (``context.deadline_var``) so every
  outbound call made while handling it inherits what is left.
"""

from __future__ import annotations

import logging
import math
import time
import uuid

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from cascade_core.errors import CascadeError, InvalidArgumentError, ResourceExhaustedError
from cascade_platform import metrics
from cascade_platform.context import deadline_var, request_id_var

log = logging.getLogger("cascade.rpc")
_tracer = trace.get_tracer("cascade.grpc.server")


def _method_name(full: str) -> str:
    return full.rsplit("/", 1)[-1]


MAX_REQUEST_ID_CHARS = 128


def _request_id(candidate: str) -> str:
    """The caller's request id for logs and spans when it is sane, else a fresh one (a huge or
    binary id from an untrusted caller must not be copied into every log line)."""
    if candidate and len(candidate) <= MAX_REQUEST_ID_CHARS and candidate.isascii() and candidate.isprintable():
        return candidate
    return uuid.uuid4().hex


def _deserialize(deserialize, raw, full_method: str):
    """``(request, None)``, or ``(None, InvalidArgumentError)`` when ``raw`` does not parse."""
    if deserialize is None:
        return raw, None
    try:
        return deserialize(raw), None
    except Exception as e:  # noqa: BLE001 - protobuf DecodeError (and any parser error): caller's bytes
        return None, InvalidArgumentError(
            "request", f"not a valid {full_method.rsplit('/', 2)[-2]}/{_method_name(full_method)} request "
            f"message ({len(raw)} bytes; {type(e).__name__})"
        )


class ServerInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, service: str) -> None:
        self.service = service

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        full_method = handler_call_details.method
        if full_method.startswith("/grpc."):  # health, reflection: no metrics/spans
            return handler
        method = _method_name(full_method)
        inner = handler.unary_unary
        service = self.service
        deserialize = handler.request_deserializer

        async def wrapped(raw, context: grpc.aio.ServicerContext):
            # Deserialized here, not by grpc: bytes that are not the request message are the caller's
            # error (INVALID_ARGUMENT), where grpc's own deserialization failure would answer UNKNOWN.
            request, bad_request = _deserialize(deserialize, raw, full_method)
            md = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
            rid = _request_id(md.get("x-request-id") or getattr(request, "request_id", ""))
            tok_rid = request_id_var.set(rid)
            remaining = context.time_remaining()
            tok_dl = deadline_var.set(time.monotonic() + remaining if remaining is not None else None)
            parent = propagate.extract(md)
            tok_ctx = otel_context.attach(parent)
            code = grpc.StatusCode.OK
            t0 = time.perf_counter()
            metrics.GRPC_INFLIGHT.labels(service).inc()
            try:
                with _tracer.start_as_current_span(
                    f"{service}/{method}", kind=SpanKind.SERVER,
                    attributes={"rpc.system": "grpc", "rpc.method": method, "cascade.request_id": rid},
                ) as span:
                    try:
                        if bad_request is not None:
                            raise bad_request
                        return await inner(request, context)
                    except CascadeError as e:
                        code = getattr(grpc.StatusCode, e.grpc_code_name)
                        span.set_status(Status(StatusCode.ERROR, e.message))
                        if isinstance(e, ResourceExhaustedError) and e.retry_after_s is not None:
                            context.set_trailing_metadata((
                                ("retry-after-s", f"{e.retry_after_s:.3f}"),
                                ("retry-after", str(max(1, math.ceil(e.retry_after_s)))),  # HTTP-style seconds
                            ))
                        log.info("rpc rejected: %s", e.message, extra={"code": code.name, "method": method})
                        await context.abort(code, e.message)
                    except grpc.aio.AbortError:
                        code = context.code() or grpc.StatusCode.UNKNOWN
                        raise
                    except Exception as e:  # a bug: never swallowed, never leaked
                        code = grpc.StatusCode.INTERNAL
                        span.record_exception(e)
                        span.set_status(Status(StatusCode.ERROR, type(e).__name__))
                        log.exception("rpc failed", extra={"method": method})
                        await context.abort(code, f"internal error in {service}.{method} (request_id={rid})")
            finally:
                dt = time.perf_counter() - t0
                metrics.GRPC_INFLIGHT.labels(service).dec()
                metrics.GRPC_SERVER_HANDLED.labels(service, method, code.name).inc()
                metrics.GRPC_SERVER_SECONDS.labels(service, method).observe(dt)
                otel_context.detach(tok_ctx)
                deadline_var.reset(tok_dl)
                request_id_var.reset(tok_rid)

        return grpc.unary_unary_rpc_method_handler(
            wrapped,
            request_deserializer=None,  # raw bytes: see _deserialize
            response_serializer=handler.response_serializer,
        )
