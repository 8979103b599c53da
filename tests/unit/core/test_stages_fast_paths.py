"""cascade_core.stages fast paths: lazily built removed sets, ``head`` slicing, pipeline removed counts."""

from __future__ import annotations

import numpy as np
import pytest

from cascade_core.stages import CandidateSet, Filter, FilterResult, Pipeline, Query, Selector, Source


def _cands(n: int, seed: int = 0) -> CandidateSet:
    rng = np.random.default_rng(seed)
    return CandidateSet(
        [f"i{i}" for i in range(n)],
        {
            "row": np.arange(n, dtype=np.int64) * 3,
            "score": rng.normal(size=n).astype(np.float32),
            "source": np.array(["a", "b"] * (n // 2) + ["a"] * (n % 2), dtype=object),
            "tags": [f"t{i}" for i in range(n)],  # a list column
        },
    )


def _same(a: CandidateSet, b: CandidateSet) -> None:
    assert a.item_ids == b.item_ids
    assert set(a.columns) == set(b.columns)
    for k, v in a.columns.items():
        w = b.columns[k]
        assert type(v) is type(w), k
        if isinstance(v, np.ndarray):
            assert v.dtype == w.dtype, k
            np.testing.assert_array_equal(v, w)
        else:
            assert v == w, k


@pytest.mark.parametrize("seed", range(20))
def test_from_mask_matches_eager_mask(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 40))
    cands = _cands(n, seed)
    drop = rng.random(n) < rng.random()
    fr = FilterResult.from_mask(cands, drop)
    kept, removed = cands.mask(~drop)
    assert fr.n_removed == int(drop.sum())  # counted without building the removed set
    _same(fr.kept, kept)
    _same(fr.removed, removed)
    assert fr.n_removed == len(fr.removed) == len(removed)


def test_from_mask_builds_removed_only_when_read():
    cands = _cands(10)
    drop = np.zeros(10, dtype=bool)
    drop[[1, 4]] = True
    fr = FilterResult.from_mask(cands, drop)
    assert fr._removed is None and fr.n_removed == 2
    assert fr.removed.item_ids == ["i1", "i4"]
    assert fr.removed is fr.removed  # built once
    assert "removed=2" in repr(fr)


def test_from_mask_with_nothing_dropped_keeps_the_same_set():
    cands = _cands(5)
    fr = FilterResult.from_mask(cands, np.zeros(5, dtype=bool))
    assert fr.kept is cands and len(fr.removed) == 0 and fr.n_removed == 0
    un = FilterResult.unchanged(cands)
    assert un.kept is cands and un.n_removed == 0


def test_from_mask_rejects_a_mask_of_the_wrong_length():
    with pytest.raises(ValueError, match=r"shape \(3,\), expected \(4,\)"):
        FilterResult.from_mask(_cands(4), np.zeros(3, dtype=bool))


def test_eager_filter_result_still_works():
    cands = _cands(6)
    kept, removed = cands.mask(np.array([True, False] * 3))
    fr = FilterResult(kept, removed)
    assert fr.kept is kept and fr.removed is removed and fr.n_removed == 3
    fr.removed = CandidateSet.empty()
    assert fr.n_removed == 0


@pytest.mark.parametrize("n", [0, 1, 5, 9, 10, 11, 50])
def test_head_equals_take_of_the_first_rows(n):
    cands = _cands(10)
    _same(cands.head(n), cands.take(np.arange(min(n, 10))))


class _Ids(Source):
    name = "ids"

    def __init__(self, n: int) -> None:
        self.n = n

    async def apply(self, query, candidates):
        return _cands(self.n)


class _DropEveryThird(Filter):
    name = "drop_every_third"

    def __init__(self) -> None:
        self.results: list[FilterResult] = []

    def apply(self, query, candidates):
        fr = FilterResult.from_mask(candidates, np.arange(len(candidates)) % 3 == 0)
        self.results.append(fr)
        return fr


class _Head(Selector):
    name = "head"

    def apply(self, query, candidates):
        return candidates.head(query.num_items)


async def test_pipeline_counts_removed_without_building_them():
    f = _DropEveryThird()
    p = Pipeline("t", sources=[_Ids(12)], filters=[f], selector=_Head())
    res = await p.run(Query(user_id="u", num_items=5, request_id="r"))
    assert res.removed == {"drop_every_third": 4}
    assert res.candidates.item_ids == ["i1", "i2", "i4", "i5", "i7"]
    assert f.results[0]._removed is None  # never materialized on the request path
    assert f.results[0].removed.item_ids == ["i0", "i3", "i6", "i9"]  # still available for debugging
