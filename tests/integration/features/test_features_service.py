"""The feature service as a real process, called over gRPC (SQLite and Redis online stores)."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from cascade.features.v1 import features_pb2, features_pb2_grpc

pytestmark = pytest.mark.integration


def call(target: str, **kw) -> features_pb2.GetFeaturesResponse:
    with grpc.insecure_channel(target) as ch:
        return features_pb2_grpc.FeatureServiceStub(ch).GetFeatures(
            features_pb2.GetFeaturesRequest(**kw), timeout=10)


def matrix(resp: features_pb2.GetFeaturesResponse) -> np.ndarray:
    return np.frombuffer(resp.matrix, dtype="<f4").reshape(resp.rows, resp.cols)


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_get_features_matches_layout_assembly(services, version, store):
    t, lay = version.tables, version.layout
    u, i = lay.user_dim, lay.item_dim
    items = ["i10", "i299", "unknown-item", "i10", "i0"]
    scores = [0.9, 0.5, 0.1, 0.9, -0.3]
    resp = call(services[store].target, user_id="u3", item_ids=items, retrieval_scores=scores)
    assert list(resp.feature_names) == lay.names
    assert (resp.rows, resp.cols) == (5, lay.dim)
    assert resp.missing_items == 1 and not resp.user_missing and resp.feature_service == "ranker_v1"
    vecs = t.items()
    item_default = version.defaults[u : u + i]
    item_mat = np.stack([vecs.get(x, item_default) for x in items])
    expected = lay.assemble(t.user("u3"), item_mat, np.asarray(scores, np.float32))
    np.testing.assert_array_equal(matrix(resp), expected)


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_unknown_user_gets_manifest_defaults(services, version, store):
    lay = version.layout
    resp = call(services[store].target, user_id="cold-user", item_ids=["i1", "i2"])
    assert resp.user_missing and resp.missing_items == 0
    m = matrix(resp)
    np.testing.assert_array_equal(m[:, : lay.user_dim], np.tile(version.defaults[: lay.user_dim], (2, 1)))
    assert not m[:, lay.user_dim + lay.item_dim].any()  # no retrieval scores given -> 0


def test_empty_candidate_list(services):
    resp = call(services["sqlite"].target, user_id="u1")
    assert (resp.rows, resp.matrix) == (0, b"")


@pytest.mark.parametrize("kw, field", [
    ({"user_id": "", "item_ids": ["i1"]}, "user_id"),
    ({"user_id": "u1", "item_ids": ["i1"] * 2001}, "item_ids"),
    ({"user_id": "u1", "item_ids": ["i1", "i2"], "retrieval_scores": [1.0]}, "retrieval_scores"),
    ({"user_id": "u1", "item_ids": ["i1"], "feature_service": "nope"}, "feature_service"),
])
def test_invalid_requests_name_the_field(services, kw, field):
    with pytest.raises(grpc.RpcError) as e:
        call(services["sqlite"].target, **kw)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details().startswith(f"{field}: ")


def test_store_down_is_unavailable(services):
    with pytest.raises(grpc.RpcError) as e:
        call(services["redis_down"].target, user_id="u1", item_ids=["i1"])
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "Redis online store" in e.value.details()
