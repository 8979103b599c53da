"""Retrieval stages on a real hnswlib index: sources, filters (kept + removed), merge, selector."""

from __future__ import annotations

import numpy as np
import pytest

from cascade_core.stages import CandidateSet, Query
from cascade_retrieval.pipeline import build_pipeline, pipeline_tree
from cascade_retrieval.stages import (
    AnnSource,
    ConsumedItemsFilter,
    ExcludeItemsFilter,
    PopularitySource,
    TopNSelector,
    fetch_size,
    make_candidates,
)


def _q(user: str, n: int, exclude=()) -> Query:
    return Query(user_id=user, num_items=n, request_id="t", exclude_item_ids=frozenset(exclude))


def _row(fx, user: str) -> int:
    return fx.user_ids.index(user)


def test_fetch_size_covers_what_filters_can_remove(artifacts, fx):
    data = artifacts.data
    n_consumed = len(fx.consumed_rows(_row(fx, "u003")))
    assert fetch_size(_q("u003", 10, ["a", "b"]), data) == 10 + 2 + n_consumed
    assert fetch_size(_q("cold-user", 10), data) == 10
    assert fetch_size(_q("u003", 2000), data) == fx.manifest.n_items


@pytest.mark.parametrize("user", ["u000", "u007", "u039"])
async def test_ann_source_returns_nearest_items_by_inner_product(artifacts, fx, user):
    u = _row(fx, user)
    query = _q(user, 20)
    got = await AnnSource(artifacts).apply(query, CandidateSet.empty())
    k = fetch_size(query, artifacts.data)
    assert len(got) == k and got.column("source").tolist() == ["ann"] * k
    rows = got.column("item_row")
    assert got.item_ids == [fx.item_ids[r] for r in rows]
    ip = fx.user_embeddings[u] @ fx.item_embeddings.T
    np.testing.assert_allclose(got.column("score"), ip[rows], atol=1e-4)
    assert np.all(np.diff(got.column("score")) <= 1e-6)  # best first
    exact = set(np.argsort(-ip)[:k].tolist())
    assert len(exact & set(rows.tolist())) / k >= 0.95


async def test_ann_source_gives_nothing_for_cold_users(artifacts):
    assert len(await AnnSource(artifacts).apply(_q("cold-user", 20), CandidateSet.empty())) == 0


async def test_popularity_source_returns_most_popular_first(artifacts, fx):
    got = await PopularitySource(artifacts).apply(_q("cold-user", 15), CandidateSet.empty())
    order = fx.popular_order()[:15]
    assert got.item_ids == [fx.item_ids[r] for r in order]
    np.testing.assert_allclose(got.column("score"), np.log1p(fx.popularity[order]), rtol=1e-6)
    assert got.column("source").tolist() == ["popular"] * 15


def _popular_candidates(artifacts, fx, n: int) -> CandidateSet:
    rows = fx.popular_order()[:n]
    return make_candidates(artifacts.data, rows, np.log1p(fx.popularity[rows]), "popular")


def test_exclude_filter_returns_kept_and_removed(artifacts, fx):
    cands = _popular_candidates(artifacts, fx, 30)
    excluded = [cands.item_ids[i] for i in (0, 7, 29)]
    res = ExcludeItemsFilter(artifacts).apply(_q("u001", 10, [*excluded, "not-an-item"]), cands)
    assert res.removed.item_ids == excluded
    assert res.kept.item_ids == [i for i in cands.item_ids if i not in excluded]
    assert res.kept.column("source").tolist() == ["popular"] * 27
    untouched = ExcludeItemsFilter(artifacts).apply(_q("u001", 10), cands)
    assert untouched.kept.item_ids == cands.item_ids and len(untouched.removed) == 0


def test_consumed_filter_removes_the_users_consumed_items(artifacts, fx):
    u = _row(fx, "u005")
    consumed = set(fx.consumed_rows(u).tolist())
    rows = np.array(sorted(consumed)[:3] + [r for r in range(60) if r not in consumed][:20], dtype=np.int64)
    cands = make_candidates(artifacts.data, rows, np.zeros(len(rows)), "ann")
    res = ConsumedItemsFilter(artifacts).apply(_q("u005", 10), cands)
    assert sorted(res.removed.column("item_row").tolist()) == sorted(consumed)[:3]
    assert res.kept.column("item_row").tolist() == rows[3:].tolist()
    cold = ConsumedItemsFilter(artifacts).apply(_q("cold-user", 10), cands)
    assert len(cold.kept) == len(rows) and len(cold.removed) == 0


def test_merge_dedups_first_source_wins_and_selector_fills_with_popular(artifacts, fx):
    data = artifacts.data
    ann = make_candidates(data, np.array([5, 9, 2]), np.array([0.9, 0.8, 0.7]), "ann")
    popular = make_candidates(data, np.array([9, 1, 3, 5, 4]), np.log1p([9.0, 8, 7, 6, 5]), "popular")
    merged = CandidateSet.concat([ann, popular])
    assert merged.column("item_row").tolist() == [5, 9, 2, 1, 3, 4]
    assert merged.column("source").tolist() == ["ann", "ann", "ann", "popular", "popular", "popular"]
    np.testing.assert_allclose(merged.column("score")[:2], [0.9, 0.8])
    top = TopNSelector().apply(_q("u000", 4), merged)
    assert top.column("item_row").tolist() == [5, 9, 2, 1]
    assert TopNSelector().apply(_q("u000", 50), merged).item_ids == merged.item_ids


async def test_pipeline_for_a_known_user(artifacts, fx):
    pipeline = build_pipeline(artifacts)
    await pipeline.initialize()
    u = _row(fx, "u010")
    exclude = [fx.item_ids[int(np.argsort(-(fx.user_embeddings[u] @ fx.item_embeddings.T))[5])]]
    res = await pipeline.run(_q("u010", 25, exclude))
    c = res.candidates
    assert len(c) == 25 and len(set(c.item_ids)) == 25
    assert c.column("source").tolist() == ["ann"] * 25
    assert not set(c.column("item_row").tolist()) & set(fx.consumed_rows(u).tolist())
    assert exclude[0] not in c.item_ids
    assert res.removed["exclude_items"] == 1
    assert res.removed["consumed_items"] >= 3  # the user's 3 nearest items are consumed by construction
    assert set(res.stage_seconds) >= {"ann", "exclude_items", "consumed_items", "top_n"}
    # ANN found enough candidates that survive the filters: the popularity source (fill only) never ran
    assert "popular" not in res.stage_seconds


async def test_pipeline_for_a_cold_start_user_serves_popular_items(artifacts, fx):
    pipeline = build_pipeline(artifacts)
    await pipeline.initialize()
    top = [fx.item_ids[r] for r in fx.popular_order()[:12]]
    res = await pipeline.run(_q("cold-user", 10, [top[0], top[3]]))
    assert res.candidates.item_ids == [i for i in top if i not in (top[0], top[3])][:10]
    assert res.candidates.column("source").tolist() == ["popular"] * 10
    assert {"ann", "popular", "exclude_items", "top_n"} <= set(res.stage_seconds)
    assert res.removed["exclude_items"] == 2


async def test_pipeline_returns_the_whole_unconsumed_catalog_when_asked(artifacts, fx):
    pipeline = build_pipeline(artifacts)
    await pipeline.initialize()
    n_free = fx.manifest.n_items - len(fx.consumed_rows(_row(fx, "u020")))
    res = await pipeline.run(_q("u020", 2000))
    assert len(res.candidates) == n_free == len(set(res.candidates.item_ids))


def test_pipeline_tree_is_printable_without_artifacts():
    tree = pipeline_tree()
    for name in ("sources", "ann", "popular", "filters", "exclude_items", "consumed_items", "top_n"):
        assert name in tree
