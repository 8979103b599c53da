"""Ranking service: request validation and the Rank RPC over a real in-process gRPC server."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from cascade.ranking.v1 import ranking_pb2, ranking_pb2_grpc
from cascade_core.errors import InvalidArgumentError
from cascade_platform.server import start_server
from cascade_ranking.backends import OnnxRuntimeConfig, TritonConfig
from cascade_ranking.models import ServedModel
from cascade_ranking.service import RankingApp, decode_matrix
from cascade_ranking.settings import RankingSettings
from cascade_platform.settings import load_settings

MODEL = ServedModel("ranker", "v1", ("a", "b", "c"))


def _req(x: np.ndarray, **kw) -> ranking_pb2.RankRequest:
    x = np.asarray(x, dtype="<f4")
    rows, cols = x.shape
    fields = dict(rows=rows, cols=cols, matrix=x.tobytes())
    fields.update(kw)
    return ranking_pb2.RankRequest(**fields)


def _invalid(request, model=MODEL) -> InvalidArgumentError:
    with pytest.raises(InvalidArgumentError) as ei:
        decode_matrix(request, model)
    return ei.value


def test_decode_matrix_returns_rows_in_order():
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.testing.assert_array_equal(decode_matrix(_req(x, feature_names=["a", "b", "c"]), MODEL), x)
    assert decode_matrix(_req(np.zeros((0, 3))), MODEL).shape == (0, 3)


def test_decode_matrix_names_the_field_to_fix():
    x = np.ones((2, 3), np.float32)
    e = _invalid(_req(x, rows=2001, matrix=b""))
    assert e.field == "rows" and "0-2000, got 2001" in str(e)
    assert _invalid(_req(x, rows=-1)).field == "rows"
    e = _invalid(_req(np.ones((2, 4))))
    assert e.field == "cols" and "takes 3 features, got 4" in str(e)
    e = _invalid(_req(x, feature_names=["a", "x", "c"]))
    assert e.field == "feature_names" and "position 1: expected 'b', got 'x'" in str(e)
    e = _invalid(_req(x, feature_names=["a", "b"]))
    assert e.field == "feature_names" and "2 names sent" in str(e)
    e = _invalid(_req(x, matrix=x.tobytes()[:-4]))
    assert e.field == "matrix" and "has 20 bytes, expected rows*cols*4 = 2*3*4 = 24" in str(e)
    bad = x.copy()
    bad[1, 2] = np.nan
    e = _invalid(_req(bad))
    assert e.field == "matrix" and "row 1, column 2 (c)" in str(e)


def test_backend_table_from_environment(monkeypatch):
    assert isinstance(RankingSettings().backend, OnnxRuntimeConfig)
    monkeypatch.setenv("CASCADE_BACKEND__TYPE", "triton")
    monkeypatch.setenv("CASCADE_BACKEND__URL", "triton:8001")
    monkeypatch.setenv("CASCADE_BACKEND__PROFILE", "gpu")  # a Triton-only knob passes through
    cfg = RankingSettings().backend
    assert isinstance(cfg, TritonConfig) and cfg.url == "triton:8001"
    assert cfg.model_dump()["profile"] == "gpu"
    monkeypatch.setenv("CASCADE_BACKEND__TYPE", "tensorflow")
    with pytest.raises(SystemExit):
        load_settings(RankingSettings)


@pytest.fixture
async def ranking(ranking_registry):
    root, versions = ranking_registry
    settings = RankingSettings(port=0, metrics_port=0, artifacts_dir=root, drain_seconds=0.1,
                               preload_versions=["v2"])
    srv = await start_server(RankingApp(settings))
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}")
    yield ranking_pb2_grpc.RankingServiceStub(channel), versions
    await channel.close()
    await srv.drain_and_stop(0.1)


N_FEATURES = 16  # FeatureLayout over the fixture's 4 categories: (3+4) + (3+4) + 2


def _features(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, (n, N_FEATURES)).astype(np.float32)


async def test_rank_scores_in_input_order_with_default_and_pinned_versions(ranking):
    stub, versions = ranking
    names = versions["v1"].manifest.ranker.feature_names
    x = _features(50)
    assert x.shape[1] == len(names)
    resp = await stub.Rank(_req(x, feature_names=names, request_id="r1"), timeout=5)
    assert (resp.model_name, resp.model_version) == ("ranker", "v1")
    np.testing.assert_allclose(resp.scores, versions["v1"].ranker.predict(x), atol=1e-5, rtol=1e-5)
    resp2 = await stub.Rank(_req(x, model_name="ranker", model_version="v2"), timeout=5)
    assert resp2.model_version == "v2"
    np.testing.assert_allclose(resp2.scores, versions["v2"].ranker.predict(x), atol=1e-5, rtol=1e-5)
    empty = await stub.Rank(_req(np.zeros((0, len(names)))), timeout=5)
    assert list(empty.scores) == [] and empty.model_version == "v1"


async def test_rank_errors_over_grpc(ranking):
    stub, _ = ranking
    x = _features(3)
    cases = [
        (_req(x, cols=20), grpc.StatusCode.INVALID_ARGUMENT,
         "cols: ranker ranker:v1 takes 16 features, got 20"),
        (_req(x, matrix=b"\0" * 8), grpc.StatusCode.INVALID_ARGUMENT, "matrix: has 8 bytes"),
        (_req(x, feature_names=["nope"] * N_FEATURES), grpc.StatusCode.INVALID_ARGUMENT,
         "feature_names: position 0: expected 'user_log_interactions', got 'nope'"),
        (_req(x, model_version="v9"), grpc.StatusCode.NOT_FOUND, "model_version 'v9' is not loaded"),
        (_req(x, model_name="other"), grpc.StatusCode.NOT_FOUND, "model_name 'other' is not served"),
    ]
    for request, code, message in cases:
        with pytest.raises(grpc.aio.AioRpcError) as ei:
            await stub.Rank(request, timeout=5)
        assert ei.value.code() == code
        assert ei.value.details().startswith(message), ei.value.details()
