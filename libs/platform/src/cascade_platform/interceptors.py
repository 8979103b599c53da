"""Server-side method wrappers: domain errors -> status codes, RED metrics, trace spans, request context.

* :class:`cascade_core.errors.CascadeError` subclasses become their status code with the error's
  message (which names what to fix); RESOURCE_EXHAUSTED carries ``retry-after-s`` (seconds, ms
  precision) and ``retry-after`` (whole seconds, rounded up, as HTTP's Retry-After) trailing metadata.
* Any other exception is a bug: logged with its traceback, returned as INTERNAL (no details leaked).
* The caller's deadline becomes the request's absolute deadline (``context.deadline_var``) so every
  outbound call made while handling it inherits what is left.

Why not ``grpc.aio.ServerInterceptor``: grpc.aio runs the interceptor chain on *every* call (one
coroutine per interceptor, and each rebuilt its wrapped handler per call). A :class:`MethodInterceptor`
instead wraps a method's handler **once**, when the servicer is registered, and
binds its metric children then (:class:`WrappingServer`); per call only the wrapped coroutines run.
The chain is the same as before: the platform's :class:`ServerInterceptor` outermost, then the app's (authentication, rate
limit, load shedding), then the servicer. Health checks and reflection are never wrapped.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from typing import Any, Callable, Sequence

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from cascade_core.errors import CascadeError, InvalidArgumentError, ResourceExhaustedError
from cascade_platform import metrics, tracing
from cascade_platform.context import deadline_var, request_id_var, trace_headers_var

log = logging.getLogger("cascade.rpc")
_tracer = trace.get_tracer("cascade.grpc.server")

# Methods no wrapper touches: health checks (kubelet, load balancers) and server reflection.
EXEMPT_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

UnaryBehavior = Callable[[Any, grpc.aio.ServicerContext], Any]  # async (request, context) -> response


def _method_name(full: str) -> str:
    return full.rsplit("/", 1)[-1]


def with_unary(handler: grpc.RpcMethodHandler, behavior: UnaryBehavior, *,
               request_deserializer: Any = "keep") -> grpc.RpcMethodHandler:
    """``handler`` with its unary-unary behaviour replaced (serializers kept unless given)."""
    return grpc.unary_unary_rpc_method_handler(
        behavior,
        request_deserializer=handler.request_deserializer if request_deserializer == "keep" else request_deserializer,
        response_serializer=handler.response_serializer,
    )


class MethodInterceptor:
    """Wraps one method's handler, once, at registration (see the module docstring).

    Subclasses implement :meth:`wrap_unary` (return ``inner`` to leave a method alone); ``inner`` and
    the result are ``async (request, context) -> response``. Streaming handlers go through
    :meth:`wrap_streaming` (default: unchanged).
    """

    def wrap_unary(self, full_method: str, inner: UnaryBehavior) -> UnaryBehavior:
        raise NotImplementedError

    def wrap_streaming(self, full_method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        return handler

    def wrap(self, full_method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if handler.unary_unary is None:
            return self.wrap_streaming(full_method, handler)
        inner = handler.unary_unary
        outer = self.wrap_unary(full_method, inner)
        return handler if outer is inner else with_unary(handler, outer)


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


def _string_metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    return {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}


TRACE_HEADERS = frozenset({"traceparent", "tracestate"})


def _untraced_headers(context: grpc.aio.ServicerContext) -> tuple[str, tuple[tuple[str, str], ...]]:
    """With tracing off: the caller's ``x-request-id`` (the last one, as a dict would keep) and its W3C
    trace headers, to forward verbatim (one pass over the metadata)."""
    rid = ""
    trace_headers: list[tuple[str, str]] = []
    for k, v in context.invocation_metadata() or ():
        if not isinstance(v, str):
            continue
        if k == "x-request-id":
            rid = v
        elif k in TRACE_HEADERS and len(v) <= 512:
            trace_headers.append((k, v))
    return rid, tuple(trace_headers)


class ServerInterceptor(MethodInterceptor):
    """The platform's outermost wrapper (installed by :mod:`cascade_platform.server` for every service)."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._inflight = metrics.GRPC_INFLIGHT.labels(service)

    def wrap(self, full_method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if handler.unary_unary is None or full_method.startswith("/grpc."):  # health, reflection
            return handler
        # Deserialized by the wrapper, not by grpc: bytes that are not the request message are the
        # caller's error (INVALID_ARGUMENT), where grpc's own deserialization failure answers UNKNOWN.
        return with_unary(handler, self._wrap(full_method, handler), request_deserializer=None)

    def _wrap(self, full_method: str, handler: grpc.RpcMethodHandler) -> UnaryBehavior:
        method = _method_name(full_method)
        inner = handler.unary_unary
        service = self.service
        deserialize = handler.request_deserializer
        inflight = self._inflight
        handled = {c: metrics.GRPC_SERVER_HANDLED.labels(service, method, c.name) for c in grpc.StatusCode}
        seconds = metrics.GRPC_SERVER_SECONDS.labels(service, method)
        span_name = f"{service}/{method}"
        perf = time.perf_counter
        monotonic = time.monotonic

        async def call(request, context, bad_request, span):
            try:
                if bad_request is not None:
                    raise bad_request
                return await inner(request, context), grpc.StatusCode.OK
            except CascadeError as e:
                code = getattr(grpc.StatusCode, e.grpc_code_name)
                if span is not None:
                    span.set_status(Status(StatusCode.ERROR, e.message))
                if isinstance(e, ResourceExhaustedError) and e.retry_after_s is not None:
                    context.set_trailing_metadata((
                        ("retry-after-s", f"{e.retry_after_s:.3f}"),
                        ("retry-after", str(max(1, math.ceil(e.retry_after_s)))),  # HTTP-style seconds
                    ))
                log.info("rpc rejected: %s", e.message, extra={"code": code.name, "method": method})
                return e, code
            except grpc.aio.AbortError:
                raise
            except Exception as e:  # a bug: never swallowed, never leaked
                if span is not None:
                    span.record_exception(e)
                    span.set_status(Status(StatusCode.ERROR, type(e).__name__))
                log.exception("rpc failed", extra={"method": method})
                return e, grpc.StatusCode.INTERNAL

        async def wrapped(raw, context: grpc.aio.ServicerContext):
            t0 = perf()
            request, bad_request = _deserialize(deserialize, raw, full_method)
            traced = tracing.enabled()
            if traced:
                md = _string_metadata(context)
                rid_in, passthrough = md.get("x-request-id", ""), ()
            else:
                md = None
                rid_in, passthrough = _untraced_headers(context)
            rid = _request_id(rid_in or getattr(request, "request_id", ""))
            tok_rid = request_id_var.set(rid)
            tok_th = trace_headers_var.set(passthrough)
            remaining = context.time_remaining()
            tok_dl = deadline_var.set(monotonic() + remaining if remaining is not None else None)
            code = grpc.StatusCode.UNKNOWN
            inflight.inc()
            try:
                if traced:
                    tok_ctx = otel_context.attach(propagate.extract(md))
                    try:
                        with _tracer.start_as_current_span(
                            span_name, kind=SpanKind.SERVER,
                            attributes={"rpc.system": "grpc", "rpc.method": method, "cascade.request_id": rid},
                        ) as span:
                            result, code = await call(request, context, bad_request, span)
                    finally:
                        otel_context.detach(tok_ctx)
                else:
                    result, code = await call(request, context, bad_request, None)
                if code is grpc.StatusCode.OK:
                    return result
                if code is grpc.StatusCode.INTERNAL:
                    await context.abort(code, f"internal error in {service}.{method} (request_id={rid})")
                await context.abort(code, result.message)
            except grpc.aio.AbortError:
                if code is grpc.StatusCode.UNKNOWN:  # aborted by the handler itself
                    code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            except asyncio.CancelledError:  # the caller went away (or its deadline passed) mid-call
                code = grpc.StatusCode.CANCELLED
                raise
            finally:
                inflight.dec()
                handled[code].inc()
                seconds.observe(perf() - t0)
                deadline_var.reset(tok_dl)
                trace_headers_var.reset(tok_th)
                request_id_var.reset(tok_rid)

        return wrapped


def chain(interceptors: Sequence[MethodInterceptor]) -> Callable[[str, grpc.RpcMethodHandler], grpc.RpcMethodHandler]:
    """One function wrapping a handler with ``interceptors`` (the first is outermost)."""

    def wrap(full_method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if full_method.startswith(EXEMPT_PREFIXES):
            return handler
        for icp in reversed(interceptors):
            handler = icp.wrap(full_method, handler)
        return handler

    return wrap


class _WrappedGenericHandler(grpc.GenericRpcHandler):
    """A registered generic handler whose method handlers are wrapped once, on first use."""

    def __init__(self, inner: grpc.GenericRpcHandler, wrap: Callable[[str, grpc.RpcMethodHandler], Any]) -> None:
        self._inner = inner
        self._wrap = wrap
        self._cache: dict[str, grpc.RpcMethodHandler] = {}

    def service(self, handler_call_details):
        method = handler_call_details.method
        h = self._cache.get(method)
        if h is not None:
            return h
        h = self._inner.service(handler_call_details)
        if h is None:  # not one of ours (never cached: callers may send any method name)
            return None
        h = self._cache[method] = self._wrap(method, h)
        return h


class WrappingServer:
    """What ``ServiceApp.register`` receives: the real ``grpc.aio.Server``, except that the handlers it
    registers are wrapped by the interceptor chain (generated ``add_*Servicer_to_server`` functions call
    ``add_generic_rpc_handlers`` and ``add_registered_method_handlers``)."""

    def __init__(self, server: grpc.aio.Server, interceptors: Sequence[MethodInterceptor]) -> None:
        self._server = server
        self._wrap = chain(interceptors)

    def add_generic_rpc_handlers(self, handlers) -> None:
        self._server.add_generic_rpc_handlers(tuple(_WrappedGenericHandler(h, self._wrap) for h in handlers))

    def add_registered_method_handlers(self, service_name: str, method_handlers: dict) -> None:
        wrapped = {m: self._wrap(f"/{service_name}/{m}", h) for m, h in method_handlers.items()}
        self._server.add_registered_method_handlers(service_name, wrapped)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)
