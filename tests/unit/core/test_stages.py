"""cascade_core.stages: slot order, merge/dedup, fail-open semantics, programmer errors propagate."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from cascade_core.errors import UnavailableError
from cascade_core.stages import (
    CandidateSet, Filter, FilterResult, Hydrator, Pipeline, Query, Scorer, Selector, SideEffect, Source,
)


class ListSource(Source):
    fail_open = True

    def __init__(self, name: str, ids: list[str], fail: Exception | None = None) -> None:
        self.name = name
        self.ids = ids
        self.fail = fail

    async def apply(self, query, candidates):
        if self.fail:
            raise self.fail
        return CandidateSet(self.ids, {"source": [self.name] * len(self.ids),
                                       "retrieval_score": np.arange(len(self.ids), 0, -1, dtype=np.float32)})


class DropOdd(Filter):
    name = "drop_odd"

    def apply(self, query, candidates):
        keep = np.array([int(i) % 2 == 0 for i in candidates.item_ids])
        kept, removed = candidates.mask(keep)
        return FilterResult(kept, removed)


class LenHydrator(Hydrator):
    name = "len"
    fail_open = True

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    async def apply(self, query, candidates):
        if self.fail:
            raise UnavailableError("store down")
        return {"feat": np.array([len(i) for i in candidates.item_ids], dtype=np.float32)}

    def fallback(self, query, candidates):
        return {"feat": np.zeros(len(candidates), dtype=np.float32)}


class IdScorer(Scorer):
    name = "id_scorer"
    fail_open = True

    def __init__(self, fail: Exception | None = None) -> None:
        self.fail = fail

    async def apply(self, query, candidates):
        if self.fail:
            raise self.fail
        return np.array([float(i) for i in candidates.item_ids], dtype=np.float32)


class TopK(Selector):
    name = "top_k"

    def apply(self, query, candidates):
        scores = candidates.columns.get("score", candidates.column("retrieval_score"))
        order = np.argsort(-np.asarray(scores), kind="stable")[: query.num_items]
        return candidates.take(order)


class Recorder(SideEffect):
    name = "recorder"

    def __init__(self) -> None:
        self.seen: list[list[str]] = []

    async def apply(self, query, candidates):
        await asyncio.sleep(0)
        self.seen.append(list(candidates.item_ids))


def q(n: int = 3) -> Query:
    return Query(user_id="u", num_items=n, request_id="r")


async def test_slots_run_in_order_with_dedup_and_removed_counts():
    rec = Recorder()
    p = Pipeline("test", sources=[ListSource("a", ["2", "4", "5"]), ListSource("b", ["4", "6", "8"])],
                 filters=[DropOdd()], hydrators=[LenHydrator()], scorers=[IdScorer()], selector=TopK(),
                 side_effects=[rec])
    res = await p.run(q(3))
    assert res.candidates.item_ids == ["8", "6", "4"]
    assert res.candidates.column("source") == ["b", "b", "a"]  # "4" came first from source a
    assert res.removed == {"drop_odd": 1}
    assert not res.degraded
    await p.close()
    assert rec.seen == [["8", "6", "4"]]


async def test_fail_open_source_falls_back_and_marks_degraded():
    p = Pipeline("test", sources=[ListSource("a", [], fail=UnavailableError("down"))],
                 fallback_sources=[ListSource("popular", ["10", "12"])], selector=TopK())
    res = await p.run(q(2))
    assert res.degraded and res.degraded_stages == ["a"]
    assert res.candidates.item_ids == ["10", "12"]


async def test_fail_open_hydrator_and_scorer_keep_serving():
    p = Pipeline("test", sources=[ListSource("a", ["2", "4", "6"])], hydrators=[LenHydrator(fail=True)],
                 scorers=[IdScorer(fail=TimeoutError())], selector=TopK())
    res = await p.run(q(3))
    assert set(res.degraded_stages) == {"len", "id_scorer"}
    assert res.candidates.item_ids == ["2", "4", "6"]  # retrieval order kept
    assert res.candidates.column("feat").tolist() == [0.0, 0.0, 0.0]


async def test_programmer_errors_are_never_swallowed():
    p = Pipeline("test", sources=[ListSource("a", ["2"])], scorers=[IdScorer(fail=KeyError("bug"))],
                 selector=TopK())
    with pytest.raises(KeyError):
        await p.run(q(1))


async def test_scorer_must_return_one_score_per_candidate():
    class Bad(Scorer):
        name = "bad"

        async def apply(self, query, candidates):
            return np.zeros(len(candidates) + 1)

    p = Pipeline("test", sources=[ListSource("a", ["2", "4"])], scorers=[Bad()], selector=TopK())
    with pytest.raises(ValueError, match="expected \\(2,\\)"):
        await p.run(q(2))


def test_tree_lists_every_slot():
    p = Pipeline("router", sources=[ListSource("a", [])], fallback_sources=[ListSource("popular", [])],
                 filters=[DropOdd()], hydrators=[LenHydrator()], scorers=[IdScorer()], selector=TopK(),
                 side_effects=[Recorder()])
    t = p.tree()
    for part in ("router", "sources", "filters", "hydrators", "scorers", "selector", "side effects",
                 "drop_odd", "id_scorer [fail-open]"):
        assert part in t, part


def test_candidate_set_rejects_ragged_columns():
    with pytest.raises(ValueError, match="column 'x'"):
        CandidateSet(["a", "b"], {"x": [1]})


def test_concat_requires_matching_columns():
    a = CandidateSet(["1"], {"s": [1]})
    b = CandidateSet(["2"], {"t": [1]})
    with pytest.raises(ValueError, match="disagree"):
        CandidateSet.concat([a, b])
