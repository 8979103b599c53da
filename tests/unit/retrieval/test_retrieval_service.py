"""Retrieval service over a real in-process gRPC server: responses, versions, validation, bad registries."""

from __future__ import annotations

import shutil

import grpc
import numpy as np
import pytest

from cascade.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from cascade_core.registry import Registry
from cascade_platform.server import start_server
from cascade_retrieval.artifacts import load_retrieval_data
from cascade_retrieval.service import RetrievalApp
from cascade_retrieval.settings import RetrievalSettings


@pytest.fixture
async def stub(retrieval_registry):
    root, _ = retrieval_registry
    settings = RetrievalSettings(port=0, metrics_port=0, artifacts_dir=root, drain_seconds=0.1,
                                 preload_versions=["v2"])
    srv = await start_server(RetrievalApp(settings))
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}")
    yield retrieval_pb2_grpc.RetrievalServiceStub(channel)
    await channel.close()
    await srv.drain_and_stop(0.1)


async def test_known_user_gets_ann_candidates(stub, fx):
    resp = await stub.Retrieve(retrieval_pb2.RetrieveRequest(user_id="u004", num_candidates=30), timeout=5)
    assert resp.model_version == "v1" and not resp.cold_start
    assert len(resp.item_ids) == len(resp.scores) == len(resp.sources) == 30
    assert set(resp.sources) == {"ann"}
    u = fx.user_ids.index("u004")
    rows = [fx.item_ids.index(i) for i in resp.item_ids]
    np.testing.assert_allclose(resp.scores, fx.user_embeddings[u] @ fx.item_embeddings[rows].T, atol=1e-4)
    assert not set(rows) & set(fx.consumed_rows(u).tolist())


async def test_unknown_user_is_cold_start_with_popular_items(stub, fx):
    resp = await stub.Retrieve(
        retrieval_pb2.RetrieveRequest(user_id="someone-new", num_candidates=5, exclude_item_ids=["i0000"]),
        timeout=5,
    )
    assert resp.cold_start and set(resp.sources) == {"popular"}
    expected = [fx.item_ids[r] for r in fx.popular_order() if fx.item_ids[r] != "i0000"][:5]
    assert list(resp.item_ids) == expected


async def test_model_version_selects_a_preloaded_version(stub, retrieval_registry):
    _, versions = retrieval_registry
    req = retrieval_pb2.RetrieveRequest(user_id="u001", num_candidates=10, model_version="v2")
    resp = await stub.Retrieve(req, timeout=5)
    assert resp.model_version == "v2"
    v2 = versions["v2"]
    u = v2.user_ids.index("u001")
    rows = [v2.item_ids.index(i) for i in resp.item_ids]
    np.testing.assert_allclose(resp.scores, v2.user_embeddings[u] @ v2.item_embeddings[rows].T, atol=1e-4)
    latest = await stub.Retrieve(retrieval_pb2.RetrieveRequest(user_id="u001", num_candidates=10,
                                                               model_version="latest"), timeout=5)
    assert latest.model_version == "v1"


@pytest.mark.parametrize(("request_fields", "code", "message"), [
    ({"user_id": "", "num_candidates": 5}, grpc.StatusCode.INVALID_ARGUMENT, "user_id: must not be empty"),
    ({"user_id": "u1", "num_candidates": 0}, grpc.StatusCode.INVALID_ARGUMENT,
     "num_candidates: must be 1-2000, got 0"),
    ({"user_id": "u1", "num_candidates": 2001}, grpc.StatusCode.INVALID_ARGUMENT,
     "num_candidates: must be 1-2000, got 2001"),
    ({"user_id": "u1", "num_candidates": 5, "model_version": "v9"}, grpc.StatusCode.NOT_FOUND,
     "model_version 'v9' is not served by retrieval"),
])
async def test_bad_requests_name_what_to_fix(stub, request_fields, code, message):
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await stub.Retrieve(retrieval_pb2.RetrieveRequest(**request_fields), timeout=5)
    assert ei.value.code() == code
    assert ei.value.details().startswith(message), ei.value.details()


def test_a_broken_registry_fails_loading_with_the_file_named(tmp_path, retrieval_registry):
    root, _ = retrieval_registry
    shutil.copytree(root / "registry", tmp_path / "registry")
    np.save(tmp_path / "registry" / "v1" / "user_embeddings.npy", np.zeros((3, 16), np.float32))
    with pytest.raises(ValueError, match=r"user_embeddings\.npy: shape \(3, 16\), expected \(40, 16\)"):
        load_retrieval_data(Registry(tmp_path), "v1")
