"""Load shedding in a real router process.

Retrieval is a *hung* dependency: a gRPC server that accepts every call and never answers, so each
admitted call stays in flight until its retrieval deadline, then is served by the popularity
fallback. 12 calls at once against soft limit 2 / hard limit 6: the first two run at full quality,
the next four are shrunk (quality factor < 1, degraded), the rest are refused with retry-after.
"""

from __future__ import annotations

import threading
from concurrent import futures
from collections import Counter
from collections.abc import Iterator

import grpc
import pytest
from cascade.router.v1 import router_pb2_grpc
from cascade_platform.procs import ServiceProcess, free_port
from sec_procs import build_registry, metric_value, outcome, recommend_future, scrape, start_router, trailing

pytestmark = [pytest.mark.security, pytest.mark.integration]

SOFT, HARD, CALLS = 2, 6, 12
NUM_CANDIDATES = 40  # below the fixture's 60 popular items, so shrinking shows in the counts


@pytest.fixture(scope="module")
def hung_target() -> Iterator[str]:
    """A real gRPC server that accepts every call and answers none: each call waits out its deadline.

    (A bare listening socket would not do: gRPC gives up on its HTTP/2 handshake after ~20 s and then
    fails calls fast, so whether calls overlap would depend on when the test starts.)
    """
    release = threading.Event()

    def hang(request: bytes, context: grpc.ServicerContext) -> bytes:
        release.wait(timeout=max(0.0, (context.time_remaining() or 30.0) + 1.0))
        context.abort(grpc.StatusCode.UNAVAILABLE, "hung test dependency")

    class _AnyMethod(grpc.GenericRpcHandler):
        def service(self, handler_call_details):  # noqa: ANN001 - grpc API
            return grpc.unary_unary_rpc_method_handler(hang)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=64))
    server.add_generic_rpc_handlers((_AnyMethod(),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        release.set()
        server.stop(grace=None)


@pytest.fixture(scope="module")
def shed_router(tmp_path_factory: pytest.TempPathFactory, hung_target: str) -> Iterator[ServiceProcess]:
    tmp = tmp_path_factory.mktemp("shed_router")
    reg = build_registry(tmp / "artifacts")
    metrics_port = free_port()
    proc = start_router(
        tmp, reg.root,
        targets={"retrieval": hung_target},
        CASCADE_METRICS_PORT=str(metrics_port),
        CASCADE_RETRIEVAL_TIMEOUT_S="6",
        CASCADE_REQUEST_BUDGET_S="30",
        CASCADE_SHEDDING__SOFT_LIMIT=str(SOFT),
        CASCADE_SHEDDING__HARD_LIMIT=str(HARD),
        CASCADE_NUM_CANDIDATES=str(NUM_CANDIDATES),
        CASCADE_SHEDDING__MIN_QUALITY="0.25",
        CASCADE_SHEDDING__MIN_CANDIDATES="5",
        CASCADE_SHEDDING__RETRY_AFTER_S="2",
    )
    proc.metrics_port = metrics_port  # type: ignore[attr-defined]
    try:
        yield proc
    finally:
        proc.stop()


def test_soft_bound_shrinks_and_hard_bound_refuses(shed_router: ServiceProcess) -> None:
    with grpc.insecure_channel(shed_router.target) as ch:
        stub = router_pb2_grpc.RecommendationServiceStub(ch)
        futs = [recommend_future(stub, user=f"u{i}") for i in range(CALLS)]
        results = [outcome(f) for f in futs]
    codes = Counter(code for code, _ in results)
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
    # Every call is in flight for ~6 s, so all 12 overlap: exactly HARD are admitted.
    assert codes[grpc.StatusCode.OK] == HARD, codes
    assert codes[grpc.StatusCode.RESOURCE_EXHAUSTED] == CALLS - HARD, codes
    for code, res in results:
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            md = trailing(res)
            assert md["retry-after"] == "2" and float(md["retry-after-s"]) == 2.0, md
            assert "router overloaded" in res.details() and f"hard limit {HARD}" in res.details()
    full, shrunk = [], []
    for f in futs:
        if f.code() != grpc.StatusCode.OK:
            continue
        q = dict(f.trailing_metadata() or ()).get("x-cascade-quality-factor")
        assert f.result().degraded  # retrieval hung: popularity fallback (shrunk ones are degraded anyway)
        (shrunk if q is not None else full).append(1.0 if q is None else float(q))
    assert len(full) == SOFT, (full, shrunk)
    assert len(shrunk) == HARD - SOFT, (full, shrunk)
    assert all(0.25 <= q < 1.0 for q in shrunk), shrunk
    text = scrape(shed_router.metrics_port)
    assert metric_value(text, "cascade_load_shed_total", 'action="refused",service="router"') == CALLS - HARD
    assert metric_value(text, "cascade_load_shed_total", 'action="shrunk",service="router"') == HARD - SOFT
    # Shrunk calls asked for fewer candidates: the popularity fallback returned fewer rows to rank
    # (full quality: NUM_CANDIDATES rows each; shrunk: int(NUM_CANDIDATES x quality)).
    assert metric_value(text, "cascade_candidates_count", 'service="router",stage="retrieved"') == HARD
    retrieved = metric_value(text, "cascade_candidates_sum", 'service="router",stage="retrieved"')
    assert retrieved == SOFT * NUM_CANDIDATES + sum(int(NUM_CANDIDATES * q) for q in shrunk), retrieved


def test_calls_after_the_overload_get_full_quality(shed_router: ServiceProcess) -> None:
    with grpc.insecure_channel(shed_router.target) as ch:
        stub = router_pb2_grpc.RecommendationServiceStub(ch)
        f = recommend_future(stub)
        code, resp = outcome(f)
    assert code == grpc.StatusCode.OK, resp
    assert "x-cascade-quality-factor" not in dict(f.trailing_metadata() or ())
