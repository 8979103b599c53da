"""grpc.aio server bootstrap shared by every Cascade service.

A service subclasses :class:`ServiceApp`::

    class RetrievalApp(ServiceApp):
        name = "retrieval"
        service_names = (retrieval_pb2.DESCRIPTOR.services_by_name["RetrievalService"].full_name,)

        def __init__(self, settings): ...            # no I/O
        async def start(self): ...                   # load models, connect stores
        def register(self, server): ...              # add servicers
        async def stop(self): ...

    if __name__ == "__main__":
        main(RetrievalApp, RetrievalSettings)

:func:`serve` then: binds the port, registers ``grpc.health.v1`` (NOT_SERVING until ``start()``
returned) and server reflection, wraps the servicers' methods (errors -> codes, metrics, traces),
serves Prometheus ``/metrics``, and on SIGTERM/SIGINT flips health to NOT_SERVING, waits
``drain_seconds`` for in-flight RPCs and stops.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import signal
from typing import ClassVar, Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from cascade_platform import metrics, tls
from cascade_platform.auth import internal_auth_interceptors
from cascade_platform.interceptors import MethodInterceptor, ServerInterceptor, WrappingServer
from cascade_platform.logs import setup_logging
from cascade_platform.settings import ServiceSettings, load_settings
from cascade_platform.tracing import setup_tracing, shutdown_tracing

log = logging.getLogger("cascade.server")


class ServiceApp(abc.ABC):
    name: ClassVar[str]
    service_names: ClassVar[Sequence[str]]

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings

    @abc.abstractmethod
    async def start(self) -> None:
        """Load models / connect stores. Health turns SERVING only after this returns."""

    @abc.abstractmethod
    def register(self, server: grpc.aio.Server) -> None:
        """Add servicers to the server."""

    async def stop(self) -> None:
        return None

    # Internal services (retrieval, features, ranking) require the service token when it is configured;
    # the edge (router) authenticates its clients instead.
    internal: ClassVar[bool] = True

    def interceptors(self) -> list[MethodInterceptor]:
        """Interceptors run inside the platform's (so their errors map to codes): authentication, rate
        limits, load shedding. Default: the internal service credential (when configured)."""
        if not self.internal:
            return []
        return internal_auth_interceptors(self.name, self.settings.internal_auth)


class RunningServer:
    """Handle returned by :func:`start_server` (used by ``serve`` and by in-process tests)."""

    def __init__(self, app: ServiceApp, server: grpc.aio.Server, port: int, health: health.aio.HealthServicer):
        self.app = app
        self.server = server
        self.port = port
        self.health = health
        self.health_server: grpc.aio.Server | None = None  # plaintext health port (mTLS deployments)

    async def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", *self.app.service_names):
            await self.health.set(name, status)
        metrics.READY.labels(self.app.name).set(1 if serving else 0)

    async def drain_and_stop(self, grace_s: float) -> None:
        await self.set_serving(False)
        await self.server.stop(grace_s)
        if self.health_server is not None:
            await self.health_server.stop(0)
        await self.app.stop()


async def start_server(app: ServiceApp) -> RunningServer:
    s = app.settings
    options: list[tuple[str, object]] = [("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", 32 << 20)]
    if s.grpc_max_connection_age_s:
        options += [
            ("grpc.max_connection_age_ms", int(s.grpc_max_connection_age_s * 1000)),
            ("grpc.max_connection_age_grace_ms", int(max(s.drain_seconds, 1.0) * 1000)),
        ]
    server = grpc.aio.server(
        options=options,
        maximum_concurrent_rpcs=s.grpc_max_concurrent_rpcs,
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    # The servicers' handlers are wrapped once here (errors -> codes, metrics, traces, then the app's
    # authentication / rate limit / shedding), not by a per-call grpc.aio interceptor chain.
    app.register(WrappingServer(server, [ServerInterceptor(app.name), *app.interceptors()]))
    reflection.enable_server_reflection(
        (*app.service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server,
    )
    port = tls.add_port(server, f"{s.host}:{s.port}", s.tls)
    if port == 0:
        raise SystemExit(f"could not bind {s.host}:{s.port} (CASCADE_PORT): port in use?")
    running = RunningServer(app, server, port, health_servicer)
    if s.tls.enabled and s.tls.health_port is not None:
        # kubelet's gRPC probes speak plaintext only: health (and nothing else) on its own port.
        running.health_server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, running.health_server)
        hp = running.health_server.add_insecure_port(f"{s.host}:{s.tls.health_port}")
        if hp == 0:
            raise SystemExit(f"could not bind {s.host}:{s.tls.health_port} (CASCADE_TLS__HEALTH_PORT)")
        await running.health_server.start()
    await running.set_serving(False)
    await server.start()
    log.info("listening", extra={"event": "listening", "method": f"{s.host}:{port}"})
    await app.start()
    await running.set_serving(True)
    log.info("serving", extra={"event": "serving"})
    return running


async def serve(app: ServiceApp) -> None:
    s = app.settings
    metrics.start_metrics_server(s.metrics_port, host="0.0.0.0" if s.host == "0.0.0.0" else "127.0.0.1")
    running = await start_server(app)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("draining", extra={"event": "draining"})
    await running.drain_and_stop(s.drain_seconds)
    log.info("stopped", extra={"event": "stopped"})


def run(coro, event_loop: str = "uvloop"):
    """``asyncio.run(coro)`` on uvloop (the default: grpc.aio's completion-queue wakeups and every
    await cost less CPU on it) or on the stdlib loop (``CASCADE_EVENT_LOOP=asyncio``)."""
    if event_loop == "uvloop":
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


def main(app_cls: type[ServiceApp], settings_cls: type[ServiceSettings]) -> None:
    settings = load_settings(settings_cls)
    setup_logging(app_cls.name, settings.log_level, settings.log_json)
    setup_tracing(app_cls.name, settings.otlp_endpoint, settings.trace_file)
    app = app_cls(settings)
    try:
        run(serve(app), settings.event_loop)
    finally:
        shutdown_tracing()
