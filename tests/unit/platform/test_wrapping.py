"""Method wrappers are applied once per method at registration (not per call), in chain order, and never
to health checks or reflection; unknown method names are not cached."""

from __future__ import annotations

import grpc
import pytest

from cascade_platform.auth import AuthInterceptor
from cascade_platform.interceptors import MethodInterceptor, ServerInterceptor, WrappingServer, chain


class _Details:
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


class _Recorder(MethodInterceptor):
    def __init__(self, tag: str, log: list) -> None:
        self.tag, self.log = tag, log
        self.wrapped: list[str] = []

    def wrap_unary(self, full_method, inner):
        self.wrapped.append(full_method)

        async def wrapped(request, context):
            self.log.append(self.tag)
            return await inner(request, context)

        return wrapped


class _FakeServer:
    def __init__(self) -> None:
        self.generic: list = []
        self.registered: dict = {}

    def add_generic_rpc_handlers(self, handlers) -> None:
        self.generic.extend(handlers)

    def add_registered_method_handlers(self, service, handlers) -> None:
        self.registered[service] = handlers

    def add_insecure_port(self, address: str) -> int:
        return 1234


def _servicer(log: list):
    async def echo(request, context):
        log.append("servicer")
        return request

    return {"Echo": grpc.unary_unary_rpc_method_handler(echo)}


async def test_wrapped_once_per_method_in_chain_order() -> None:
    log: list = []
    outer, inner = _Recorder("outer", log), _Recorder("inner", log)
    fake = _FakeServer()
    server = WrappingServer(fake, [outer, inner])
    handlers = _servicer(log)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.Svc", handlers),))
    server.add_registered_method_handlers("t.Svc", handlers)
    assert server.add_insecure_port("x") == 1234  # everything else reaches the real server

    (generic,) = fake.generic
    first = generic.service(_Details("/t.Svc/Echo"))
    for _ in range(5):
        assert generic.service(_Details("/t.Svc/Echo")) is first  # cached: no re-wrapping per call
    assert outer.wrapped == ["/t.Svc/Echo", "/t.Svc/Echo"]  # generic (first use) + registered, never again
    assert await first.unary_unary(b"x", None) == b"x"
    assert log == ["outer", "inner", "servicer"]
    log.clear()
    assert await fake.registered["t.Svc"]["Echo"].unary_unary(b"y", None) == b"y"
    assert log == ["outer", "inner", "servicer"]

    # Unknown methods: None, and nothing cached (any caller may send any name).
    assert generic.service(_Details("/t.Svc/Nope")) is None
    assert "/t.Svc/Nope" not in generic._cache


def test_health_and_reflection_are_never_wrapped() -> None:
    rec = _Recorder("r", [])
    wrap = chain([rec])
    h = grpc.unary_unary_rpc_method_handler(lambda r, c: r)
    assert wrap("/grpc.health.v1.Health/Check", h) is h
    assert wrap("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", h) is h
    assert rec.wrapped == []
    assert wrap("/t.Svc/Echo", h) is not h


def test_platform_wrapper_takes_raw_bytes_and_leaves_streaming_alone() -> None:
    deser = lambda b: b  # noqa: E731
    h = grpc.unary_unary_rpc_method_handler(lambda r, c: r, request_deserializer=deser)
    out = ServerInterceptor("unit").wrap("/t.Svc/Echo", h)
    assert out.request_deserializer is None  # the wrapper parses: bad bytes -> INVALID_ARGUMENT
    stream = grpc.unary_stream_rpc_method_handler(lambda r, c: iter(()))
    assert ServerInterceptor("unit").wrap("/t.Svc/Watch", stream) is stream


class _Ctx:
    def __init__(self) -> None:
        self.aborted: tuple | None = None

    async def abort(self, code, details):
        self.aborted = (code, details)
        raise grpc.aio.AbortError()


async def test_auth_refuses_streaming_methods_instead_of_skipping_authentication() -> None:
    class _Never:
        async def authenticate(self, md):  # pragma: no cover - must not be reached
            raise AssertionError("streaming call reached the authenticator")

    stream = grpc.unary_stream_rpc_method_handler(lambda r, c: iter(()))
    refused = AuthInterceptor("unit", _Never()).wrap("/t.Svc/Watch", stream)
    assert refused is not stream and refused.unary_stream is not None
    ctx = _Ctx()
    with pytest.raises(grpc.aio.AbortError):
        await refused.unary_stream(b"", ctx)
    assert ctx.aborted == (grpc.StatusCode.UNIMPLEMENTED, "streaming methods are not served here")


async def test_a_cancelled_call_is_counted_as_cancelled() -> None:
    import asyncio

    from prometheus_client import REGISTRY

    async def hangs_up(request, context):
        raise asyncio.CancelledError()

    class _Call(_Ctx):
        def invocation_metadata(self):
            return (("x-request-id", "r-1"),)

        def time_remaining(self):
            return None

    labels = {"service": "unit-cancel", "method": "Echo", "code": "CANCELLED"}
    before = REGISTRY.get_sample_value("cascade_grpc_server_handled_total", labels) or 0.0
    h = ServerInterceptor("unit-cancel").wrap("/t.Svc/Echo", grpc.unary_unary_rpc_method_handler(hangs_up))
    with pytest.raises(asyncio.CancelledError):
        await h.unary_unary(b"", _Call())
    assert REGISTRY.get_sample_value("cascade_grpc_server_handled_total", labels) == before + 1
    inflight = REGISTRY.get_sample_value("cascade_grpc_inflight_requests", {"service": "unit-cancel"})
    assert inflight == 0


async def test_trace_headers_pass_through_a_service_with_tracing_off() -> None:
    """A service without an exporter still forwards the caller's W3C trace headers (and request id) on its
    own outbound calls, so a trace crossing it stays one trace."""
    from cascade_platform import tracing
    from cascade_platform.client import Caller

    assert not tracing.enabled()
    seen: dict = {}
    state: dict = {}

    async def leaf(request: bytes, context) -> bytes:
        seen.update({k: v for k, v in context.invocation_metadata() if isinstance(v, str)})
        return b"leaf"

    async def fwd(request: bytes, context) -> bytes:
        return await state["caller"](b"x", 5.0)

    server = grpc.aio.server()
    WrappingServer(server, [ServerInterceptor("unit-trace")]).add_generic_rpc_handlers((
        grpc.method_handlers_generic_handler("t.Svc", {
            "Leaf": grpc.unary_unary_rpc_method_handler(leaf),
            "Fwd": grpc.unary_unary_rpc_method_handler(fwd),
        }),
    ))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            state["caller"] = Caller("unit-trace", "self", ch.unary_unary("/t.Svc/Leaf"), 5.0)
            tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
            out = await ch.unary_unary("/t.Svc/Fwd")(
                b"", timeout=5,
                metadata=(("traceparent", tp), ("tracestate", "vendor=1"), ("x-request-id", "req-42")),
            )
    finally:
        await server.stop(0)
    assert out == b"leaf"
    assert seen["traceparent"] == tp and seen["tracestate"] == "vendor=1"
    assert seen["x-request-id"] == "req-42"
