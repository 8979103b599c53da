"""One Recommend call through the four services as real processes, traced with the platform's
JsonLinesSpanExporter (CASCADE_TRACE_FILE): every span shares one trace id and the parent links
follow the call graph across process boundaries (W3C traceparent in gRPC metadata)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from cascade.router.v1 import router_pb2, router_pb2_grpc
from cascade_platform.procs import ServiceProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "unit" / "router"))
from router_fixture_registry import build_registry  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DOWNSTREAMS = {"retrieval": ("cascade_retrieval", "Retrieve"), "features": ("cascade_features", "GetFeatures"),
               "ranking": ("cascade_ranking", "Rank")}


def _spans(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_one_trace_spans_all_four_services(tmp_path: Path):
    reg = build_registry(tmp_path / "artifacts", full=True)
    trace_file = tmp_path / "spans.jsonl"
    env = {"CASCADE_ARTIFACTS_DIR": str(reg.root), "CASCADE_DATA_DIR": str(tmp_path / "data"),
           "CASCADE_METRICS_PORT": "0", "CASCADE_DRAIN_SECONDS": "0.5", "CASCADE_TRACE_FILE": str(trace_file)}
    r = subprocess.run([sys.executable, "-m", "cascade_features.repo", "apply-materialize", "--version", "latest"],
                       env={**os.environ, **env}, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    procs: dict[str, ServiceProcess] = {}
    try:
        for name, (module, _) in DOWNSTREAMS.items():
            procs[name] = ServiceProcess(name, module, free_port(), env=env, log_path=tmp_path / f"{name}.log").start()
        for p in procs.values():
            p.wait_serving(180)
        procs["router"] = ServiceProcess("router", "cascade_router", free_port(), env={
            **env, "CASCADE_RETRIEVAL_TARGET": procs["retrieval"].target,
            "CASCADE_FEATURES_TARGET": procs["features"].target, "CASCADE_RANKING_TARGET": procs["ranking"].target,
            "CASCADE_REQUEST_BUDGET_S": "30", "CASCADE_RETRIEVAL_TIMEOUT_S": "10",
            "CASCADE_FEATURES_TIMEOUT_S": "10", "CASCADE_RANKING_TIMEOUT_S": "10",
        }, log_path=tmp_path / "router.log").start()
        procs["router"].wait_serving(180)
        with grpc.insecure_channel(procs["router"].target) as ch:
            resp = router_pb2_grpc.RecommendationServiceStub(ch).Recommend(
                router_pb2.RecommendRequest(user_id="u2", num_items=5, request_id="trace-me"), timeout=60)
        assert not resp.degraded and len(resp.items) == 5

        expected = {"router/Recommend", *(f"{n}/{m}" for n, (_, m) in DOWNSTREAMS.items()), *DOWNSTREAMS}
        deadline = time.monotonic() + 30
        while True:  # spans are exported as they end; the last ones may land just after the answer
            spans = [s for s in _spans(trace_file) if s["name"] in expected]
            root = [s for s in spans if s["name"] == "router/Recommend"
                    and s["attributes"].get("cascade.request_id") == "trace-me"]
            if root and len({s["name"] for s in spans if s["trace_id"] == root[0]["trace_id"]}) == len(expected):
                break
            assert time.monotonic() < deadline, f"missing spans; have {sorted({s['name'] for s in spans})}"
            time.sleep(0.2)
    finally:
        for p in reversed(list(procs.values())):
            p.stop()

    (root_span,) = root
    trace = [s for s in _spans(trace_file) if s["trace_id"] == root_span["trace_id"]]
    by_name: dict[str, list[dict]] = {}
    for s in trace:
        by_name.setdefault(s["name"], []).append(s)
    # one trace across the four processes
    assert {s["service"] for s in trace} == {"router", "retrieval", "features", "ranking"}
    assert root_span["parent_id"] is None and root_span["service"] == "router"
    for name, (_, method) in DOWNSTREAMS.items():
        (client,) = by_name[name]  # the router's outbound span
        (server,) = by_name[f"{name}/{method}"]  # the downstream's server span, in its own process
        # router.Recommend -> pipeline stage span -> outbound client span -> downstream server span
        (stage,) = [s for s in trace if s["name"] == f"router.Recommend/{name}"]
        assert stage["service"] == "router" and stage["parent_id"] == root_span["span_id"]
        assert client["service"] == "router" and client["parent_id"] == stage["span_id"]
        assert server["service"] == name and server["parent_id"] == client["span_id"]
        assert server["attributes"]["cascade.request_id"] == "trace-me"
        assert server["status"] == "UNSET" and client["status"] == "UNSET"
    # every span of the trace hangs off another span of the same trace (no orphans)
    ids = {s["span_id"] for s in trace}
    assert all(s["parent_id"] in ids for s in trace if s["span_id"] != root_span["span_id"])
