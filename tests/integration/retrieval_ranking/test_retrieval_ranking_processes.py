"""Retrieval and ranking as real processes over gRPC: health, the retrieve -> rank path, field-naming
errors, Prometheus metrics and a zero-error hot switch of the ranker version."""

from __future__ import annotations

import threading
import time
import urllib.request

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from cascade.ranking.v1 import ranking_pb2, ranking_pb2_grpc
from cascade.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from cascade_core.features import FeatureLayout
from cascade_retrieval.service import SERVICE_NAME as RETRIEVAL_SERVICE
from cascade_ranking.service import SERVICE_NAME as RANKING_SERVICE

pytestmark = pytest.mark.integration


def _stubs(stack):
    rch = grpc.insecure_channel(stack.retrieval.target)
    kch = grpc.insecure_channel(stack.ranking.target)
    return rch, kch, retrieval_pb2_grpc.RetrievalServiceStub(rch), ranking_pb2_grpc.RankingServiceStub(kch)


def _rank_request(x: np.ndarray, names=(), **kw) -> ranking_pb2.RankRequest:
    x = np.ascontiguousarray(x, dtype="<f4")
    return ranking_pb2.RankRequest(rows=x.shape[0], cols=x.shape[1], matrix=x.tobytes(),
                                   feature_names=list(names), **kw)


def _wait_for(predicate, what: str, limit_s: float = 60.0) -> None:
    """Poll until ``predicate()`` holds (a safety limit, not a latency assertion)."""
    end = time.monotonic() + limit_s
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def test_both_services_report_serving(stack):
    for proc, service in ((stack.retrieval, RETRIEVAL_SERVICE), (stack.ranking, RANKING_SERVICE)):
        with grpc.insecure_channel(proc.target) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            for name in ("", service):
                resp = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
                assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_retrieve_then_rank(stack):
    v1 = stack.versions["v1"]
    rch, kch, retrieval, ranking = _stubs(stack)
    with rch, kch:
        cands = retrieval.Retrieve(retrieval_pb2.RetrieveRequest(user_id="u012", num_candidates=100,
                                                                 request_id="rr-1"), timeout=10)
        assert len(cands.item_ids) == 100 and not cands.cold_start and cands.model_version == "v1"
        u = v1.user_ids.index("u012")
        assert not {v1.item_ids.index(i) for i in cands.item_ids} & set(v1.consumed_rows(u).tolist())

        layout = FeatureLayout.from_names(v1.manifest.ranker.feature_names)
        rng = np.random.default_rng(3)
        x = layout.assemble(rng.normal(0, 1, layout.user_dim),
                            rng.normal(0, 1, (len(cands.item_ids), layout.item_dim)),
                            np.asarray(cands.scores))
        ranked = ranking.Rank(_rank_request(x, layout.names, request_id="rr-1"), timeout=10)
        assert (ranked.model_name, ranked.model_version) == ("ranker", "v1")
        np.testing.assert_allclose(ranked.scores, v1.ranker.predict(x), atol=1e-5, rtol=1e-5)

        cold = retrieval.Retrieve(
            retrieval_pb2.RetrieveRequest(user_id="nobody", num_candidates=7), timeout=10
        )
        assert cold.cold_start and list(cold.sources) == ["popular"] * 7
        assert list(cold.item_ids) == [v1.item_ids[r] for r in v1.popular_order()[:7]]


def _error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as ei:
        call(request, timeout=10)
    return ei.value


def test_invalid_arguments_name_the_field(stack):
    n = len(stack.versions["v1"].manifest.ranker.feature_names)
    x = np.zeros((4, n), np.float32)
    rch, kch, retrieval, ranking = _stubs(stack)
    with rch, kch:
        cases = [
            (retrieval.Retrieve, retrieval_pb2.RetrieveRequest(num_candidates=3), "user_id: "),
            (retrieval.Retrieve, retrieval_pb2.RetrieveRequest(user_id="u1", num_candidates=5000),
             "num_candidates: must be 1-2000, got 5000"),
            (ranking.Rank, _rank_request(np.zeros((2001, n))), "rows: must be 0-2000, got 2001"),
            (ranking.Rank, _rank_request(np.zeros((4, n + 1))), f"cols: ranker ranker:v1 takes {n} features"),
            (ranking.Rank, _rank_request(x, ["user_log_interactions", "wrong"]),
             "feature_names: position 1: expected 'user_mean_rating', got 'wrong'"),
            (ranking.Rank, ranking_pb2.RankRequest(rows=4, cols=n, matrix=b"\0" * 12),
             "matrix: has 12 bytes"),
        ]
        for call, request, message in cases:
            err = _error(call, request)
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert err.details().startswith(message), err.details()
        missing = [
            (retrieval.Retrieve,
             retrieval_pb2.RetrieveRequest(user_id="u1", num_candidates=3, model_version="v7")),
            (ranking.Rank, _rank_request(x, model_version="v7")),
        ]
        for call, request in missing:
            err = _error(call, request)
            assert err.code() == grpc.StatusCode.NOT_FOUND and "'v7'" in err.details()


def _samples(port: int) -> list:
    """Every sample the service's /metrics endpoint exposes, parsed with the Prometheus text parser."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return [s for fam in text_string_to_metric_families(text) for s in fam.samples]


def _value(samples: list, name: str, **labels: str) -> float | None:
    for s in samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return None


def test_metrics_expose_rpc_counts_stages_and_models(stack):
    test_invalid_arguments_name_the_field(stack)  # make sure both services handled errors
    r = _samples(stack.retrieval_metrics)
    assert _value(r, "cascade_grpc_server_handled_total", service="retrieval", method="Retrieve",
                  code="INVALID_ARGUMENT") >= 2
    assert _value(r, "cascade_stage_seconds_count", service="retrieval", stage="ann") >= 1
    assert _value(r, "cascade_model_info", service="retrieval", model="two_tower", version="v1") == 1.0
    k = _samples(stack.ranking_metrics)
    assert _value(k, "cascade_grpc_server_handled_total", service="ranking", method="Rank",
                  code="INVALID_ARGUMENT") >= 4
    assert _value(k, "cascade_model_info", service="ranking", model="ranker", version="v1") == 1.0


class _Load(threading.Thread):
    """Sends Rank requests back to back and records every outcome."""

    def __init__(self, target: str, x: np.ndarray) -> None:
        super().__init__(daemon=True)
        self.channel = grpc.insecure_channel(target)
        self.stub = ranking_pb2_grpc.RankingServiceStub(self.channel)
        self.request = _rank_request(x)
        self.versions: list[str] = []
        self.errors: list[str] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.stop_event.is_set():
            i += 1
            self.request.request_id = f"load-{i}"
            try:
                self.versions.append(self.stub.Rank(self.request, timeout=10).model_version)
            except grpc.RpcError as e:
                self.errors.append(f"{e.code().name}: {e.details()}")

    def seen(self, version: str, after: int = 0) -> int:
        return self.versions[after:].count(version)

    def finish(self) -> None:
        self.stop_event.set()
        self.join(30)
        self.channel.close()


def test_routing_file_switches_versions_without_failed_requests(stack):
    n = len(stack.versions["v1"].manifest.ranker.feature_names)
    x = np.random.default_rng(9).normal(0, 1, (50, n)).astype(np.float32)
    load = _Load(stack.ranking.target, x)
    load.start()
    try:
        _wait_for(lambda: load.seen("v1") >= 20, "traffic on v1")
        stack.write_routing({"default": "v1", "canary": "v2", "canary_weight": 50})
        _wait_for(lambda: load.seen("v2") >= 20, "canary traffic on v2")
        stack.write_routing({"default": "v2"})
        _wait_for(lambda: load.versions[-30:].count("v2") == 30, "all traffic on v2")
        mark = len(load.versions)
        log = stack.ranking.log_path
        stack.write_routing('{"default": "v2", "canary_weight": 40}')  # invalid: canary weight without canary
        _wait_for(lambda: '"event": "routing_rejected"' in log.read_text(),
                  "the bad routing file to be rejected")
        _wait_for(lambda: len(load.versions) >= mark + 50, "traffic after the rejected file")
        assert set(load.versions[mark:]) == {"v2"}
        stack.write_routing({"default": "v1"})
        _wait_for(lambda: load.versions[-30:].count("v1") == 30, "traffic back on v1")
    finally:
        load.finish()
    assert load.errors == []
    first_v2 = load.versions.index("v2")
    assert set(load.versions[:first_v2]) == {"v1"}  # nothing but v1 before the first switch
    with grpc.insecure_channel(stack.ranking.target) as ch:
        resp = ranking_pb2_grpc.RankingServiceStub(ch).Rank(_rank_request(x), timeout=10)
    np.testing.assert_allclose(resp.scores, stack.versions["v1"].ranker.predict(x), atol=1e-5, rtol=1e-5)
