"""The demo experiment `make up` loads starts cleanly on a registry with one served version and serves
both arms without fallbacks."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from cascade.router.v1 import router_pb2, router_pb2_grpc
from cascade_router.experiments import Assigner, load_experiments
from expstack import GENEROUS, VERSION_A, Services
from router_procs import start_router

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DEMO = Path(__file__).resolve().parents[3] / "docs" / "examples" / "experiments.yaml"


def test_demo_experiment_serves_both_arms(services: Services, tmp_path: Path):
    assigner = Assigner(load_experiments(DEMO))
    router = start_router(tmp_path, services.registry.root, targets=services.targets(),
                          CASCADE_EXPERIMENTS_FILE=str(DEMO), **GENEROUS)
    try:
        with grpc.insecure_channel(router.target) as ch:
            stub = router_pb2_grpc.RecommendationServiceStub(ch)
            seen = set()
            for u in range(10):
                uid = f"u{u}"
                resp = stub.Recommend(router_pb2.RecommendRequest(user_id=uid, num_items=5), timeout=60)
                assert resp.variant == assigner.assign(uid).name
                assert not resp.degraded and resp.model_version == VERSION_A and len(resp.items) == 5
                seen.add(resp.variant)
            qa = stub.Recommend(router_pb2.RecommendRequest(user_id="qa-treatment", num_items=5), timeout=60)
        assert qa.variant == "treatment" and not qa.degraded
        assert seen == {"control", "treatment", "holdout"}  # the demo salts put u0..u9 in all three
    finally:
        router.stop()
