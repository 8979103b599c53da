"""The four-service path as real processes (router -> retrieval -> features -> ranking) on the tiny
fixture registry, then a progressive outage: features, ranking and retrieval stop one after another
and the router keeps answering from its fallbacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from cascade.router.v1 import router_pb2, router_pb2_grpc
from cascade_core.features import FeatureLayout
from cascade_core.registry import Registry
from cascade_platform.procs import ServiceProcess, free_port
from router_fixture_registry import VERSION, popular_ids
from router_procs import build_registry, start_router

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SERVICES = {"retrieval": "cascade_retrieval", "features": "cascade_features", "ranking": "cascade_ranking"}


@dataclass
class Stack:
    registry: Registry
    procs: dict[str, ServiceProcess]
    stub: router_pb2_grpc.RecommendationServiceStub

    def recommend(self, **kw) -> router_pb2.RecommendResponse:
        return self.stub.Recommend(router_pb2.RecommendRequest(**kw), timeout=60)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("full_stack")
    reg = build_registry(tmp / "artifacts", full=True)
    env = {"CASCADE_ARTIFACTS_DIR": str(reg.root), "CASCADE_DATA_DIR": str(tmp / "data")}
    r = subprocess.run(
        [sys.executable, "-m", "cascade_features.repo", "apply-materialize", "--version", "latest"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, f"materialize failed:\n{r.stdout}\n{r.stderr}"
    procs: dict[str, ServiceProcess] = {}
    try:
        for name, module in SERVICES.items():
            procs[name] = ServiceProcess(
                name,
                module,
                free_port(),
                env={**env, "CASCADE_METRICS_PORT": "0", "CASCADE_DRAIN_SECONDS": "0.5"},
                log_path=tmp / f"{name}.log",
            ).start()
        for p in procs.values():
            p.wait_serving(180)
        # Generous per-stage deadlines: this box is shared; the tests assert behaviour, not latency.
        procs["router"] = start_router(
            tmp,
            reg.root,
            targets={n: procs[n].target for n in SERVICES},
            CASCADE_RETRIEVAL_TIMEOUT_S="10",
            CASCADE_FEATURES_TIMEOUT_S="10",
            CASCADE_RANKING_TIMEOUT_S="10",
            CASCADE_REQUEST_BUDGET_S="30",
        )
        with grpc.insecure_channel(procs["router"].target) as ch:
            yield Stack(reg, procs, router_pb2_grpc.RecommendationServiceStub(ch))
    finally:
        for p in reversed(list(procs.values())):
            p.stop()


def _expected_scores(
    reg: Registry, user_id: str, items: list[str], sources: list[str], *, defaults: bool
) -> np.ndarray:
    """What the fixture ranker gives these items, from the registry files (the services' inputs)."""
    d = reg.path()
    m = reg.manifest()
    layout = FeatureLayout.from_names(m.ranker.feature_names)
    users = json.loads((d / "user_ids.json").read_text())
    catalog = pd.read_parquet(d / "items.parquet", columns=["item_id"])["item_id"].tolist()
    rows = [catalog.index(i) for i in items]
    ip = np.load(d / "item_embeddings.npy")[rows] @ np.load(d / "user_embeddings.npy")[users.index(user_id)]
    retrieval_feature = np.where(np.asarray(sources) == "ann", ip, 0.0).astype(np.float32)
    if defaults:
        dv = np.asarray(m.ranker.feature_defaults, dtype=np.float32)
        user_vec = dv[: layout.user_dim]
        item_mat = np.tile(dv[layout.user_dim : layout.user_dim + layout.item_dim], (len(items), 1))
    else:
        uf = pd.read_parquet(d / "feast" / "user_features.parquet").set_index("user_id")
        itf = pd.read_parquet(d / "feast" / "item_features.parquet").set_index("item_id")
        user_vec = np.asarray(uf.loc[user_id, "user_vec"], dtype=np.float32)
        item_mat = np.stack([np.asarray(itf.loc[i, "item_vec"], dtype=np.float32) for i in items])
    x = layout.assemble(user_vec, item_mat, retrieval_feature)
    sess = ort.InferenceSession(str(d / "ranker.onnx"), providers=["CPUExecutionProvider"])
    return sess.run(None, {"features": x})[0]


def _check_list(resp: router_pb2.RecommendResponse, n: int) -> None:
    assert len(resp.items) == n
    assert [i.rank for i in resp.items] == list(range(1, n + 1))
    assert len({i.item_id for i in resp.items}) == n
    scores = [i.score for i in resp.items]
    assert all(a >= b for a, b in zip(scores, scores[1:])), scores


def test_healthy_path_is_ranked_by_the_model(stack: Stack):
    resp = stack.recommend(user_id="u3", num_items=8, exclude_item_ids=["m1", "m2"], request_id="full-1")
    assert resp.degraded is False
    assert resp.model_version == VERSION
    assert resp.variant == "control" and resp.request_id == "full-1"
    _check_list(resp, 8)
    items, sources = [i.item_id for i in resp.items], [i.source for i in resp.items]
    assert not {"m1", "m2"} & set(items)
    assert "ann" in sources
    expected = _expected_scores(stack.registry, "u3", items, sources, defaults=False)
    np.testing.assert_allclose([i.score for i in resp.items], expected, rtol=1e-4, atol=1e-4)


def test_progressive_outage_falls_back_stage_by_stage(stack: Stack):
    stack.procs["features"].stop()
    resp = stack.recommend(user_id="u5", num_items=6)
    assert resp.degraded is True
    assert resp.model_version == VERSION  # ranking still scored, on default features
    _check_list(resp, 6)
    items, sources = [i.item_id for i in resp.items], [i.source for i in resp.items]
    expected = _expected_scores(stack.registry, "u5", items, sources, defaults=True)
    np.testing.assert_allclose([i.score for i in resp.items], expected, rtol=1e-4, atol=1e-4)

    stack.procs["ranking"].stop()
    resp = stack.recommend(user_id="u5", num_items=6)
    assert resp.degraded is True
    assert resp.model_version == f"{VERSION}+retrieval-order"
    _check_list(resp, 6)
    assert "ann" in {i.source for i in resp.items}

    stack.procs["retrieval"].stop()
    resp = stack.recommend(user_id="u5", num_items=6, exclude_item_ids=popular_ids(stack.registry)[:1])
    assert resp.degraded is True
    _check_list(resp, 6)
    assert [i.item_id for i in resp.items] == popular_ids(stack.registry)[1:7]
    assert {i.source for i in resp.items} == {"popular"}
