"""What a shed request gives up in the router: fewer candidates, no interleaving, no shadow call."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from cascade_core.stages import Query
from cascade_platform.shedding import LoadShedder, SheddingConfig
from cascade_router import metrics, params
from cascade_router.service import RecommendationServicer
from cascade_router.stages.side_effects import ShadowRanking

pytestmark = pytest.mark.security


def shed_query(quality: float, **p) -> Query:
    q = Query(user_id="u1", num_items=10, request_id="r1", params=dict(p))
    me = SimpleNamespace(shedder=LoadShedder(SheddingConfig(soft_limit=1, min_candidates=20), "router"),
                         num_candidates=200)
    RecommendationServicer._shrink(me, q, quality)  # type: ignore[arg-type]
    return q


def test_shrink_uses_the_variant_or_router_candidate_count_and_drops_interleaving() -> None:
    q = shed_query(0.5)
    assert q.params[params.NUM_CANDIDATES] == 100 and q.params[params.QUALITY_FACTOR] == 0.5
    q = shed_query(0.5, **{params.NUM_CANDIDATES: 60, params.INTERLEAVE_ARMS: ("a", "b")})
    assert q.params[params.NUM_CANDIDATES] == 30
    assert params.INTERLEAVE_ARMS not in q.params  # one ranker call instead of two
    assert shed_query(0.01).params[params.NUM_CANDIDATES] == 20


def test_shadow_ranking_is_skipped_for_shed_requests() -> None:
    cfg = SimpleNamespace(ranker_version="v-shadow", sample_percent=100, max_in_flight=1, timeout_s=1.0)
    shadow = ShadowRanking(model=None, target="127.0.0.1:1", config=lambda: cfg)  # type: ignore[arg-type]

    async def go() -> None:
        q = shed_query(0.5)
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(object())  # the response was built
        q.params[params.RESPONDED] = fut
        await shadow.apply(q, None)  # type: ignore[arg-type]

    before = metrics.SHADOW_REQUESTS.labels("v-shadow", "skipped_shed")._value.get()
    asyncio.run(go())
    assert metrics.SHADOW_REQUESTS.labels("v-shadow", "skipped_shed")._value.get() == before + 1
