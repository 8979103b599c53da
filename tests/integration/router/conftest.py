"""Fixtures for the router/gateway integration tests: real router processes whose downstreams are
closed ports (a real outage), on a tiny seeded registry (never depends on training)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cascade.router.v1 import router_pb2_grpc  # noqa: E402
from cascade_core.registry import Registry  # noqa: E402
from cascade_platform.procs import ServiceProcess  # noqa: E402
from router_procs import build_registry, start_router  # noqa: E402


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    return build_registry(tmp_path_factory.mktemp("artifacts"))


@pytest.fixture(scope="module")
def router_all_down(
    tmp_path_factory: pytest.TempPathFactory, artifacts: Registry
) -> Iterator[ServiceProcess]:
    proc = start_router(tmp_path_factory.mktemp("router"), artifacts.root)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def router_stub(router_all_down: ServiceProcess) -> Iterator[router_pb2_grpc.RecommendationServiceStub]:
    with grpc.insecure_channel(router_all_down.target) as ch:
        yield router_pb2_grpc.RecommendationServiceStub(ch)
