"""Retrieval fast paths give exactly what the straightforward pipeline gives.

The reference below is the pre-optimisation algorithm: both sources always run and are merged, the
filters use ``np.isin`` and build kept and removed eagerly, the selector takes ``arange(num_items)``.
"""

from __future__ import annotations

import numpy as np
import pytest

from cascade_core.stages import FilterResult, Pipeline, Query
from cascade_retrieval.pipeline import RetrievalPipeline, build_pipeline
from cascade_retrieval.stages import (
    AnnSource,
    ConsumedItemsFilter,
    ExcludeItemsFilter,
    PopularitySource,
    TopNSelector,
    member_mask,
)


def _eager_split(candidates, drop_rows) -> FilterResult:
    if not len(candidates) or not len(drop_rows):
        return FilterResult.unchanged(candidates)
    kept, removed = candidates.mask(~np.isin(candidates.column("item_row"), drop_rows))
    return FilterResult(kept, removed)


class RefExclude(ExcludeItemsFilter):
    def apply(self, query, candidates):
        return _eager_split(candidates, self.artifacts.data.item_rows(query.exclude_item_ids))


class RefConsumed(ConsumedItemsFilter):
    def apply(self, query, candidates):
        data = self.artifacts.data
        return _eager_split(candidates, data.consumed_rows(data.user_row(query.user_id)))


class RefTopN(TopNSelector):
    def apply(self, query, candidates):
        if len(candidates) <= query.num_items:
            return candidates
        return candidates.take(np.arange(query.num_items))


def _reference(artifacts) -> Pipeline:
    return Pipeline(
        "retrieval-reference",
        sources=[AnnSource(artifacts), PopularitySource(artifacts)],
        filters=[RefExclude(artifacts), RefConsumed(artifacts)],
        selector=RefTopN(),
    )


@pytest.mark.parametrize("seed", range(8))
def test_member_mask_equals_isin(seed):
    rng = np.random.default_rng(seed)
    rows = rng.choice(10_000, size=int(rng.integers(0, 300)), replace=False).astype(np.int64)
    for m in (0, 1, 3, 20, 150, 2000):
        drop = rng.integers(0, 10_000, size=m).astype(np.int32)  # duplicates, unsorted, int32 like consumed
        if len(rows) and m:
            drop[: min(m, 5)] = rng.choice(rows, size=min(m, 5))
        np.testing.assert_array_equal(member_mask(rows, drop), np.isin(rows, drop))


def _random_query(rng, fx, data) -> Query:
    known = rng.random() < 0.8
    user = fx.user_ids[int(rng.integers(len(fx.user_ids)))] if known else f"cold-{int(rng.integers(1000))}"
    n = int(rng.choice([1, 2, 10, 25, 100, int(rng.integers(1, 300)), 290, 300, 2000]))
    exclude: set[str] = set()
    if rng.random() < 0.6:
        pool = list(fx.item_ids)
        if known:  # the user's nearest items: what ANN returns first
            u = fx.user_ids.index(user)
            near = np.argsort(-(fx.user_embeddings[u] @ fx.item_embeddings.T))[:40]
            pool_near = [fx.item_ids[r] for r in near]
            exclude |= {pool_near[int(i)] for i in rng.choice(40, int(rng.integers(0, 40)), replace=False)}
        popular = [fx.item_ids[r] for r in fx.popular_order()[:30]]
        exclude |= {popular[int(i)] for i in rng.choice(30, int(rng.integers(0, 30)), replace=False)}
        exclude |= {pool[int(i)] for i in rng.choice(len(pool), int(rng.integers(0, 20)), replace=False)}
        exclude |= {f"unknown-{i}" for i in range(int(rng.integers(0, 3)))}
    return Query(user_id=user, num_items=n, request_id="t", exclude_item_ids=frozenset(exclude))


async def test_pipeline_output_is_identical_to_the_reference_on_random_requests(artifacts, fx):
    fast, ref = build_pipeline(artifacts), _reference(artifacts)
    assert isinstance(fast, RetrievalPipeline)
    await fast.initialize()
    await ref.initialize()
    rng = np.random.default_rng(42)
    shortcut = fallthrough = 0
    for _ in range(300):
        q = _random_query(rng, fx, artifacts.data)
        got, want = await fast.run(q), await ref.run(q)
        g, w = got.candidates, want.candidates
        assert g.item_ids == w.item_ids, q
        for col in ("item_row", "score", "source"):
            assert g.column(col).dtype == w.column(col).dtype
            np.testing.assert_array_equal(g.column(col), w.column(col))
        assert g.column("score").tolist() == w.column("score").tolist()  # bit for bit, as the response sends
        if "popular" in got.stage_seconds:
            fallthrough += 1
            assert got.removed == want.removed  # the full run: same counts as the reference
        else:
            shortcut += 1
            assert set(got.removed) == set(want.removed)
            assert all(got.removed[k] <= want.removed[k] for k in got.removed)
    assert shortcut > 100 and fallthrough > 30  # both paths were exercised


async def test_shortcut_is_only_taken_for_the_stock_stages(artifacts, fx):
    p = RetrievalPipeline(
        "retrieval",
        sources=[AnnSource(artifacts), PopularitySource(artifacts)],
        filters=[RefExclude(artifacts), ConsumedItemsFilter(artifacts)],  # an unknown filter type
        selector=TopNSelector(),
    )
    await p.initialize()
    res = await p.run(Query(user_id="u003", num_items=5, request_id="t"))
    assert len(res.candidates) == 5 and "popular" in res.stage_seconds


async def test_filters_still_report_what_they_removed(artifacts, fx):
    pipeline = build_pipeline(artifacts)
    await pipeline.initialize()
    u = fx.user_ids.index("u011")
    ann = await AnnSource(artifacts).apply(Query("u011", 30, "t"), None)
    excluded = ann.item_ids[:2]
    q = Query("u011", 30, "t", exclude_item_ids=frozenset([*excluded, "unknown"]))
    ex = ExcludeItemsFilter(artifacts).apply(q, ann)
    assert ex.n_removed == 2 and ex.removed.item_ids == excluded
    assert ex.kept.item_ids == ann.item_ids[2:]
    cons = ConsumedItemsFilter(artifacts).apply(q, ex.kept)
    consumed = set(fx.consumed_rows(u).tolist())
    kept_rows = set(ex.kept.column("item_row").tolist())
    assert set(cons.removed.column("item_row").tolist()) == consumed & kept_rows
    assert cons.n_removed == len(cons.removed) >= 1
    res = await pipeline.run(q)
    assert res.removed == {"exclude_items": 2, "consumed_items": cons.n_removed}
