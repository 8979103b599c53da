"""The router as a real process with every downstream a closed port: popularity fallback, validation,
experiments, metrics and start-up errors."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from cascade.router.v1 import router_pb2, router_pb2_grpc
from cascade_core.registry import Registry
from cascade_platform.procs import ServiceProcess
from cascade_router.experiments import Assigner, load_experiments
from router_fixture_registry import VERSION, popular_ids
from router_procs import build_registry, metric_value, scrape, start_router

pytestmark = pytest.mark.integration


def test_all_down_serves_popularity_from_registry(
    router_stub, router_all_down: ServiceProcess, artifacts: Registry
):
    popular = popular_ids(artifacts)
    resp = router_stub.Recommend(
        router_pb2.RecommendRequest(user_id="1", num_items=5, exclude_item_ids=[popular[0], popular[3]]),
        timeout=30,
    )
    assert resp.degraded is True
    assert resp.variant == "control"
    assert resp.model_version == f"{VERSION}+retrieval-order"
    assert re.fullmatch(r"[0-9a-f]{32}", resp.request_id)
    assert [i.item_id for i in resp.items] == [popular[1], popular[2], *popular[4:7]]
    assert [i.rank for i in resp.items] == [1, 2, 3, 4, 5]
    assert {i.source for i in resp.items} == {"popular"}
    assert all(a.score >= b.score for a, b in zip(resp.items, resp.items[1:]))

    again = router_stub.Recommend(router_pb2.RecommendRequest(user_id="1", request_id="req-7"), timeout=30)
    assert again.request_id == "req-7"
    assert len(again.items) == 10  # num_items 0 means 10


def test_metrics_count_degraded_responses(router_stub, router_all_down: ServiceProcess):
    port = int(router_all_down.env["CASCADE_METRICS_PORT"])
    before = scrape(port)
    router_stub.Recommend(router_pb2.RecommendRequest(user_id="metrics-user"), timeout=30)
    after = scrape(port)
    for name in ("cascade_recommend_total", "cascade_recommend_degraded_total"):
        assert (
            metric_value(after, name, 'variant="control"')
            == metric_value(before, name, 'variant="control"') + 1
        )
    for stage in ("retrieval", "features", "ranking"):
        labels = f'service="router",stage="{stage}"'
        assert (
            metric_value(after, "cascade_fallback_total", labels)
            == metric_value(before, "cascade_fallback_total", labels) + 1
        )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"user_id": ""}, "user_id: required, got an empty string"),
        ({"user_id": "  "}, "user_id: must not be only whitespace"),
        ({"user_id": "x" * 200}, "user_id: must be at most 128 characters, got 200"),
        ({"user_id": "1", "num_items": 500}, "num_items: must be between 1 and 200 (0 means 10), got 500"),
        (
            {"user_id": "1", "exclude_item_ids": [str(i) for i in range(1001)]},
            "exclude_item_ids: at most 1000",
        ),
        ({"user_id": "1", "context": {str(i): "v" for i in range(65)}}, "context: at most 64 entries"),
    ],
)
def test_bad_requests_are_invalid_argument_naming_the_field(router_stub, kwargs, message):
    with pytest.raises(grpc.RpcError) as ei:
        router_stub.Recommend(router_pb2.RecommendRequest(**kwargs), timeout=30)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert ei.value.details().startswith(message)


def test_no_candidate_source_at_all_is_unavailable(tmp_path: Path):
    reg = build_registry(tmp_path / "artifacts", with_popular=False)
    router = start_router(tmp_path, reg.root)
    try:
        with grpc.insecure_channel(router.target) as ch:
            with pytest.raises(grpc.RpcError) as ei:
                router_pb2_grpc.RecommendationServiceStub(ch).Recommend(
                    router_pb2.RecommendRequest(user_id="1"), timeout=30
                )
        assert ei.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "every candidate source failed" in ei.value.details()
    finally:
        router.stop()


def test_experiment_variants_are_sticky_and_carry_their_ranker_version(tmp_path: Path, artifacts: Registry):
    exp = tmp_path / "experiments.yaml"
    exp.write_text(
        "name: ranker-v2\nsalt: it-salt\nvariants:\n"
        "  - {name: control, traffic: 50}\n"
        "  - {name: treatment, ranker_version: v2, traffic: 50}\n"
    )
    expected = Assigner(load_experiments(exp))
    router = start_router(tmp_path, artifacts.root, CASCADE_EXPERIMENTS_FILE=str(exp))
    try:
        with grpc.insecure_channel(router.target) as ch:
            stub = router_pb2_grpc.RecommendationServiceStub(ch)
            seen = set()
            for uid in map(str, range(12)):
                first = stub.Recommend(router_pb2.RecommendRequest(user_id=uid, num_items=1), timeout=30)
                second = stub.Recommend(router_pb2.RecommendRequest(user_id=uid, num_items=1), timeout=30)
                want = expected.assign(uid)
                assert first.variant == second.variant == want.name
                assert first.model_version == f"{want.ranker_version or VERSION}+retrieval-order"
                seen.add(first.variant)
        assert seen == {"control", "treatment"}
    finally:
        router.stop()


def test_bad_experiment_file_stops_startup_naming_the_field(tmp_path: Path, artifacts: Registry):
    exp = tmp_path / "bad.yaml"
    exp.write_text("variants:\n  - {name: control, traffic: 70}\n")
    with pytest.raises(RuntimeError) as ei:
        start_router(tmp_path, artifacts.root, CASCADE_EXPERIMENTS_FILE=str(exp))
    assert "CASCADE_EXPERIMENTS_FILE" in str(ei.value)
    assert "variants: traffic must sum to 100, got 70" in str(ei.value)


def test_print_pipeline():
    out = subprocess.run(
        [sys.executable, "-m", "cascade_router", "--print-pipeline"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    for line in (
        "router.Recommend",
        "retrieval (- -> retrieval_score, source, score) [fail-open]",
        "popular_fallback",
        "exclude_items",
        "features (retrieval_score, source -> features) [fail-open]",
        "ranking (features -> score) [fail-open]",
        "top_k (score -> rank, team)",
        "shadow_ranking (features -> -)",
    ):
        assert line in out
