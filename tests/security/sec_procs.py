"""Helpers for the security integration tests: real router processes (reusing the router integration
helpers and the tiny fixture registry), concurrent calls, metadata and metrics look-ups."""

from __future__ import annotations

import sys
from concurrent.futures import Future
from pathlib import Path

import grpc
from cascade.router.v1 import router_pb2, router_pb2_grpc

_TESTS = Path(__file__).resolve().parents[1]
for _p in (_TESTS / "integration" / "router", _TESTS / "unit" / "router"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from router_fixture_registry import build_registry  # noqa: E402,F401  (re-exported)
from router_procs import closed_target, metric_value, scrape, start_router  # noqa: E402,F401


def recommend_future(stub: router_pb2_grpc.RecommendationServiceStub, md: tuple = (), user: str = "u1") -> Future:
    return stub.Recommend.future(router_pb2.RecommendRequest(user_id=user, num_items=3), metadata=md, timeout=60)


def outcome(fut) -> tuple[grpc.StatusCode, object]:
    """(code, response or the RpcError) of a finished future."""
    try:
        return grpc.StatusCode.OK, fut.result()
    except grpc.RpcError as e:
        return e.code(), e


def trailing(err: grpc.RpcError) -> dict[str, str]:
    return {k: v for k, v in (err.trailing_metadata() or ())}


def call(stub, md: tuple = (), user: str = "u1"):
    return outcome(recommend_future(stub, md, user))
