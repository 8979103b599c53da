"""The router pipeline's fallbacks with its real stages, every downstream a closed port (a real outage)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from cascade.router.v1 import router_pb2
from cascade_core.errors import UnavailableError
from cascade_core.registry import Registry
from cascade_core.stages import Query
from cascade_router import params
from cascade_router.app import RouterApp
from cascade_router.experiments import Assigner, ExperimentsConfig, Variant
from cascade_router.settings import RouterSettings
from router_fixture_registry import VERSION, popular_ids


def _settings(registry: Registry, target: str, **kw) -> RouterSettings:
    return RouterSettings(
        artifacts_dir=registry.root,
        retrieval_target=target,
        features_target=target,
        ranking_target=target,
        request_budget_s=5.0,
        **kw,
    )


@pytest.fixture
async def app(registry: Registry, closed_target: str):
    a = RouterApp(_settings(registry, closed_target))
    await a.start()
    yield a
    await a.stop()


async def test_everything_down_serves_popular_with_default_features(
    app: RouterApp, registry: Registry
) -> None:
    popular = popular_ids(registry)
    q = Query(user_id="7", num_items=5, request_id="r1", exclude_item_ids=frozenset(popular[:2]))
    q.params[params.RANKER_VERSION] = ""
    res = await app.pipeline.run(q)

    assert res.degraded
    assert res.degraded_stages == ["retrieval", "features", "ranking"]
    assert "popular_fallback" in res.stage_seconds
    assert res.removed["exclude_items"] == 2
    assert res.candidates.item_ids == popular[2:7]
    assert res.candidates.column("source") == ["popular"] * 5
    scores = res.candidates.column("score")
    assert np.all(np.diff(scores) <= 0)
    assert res.candidates.column("rank").tolist() == [1, 2, 3, 4, 5]

    # Default matrix: manifest defaults for user and items, cross features from FeatureLayout.
    m = registry.manifest()
    defaults = np.asarray(m.ranker.feature_defaults, dtype=np.float32)
    layout = app.model.layout
    feats = res.candidates.column("features")
    assert feats.shape == (5, layout.dim)
    u, i = layout.user_dim, layout.item_dim
    assert np.allclose(feats[:, :u], defaults[:u])
    assert np.allclose(feats[:, u : u + i], defaults[u : u + i])
    assert np.allclose(feats[:, u + i], 0.0)  # popular items carry no ANN retrieval score
    nu, ni = 3, 3
    expected_match = (defaults[u + ni : u + i] @ defaults[nu:u]) / max(1.0, defaults[u + ni : u + i].sum())
    assert np.allclose(feats[:, u + i + 1], expected_match)


async def test_recommend_response_when_everything_is_down(app: RouterApp, registry: Registry) -> None:
    resp = await app.servicer.Recommend(router_pb2.RecommendRequest(user_id="7", num_items=4), None)
    assert resp.degraded is True
    assert resp.variant == "control"
    assert resp.model_version == f"{VERSION}+retrieval-order"
    assert re.fullmatch(r"[0-9a-f]{32}", resp.request_id)
    assert [it.item_id for it in resp.items] == popular_ids(registry)[:4]
    assert [it.rank for it in resp.items] == [1, 2, 3, 4]
    assert all(it.source == "popular" for it in resp.items)
    assert all(a.score >= b.score for a, b in zip(resp.items, resp.items[1:]))


async def test_variant_ranker_version_named_in_fallback(registry: Registry, closed_target: str) -> None:
    a = RouterApp(_settings(registry, closed_target))
    await a.start()
    try:
        a.servicer.assigner = Assigner(
            ExperimentsConfig.single("e", None, (Variant(name="treatment", ranker_version="v9", traffic=100),))
        )
        resp = await a.servicer.Recommend(router_pb2.RecommendRequest(user_id="7", request_id="abc"), None)
        assert (resp.variant, resp.model_version, resp.request_id) == (
            "treatment",
            "v9+retrieval-order",
            "abc",
        )
        assert len(resp.items) == 10
    finally:
        await a.stop()


async def test_every_source_down_is_unavailable(
    registry_without_popular: Registry, closed_target: str
) -> None:
    a = RouterApp(_settings(registry_without_popular, closed_target))
    await a.start()
    try:
        with pytest.raises(UnavailableError, match="every candidate source failed"):
            await a.servicer.Recommend(router_pb2.RecommendRequest(user_id="7"), None)
    finally:
        await a.stop()


async def test_excluding_every_fallback_item_is_an_empty_answer_not_an_error(
    app: RouterApp, registry: Registry
) -> None:
    everything = popular_ids(registry)
    resp = await app.servicer.Recommend(
        router_pb2.RecommendRequest(user_id="7", exclude_item_ids=everything), None
    )
    assert resp.degraded is True
    assert list(resp.items) == []
