"""cascade_platform: health gating, reflection, error mapping, metrics, deadline propagation."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import REGISTRY

from cascade.ranking.v1 import ranking_pb2, ranking_pb2_grpc
from cascade_core.errors import InvalidArgumentError, ResourceExhaustedError, UnavailableError
from cascade_platform.client import Caller, make_channel
from cascade_platform.context import remaining_s
from cascade_platform.server import ServiceApp, start_server
from cascade_platform.settings import ServiceSettings, load_settings

SERVICE = ranking_pb2.DESCRIPTOR.services_by_name["RankingService"].full_name


class _Servicer(ranking_pb2_grpc.RankingServiceServicer):
    def __init__(self, app: "_App") -> None:
        self.app = app

    async def Rank(self, request, context):
        if request.model_name == "bad":
            raise InvalidArgumentError("model_name", "unknown model 'bad'; use 'ranker'")
        if request.model_name == "bug":
            raise ZeroDivisionError("a bug")
        if request.model_name == "busy":
            raise ResourceExhaustedError("too many requests", retry_after_s=1.5)
        if request.model_name == "down":
            raise UnavailableError("store down")
        if request.model_name == "deadline":
            self.app.seen_remaining = remaining_s()
        if request.model_name == "forward":
            # call ourselves through a Caller: the inner deadline must be <= what is left
            inner = ranking_pb2.RankRequest(model_name="deadline")
            await self.app.caller(inner, timeout_s=30.0)
        return ranking_pb2.RankResponse(scores=[1.0, 0.5], model_name=request.model_name or "ranker")


class _App(ServiceApp):
    name = "unittest"
    service_names = (SERVICE,)

    def __init__(self, settings: ServiceSettings) -> None:
        super().__init__(settings)
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.seen_remaining: float | None = None
        self.caller: Caller | None = None

    async def start(self) -> None:
        self.started.set()
        await self.release.wait()

    def register(self, server) -> None:
        ranking_pb2_grpc.add_RankingServiceServicer_to_server(_Servicer(self), server)


@pytest.fixture
async def running():
    app = _App(ServiceSettings(port=0, metrics_port=0, drain_seconds=0.1))
    task = asyncio.create_task(start_server(app))
    await app.started.wait()
    yield app, task
    srv = await task
    await srv.drain_and_stop(0.1)


async def _health(port: int, service: str = "") -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        r = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
        return r.status


async def test_health_serving_only_after_start_and_reflection(running):
    app, task = running
    app.release.set()
    srv = await task
    assert await _health(srv.port) == health_pb2.HealthCheckResponse.SERVING
    assert await _health(srv.port, SERVICE) == health_pb2.HealthCheckResponse.SERVING
    async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)

        async def reqs():
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        names = []
        async for resp in stub.ServerReflectionInfo(reqs()):
            names = [s.name for s in resp.list_services_response.service]
    assert SERVICE in names and "grpc.health.v1.Health" in names


async def test_not_serving_while_starting():
    from cascade_platform.procs import free_port

    port = free_port()
    app = _App(ServiceSettings(port=port))
    task = asyncio.create_task(start_server(app))
    await app.started.wait()  # bound and answering health, but start() has not returned
    assert await _health(port) == health_pb2.HealthCheckResponse.NOT_SERVING
    assert await _health(port, SERVICE) == health_pb2.HealthCheckResponse.NOT_SERVING
    app.release.set()
    srv = await task
    assert await _health(port) == health_pb2.HealthCheckResponse.SERVING
    await srv.drain_and_stop(0.1)
    assert srv.port == port


async def test_error_mapping_and_metrics(running):
    app, task = running
    app.release.set()
    srv = await task
    async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
        stub = ranking_pb2_grpc.RankingServiceStub(ch)
        assert list((await stub.Rank(ranking_pb2.RankRequest(), timeout=2)).scores) == [1.0, 0.5]
        cases = {
            "bad": (grpc.StatusCode.INVALID_ARGUMENT, "model_name: unknown model 'bad'; use 'ranker'"),
            "down": (grpc.StatusCode.UNAVAILABLE, "store down"),
            "busy": (grpc.StatusCode.RESOURCE_EXHAUSTED, "too many requests"),
        }
        for name, (code, msg) in cases.items():
            with pytest.raises(grpc.aio.AioRpcError) as ei:
                await stub.Rank(ranking_pb2.RankRequest(model_name=name), timeout=2)
            assert ei.value.code() == code
            assert ei.value.details() == msg
            if name == "busy":
                assert dict(ei.value.trailing_metadata())["retry-after-s"] == "1.500"
        with pytest.raises(grpc.aio.AioRpcError) as ei:
            await stub.Rank(ranking_pb2.RankRequest(model_name="bug"), timeout=2)
        assert ei.value.code() == grpc.StatusCode.INTERNAL
        assert "a bug" not in ei.value.details()  # no internals leaked
    for code in ("OK", "INVALID_ARGUMENT", "UNAVAILABLE", "INTERNAL", "RESOURCE_EXHAUSTED"):
        v = REGISTRY.get_sample_value(
            "cascade_grpc_server_handled_total", {"service": "unittest", "method": "Rank", "code": code}
        )
        assert v and v >= 1, code


async def test_deadline_propagates_to_outbound_calls(running):
    app, task = running
    app.release.set()
    srv = await task
    ch = make_channel(f"127.0.0.1:{srv.port}")
    app.caller = Caller("unittest", "ranking", ranking_pb2_grpc.RankingServiceStub(ch).Rank, default_timeout_s=30)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as outer:
        stub = ranking_pb2_grpc.RankingServiceStub(outer)
        await stub.Rank(ranking_pb2.RankRequest(model_name="forward"), timeout=1.0)
    await ch.close()
    # The inner call asked for 30 s but must have inherited < 1 s from the outer request.
    assert app.seen_remaining is not None and 0 < app.seen_remaining <= 1.0


async def test_caller_maps_outage_to_unavailable():
    from cascade_platform.procs import free_port

    ch = make_channel(f"127.0.0.1:{free_port()}")  # nothing listens there: a real outage
    caller = Caller("unittest", "ranking", ranking_pb2_grpc.RankingServiceStub(ch).Rank, default_timeout_s=0.5)
    with pytest.raises(UnavailableError) as ei:
        await caller(ranking_pb2.RankRequest())
    assert "ranking" in str(ei.value)
    await ch.close()


def test_settings_fail_fast_names_the_variable(monkeypatch, capsys):
    monkeypatch.setenv("CASCADE_PORT", "not-a-port")
    with pytest.raises(SystemExit) as ei:
        load_settings(ServiceSettings)
    assert ei.value.code == 2
    assert "CASCADE_PORT" in capsys.readouterr().err
