"""Pure stages: the top-k selector, the exclusion filter and the retrieval cross feature."""

from __future__ import annotations

import numpy as np
from cascade_core.stages import CandidateSet, Query
from cascade_router.stages import ExcludeItemsFilter, TopKSelector
from cascade_router.stages.hydrators import retrieval_feature
from cascade_router.stages.sources import order_scores, source_columns


def _query(n: int = 10, exclude: frozenset[str] = frozenset()) -> Query:
    return Query(user_id="u", num_items=n, request_id="r", exclude_item_ids=exclude)


def _cands(scores: list[float]) -> CandidateSet:
    return CandidateSet(
        [f"i{k}" for k in range(len(scores))],
        {"score": np.asarray(scores, dtype=np.float32), "source": ["ann"] * len(scores)},
    )


def test_selector_sorts_desc_truncates_and_ranks() -> None:
    out = TopKSelector().apply(_query(3), _cands([0.1, 0.9, 0.5, 0.7]))
    assert out.item_ids == ["i1", "i3", "i2"]
    assert out.column("rank").tolist() == [1, 2, 3]
    assert out.column("score").tolist() == np.asarray([0.9, 0.7, 0.5], dtype=np.float32).tolist()
    assert out.column("source") == ["ann", "ann", "ann"]


def test_selector_is_stable_on_ties() -> None:
    out = TopKSelector().apply(_query(10), _cands([0.5, 1.0, 0.5, 1.0, 0.5]))
    assert out.item_ids == ["i1", "i3", "i0", "i2", "i4"]
    assert out.column("rank").tolist() == [1, 2, 3, 4, 5]


def test_selector_empty() -> None:
    out = TopKSelector().apply(_query(5), CandidateSet(["x"], {"score": np.ones(1, np.float32)}).take([]))
    assert len(out) == 0 and out.column("rank").tolist() == []


def test_baseline_scores_keep_source_order_through_selector() -> None:
    # Mixed sources: ANN inner products then log-popularity; the baseline must keep this order.
    raw = np.asarray([0.8, 0.3, 2.5, 1.7, 0.1], dtype=np.float32)
    cols = source_columns(raw, ["ann", "ann", "popular", "popular", "ann"])
    assert cols["score"].tolist() == np.asarray([0.8, 0.3, 0.3, 0.3, 0.1], dtype=np.float32).tolist()
    cands = CandidateSet([f"i{k}" for k in range(5)], cols)
    out = TopKSelector().apply(_query(5), cands)
    assert out.item_ids == cands.item_ids
    assert np.all(np.diff(out.column("score")) <= 0)
    assert order_scores(np.zeros(0)).shape == (0,)


def test_exclude_filter_removes_requested_items() -> None:
    cands = _cands([0.4, 0.3, 0.2, 0.1])
    res = ExcludeItemsFilter().apply(_query(exclude=frozenset({"i1", "i3", "zzz"})), cands)
    assert res.kept.item_ids == ["i0", "i2"]
    assert res.removed.item_ids == ["i1", "i3"]
    assert res.kept.column("score").tolist() == np.asarray([0.4, 0.2], dtype=np.float32).tolist()
    untouched = ExcludeItemsFilter().apply(_query(), cands)
    assert untouched.kept.item_ids == cands.item_ids and len(untouched.removed) == 0


def test_retrieval_feature_is_zero_for_non_ann_sources() -> None:
    cands = CandidateSet(
        ["a", "b", "c"], source_columns(np.asarray([0.7, 3.2, 0.2]), ["ann", "popular", "ann"])
    )
    assert retrieval_feature(cands).tolist() == np.asarray([0.7, 0.0, 0.2], dtype=np.float32).tolist()
