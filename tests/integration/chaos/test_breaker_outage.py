"""Circuit breaker end to end: a real ranking process killed (-9) under a real router.

While ranking is down the router's ranking breaker opens and requests are answered degraded
(retrieval order) without an RPC to ranking (``cascade_circuit_rejected_total`` grows, the outbound
RPC count does not); after ranking restarts on the same port a half-open probe closes the breaker
and requests are ranked again.
"""

from __future__ import annotations

import os
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from cascade.router.v1 import router_pb2, router_pb2_grpc
from cascade_core.registry import Registry
from cascade_platform.procs import ServiceProcess, free_port
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
RETRIEVAL_ORDER = "+retrieval-order"


def _artifacts() -> Path:
    return Path(os.environ.get("CASCADE_ARTIFACTS_DIR", ROOT / "artifacts")).resolve()


def sample(port: int, name: str, **labels: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    total = 0.0
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def poll(cond, attempts: int, what: str, pause_s: float = 0.5):
    """Call ``cond`` up to ``attempts`` times (a bounded number of requests, not a clock)."""
    for _ in range(attempts):
        v = cond()
        if v:
            return v
        time.sleep(pause_s)
    pytest.fail(f"gave up after {attempts} attempts waiting for {what}")


@pytest.fixture
def stack(tmp_path):
    reg = Registry(_artifacts())
    if not reg.versions():
        pytest.fail(f"no model registered under {_artifacts()}: run `make artifacts` (make test does it)")
    base = {"CASCADE_ARTIFACTS_DIR": str(_artifacts()), "CASCADE_LOG_JSON": "true"}
    ranking = ServiceProcess("ranking", "cascade_ranking", free_port(),
                             env={**base, "CASCADE_METRICS_PORT": "0"}, log_path=tmp_path / "ranking.log")
    mport = free_port()
    router = ServiceProcess("router", "cascade_router", free_port(), env={
        **base, "CASCADE_METRICS_PORT": str(mport),
        "CASCADE_RANKING_TARGET": ranking.target,
        # retrieval and features are closed ports: popularity candidates, default features
        "CASCADE_RETRIEVAL_TARGET": f"127.0.0.1:{free_port()}",
        "CASCADE_FEATURES_TARGET": f"127.0.0.1:{free_port()}",
        "CASCADE_REQUEST_BUDGET_S": "10", "CASCADE_RANKING_TIMEOUT_S": "5",
        "CASCADE_BREAKER__FAILURE_THRESHOLD": "3", "CASCADE_BREAKER__OPEN_S": "3",
        "CASCADE_BREAKER__MAX_OPEN_S": "3",
    }, log_path=tmp_path / "router.log")
    procs = [ranking.start(), router.start()]
    try:
        ranking.wait_serving(180)
        router.wait_serving(180)
        yield ranking, router, mport
    finally:
        for p in reversed(procs):
            p.stop()


def test_router_fails_fast_while_ranking_is_down_and_recovers(stack):
    ranking, router, mport = stack
    labels = {"service": "router", "target": "ranking"}
    with grpc.insecure_channel(router.target) as ch:
        stub = router_pb2_grpc.RecommendationServiceStub(ch)

        def recommend() -> router_pb2.RecommendResponse:
            return stub.Recommend(router_pb2.RecommendRequest(user_id="1", num_items=5), timeout=30)

        ranked = poll(lambda: not recommend().model_version.endswith(RETRIEVAL_ORDER), 60, "ranking to serve")
        assert ranked and sample(mport, "cascade_circuit_state", **labels) == 0

        ranking.kill()  # kill -9
        # consecutive failures open the breaker; every answer meanwhile is a degraded fallback
        def opened() -> bool:
            r = recommend()
            assert r.degraded and r.model_version.endswith(RETRIEVAL_ORDER) and len(r.items) == 5
            return sample(mport, "cascade_circuit_state", **labels) == 2
        poll(opened, 30, "the ranking breaker to open", pause_s=0.0)
        assert sample(mport, "cascade_circuit_transitions_total", **labels, to="open") >= 1

        # open: the fallback is served without calling ranking at all
        rpcs_before = sample(mport, "cascade_grpc_client_handled_total", **labels)
        rejected_before = sample(mport, "cascade_circuit_rejected_total", **labels)

        def failed_fast() -> bool:
            r = recommend()
            assert r.degraded and r.model_version.endswith(RETRIEVAL_ORDER)
            return sample(mport, "cascade_circuit_rejected_total", **labels) > rejected_before
        poll(failed_fast, 20, "a call rejected by the open breaker", pause_s=0.0)
        rejected = sample(mport, "cascade_circuit_rejected_total", **labels) - rejected_before
        rpcs = sample(mport, "cascade_grpc_client_handled_total", **labels) - rpcs_before
        assert rejected >= 1 and rpcs <= rejected_before + rejected + 1  # fail-fast answers made no RPC

        # restart on the same port: a half-open probe succeeds and closes the breaker
        restarted = ServiceProcess(ranking.name, ranking.module, ranking.port, env=ranking.env,
                                   log_path=ranking.log_path).start()
        try:
            restarted.wait_serving(180)
            poll(lambda: not recommend().model_version.endswith(RETRIEVAL_ORDER), 60, "ranked answers again")
            assert sample(mport, "cascade_circuit_state", **labels) == 0
            assert sample(mport, "cascade_circuit_transitions_total", **labels, to="closed") >= 1
            assert sample(mport, "cascade_circuit_transitions_total", **labels, to="half_open") >= 1
        finally:
            restarted.stop()
