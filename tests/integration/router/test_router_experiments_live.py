"""Experiments in real router processes: sticky across restarts, hot reload, forced variants, per-variant
retrieval settings and the never-blocking exposure queue. Downstreams are closed ports (popularity
fallback), so these tests need no other service."""

from __future__ import annotations

import json
import time
from pathlib import Path

import grpc
import pytest
from cascade.router.v1 import router_pb2, router_pb2_grpc
from cascade_core.registry import Registry
from cascade_platform.procs import ServiceProcess, free_port
from cascade_router.experiments import Assigner, load_experiments
from router_procs import closed_target, scrape, start_router

pytestmark = pytest.mark.integration

CONFIG_1 = """
holdout: {percent: 10, salt: live-holdout}
experiments:
  - name: live
    salt: live-1
    variants:
      - {name: control, traffic: 50}
      - {name: treatment, traffic: 50, num_candidates: 3}
"""
CONFIG_2 = CONFIG_1.replace("salt: live-1", "salt: live-2").replace("traffic: 50}", "traffic: 30}", 1).replace(
    "traffic: 50, num", "traffic: 70, num")
USERS = [str(i) for i in range(40)]


def _sample(text: str, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return 0.0


def _variants(proc: ServiceProcess) -> dict[str, str]:
    with grpc.insecure_channel(proc.target) as ch:
        stub = router_pb2_grpc.RecommendationServiceStub(ch)
        return {u: stub.Recommend(router_pb2.RecommendRequest(user_id=u, num_items=1), timeout=30).variant
                for u in USERS}


def _start(tmp: Path, artifacts: Registry, cfg: Path, metrics_port: int, **env: str) -> ServiceProcess:
    return start_router(tmp, artifacts.root, CASCADE_EXPERIMENTS_FILE=str(cfg), CASCADE_EXPERIMENTS_POLL_S="0.2",
                        CASCADE_METRICS_PORT=str(metrics_port), **env)


def test_assignment_is_sticky_across_router_restarts(tmp_path: Path, artifacts: Registry):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(CONFIG_1)
    expected = Assigner(load_experiments(cfg))
    port = free_port()
    router = _start(tmp_path, artifacts, cfg, port)
    try:
        first = _variants(router)
    finally:
        router.stop()
    router = _start(tmp_path, artifacts, cfg, port)  # a new process, same config
    try:
        second = _variants(router)
    finally:
        router.stop()
    assert first == second == {u: expected.assign(u).name for u in USERS}
    assert set(first.values()) == {"control", "treatment", "holdout"}


def _wait_reloads(port: int, outcome: str, at_least: float) -> None:
    deadline = time.monotonic() + 60
    while _sample(scrape(port), "cascade_experiments_reloads_total", outcome=outcome) < at_least:
        assert time.monotonic() < deadline, f"no {outcome} reload seen"
        time.sleep(0.1)


def test_hot_reload_applies_valid_changes_and_keeps_the_old_config_on_invalid_ones(
    tmp_path: Path, artifacts: Registry
):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(CONFIG_1)
    port = free_port()
    router = _start(tmp_path, artifacts, cfg, port)
    try:
        assert _variants(router) == {u: Assigner(load_experiments(cfg)).assign(u).name for u in USERS}
        # a valid change is applied without a restart
        cfg.write_text(CONFIG_2)
        _wait_reloads(port, "applied", 1)
        new = {u: Assigner(load_experiments(cfg)).assign(u).name for u in USERS}
        assert _variants(router) == new
        # an invalid change is rejected, logged naming the field, and the active config stays
        cfg.write_text(CONFIG_2.replace("traffic: 70", "traffic: 75"))
        _wait_reloads(port, "rejected", 1)
        assert _variants(router) == new
        log = router.log_path.read_text()
        assert "experiment config rejected, keeping the active config" in log
        assert "experiments.0: variants: traffic must sum to 100, got 105" in log
        cfg.write_text("experiments: [\n")  # not even YAML
        _wait_reloads(port, "rejected", 2)
        assert _variants(router) == new
        assert "not valid YAML" in router.log_path.read_text()
        text = scrape(port)
        assert _sample(text, "cascade_experiment_info", experiment="live", type="ab", variant="treatment",
                       ranker_version="", traffic="70") == 1.0
        # fixing the file applies it again
        cfg.write_text(CONFIG_1)
        _wait_reloads(port, "applied", 2)
        assert _variants(router) == {u: Assigner(load_experiments(cfg)).assign(u).name for u in USERS}
    finally:
        router.stop()


def test_forced_variants_and_per_variant_candidate_counts(tmp_path: Path, artifacts: Registry):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(CONFIG_1 + "forced_users: {qa-user: live/treatment}\n")
    router = _start(tmp_path, artifacts, cfg, free_port())
    try:
        with grpc.insecure_channel(router.target) as ch:
            stub = router_pb2_grpc.RecommendationServiceStub(ch)

            def rec(user: str, **kw) -> router_pb2.RecommendResponse:
                return stub.Recommend(router_pb2.RecommendRequest(user_id=user, num_items=10, **kw), timeout=30)

            treated = rec("anyone", context={"cascade.force_variant": "live/treatment"})
            control = rec("anyone", context={"cascade.force_variant": "control"})
            assert (treated.variant, control.variant) == ("treatment", "control")
            # treatment asks for 3 candidates (here from the popularity fallback), control for 200
            assert len(treated.items) == 3 and len(control.items) == 10
            assert rec("qa-user").variant == "treatment"
            assert rec("anyone", context={"cascade.force_variant": "holdout"}).variant == "holdout"
            with pytest.raises(grpc.RpcError) as ei:
                rec("anyone", context={"cascade.force_variant": "live/nope"})
            assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "cascade.force_variant: experiment 'live' has no variant 'nope'" in ei.value.details()
    finally:
        router.stop()


def test_exposure_queue_full_drops_and_counts_never_blocks(tmp_path: Path, artifacts: Registry):
    """Kafka unreachable and a 2-event queue: every request is answered; the overflow is dropped."""
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(CONFIG_1)
    port = free_port()
    router = _start(tmp_path, artifacts, cfg, port, CASCADE_EXPOSURES__BOOTSTRAP_SERVERS=closed_target(),
                    CASCADE_EXPOSURES__QUEUE_SIZE="2")
    try:
        with grpc.insecure_channel(router.target) as ch:
            stub = router_pb2_grpc.RecommendationServiceStub(ch)
            answers = [stub.Recommend(router_pb2.RecommendRequest(user_id=str(i), num_items=2), timeout=30)
                       for i in range(20)]
        assert all(len(a.items) == 2 for a in answers)
        deadline = time.monotonic() + 30
        while True:  # side effects run after each response: wait until all 20 were offered
            text = scrape(port)
            queued = _sample(text, "cascade_exposures_total", outcome="queued")
            dropped = _sample(text, "cascade_exposures_total", outcome="dropped")
            if queued + dropped >= 20 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert queued == 2 and dropped == 18, (queued, dropped)
        assert _sample(text, "cascade_exposures_total", outcome="sent") == 0
        # a failed bootstrap takes up to bootstrap_timeout_ms (3 s) before the warning is logged
        deadline = time.monotonic() + 30
        while ("exposure logger cannot reach Kafka" not in router.log_path.read_text()
               and time.monotonic() < deadline):
            time.sleep(0.2)
    finally:
        router.stop()
    assert "exposure logger cannot reach Kafka" in router.log_path.read_text()
    json.loads(router.log_path.read_text().splitlines()[-1])  # logs stay JSON lines
