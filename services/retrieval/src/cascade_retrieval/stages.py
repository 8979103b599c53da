"""Retrieval pipeline stages (see :mod:`cascade_core.stages` for the contract).

Candidates carry three columns: ``item_row`` (int64 row in the catalog), ``score`` (float32,
source-specific) and ``source`` (object array of ``"ann"`` / ``"popular"``). Sources over-fetch by the
number of items the filters may remove (excluded + already consumed), so filtering never leaves fewer than
``num_candidates`` while the catalog has enough items.
"""

from __future__ import annotations

import numpy as np

from cascade_core.stages import CandidateSet, Filter, FilterResult, Query, Selector, Source
from cascade_retrieval.artifacts import RetrievalData, VersionArtifacts

COLUMNS = ("item_row", "score", "source")


def fetch_size(query: Query, data: RetrievalData) -> int:
    """How many candidates a source returns: wanted + what the filters can remove, capped by the catalog."""
    consumed = len(data.consumed_rows(data.user_row(query.user_id)))
    return min(data.n_items, query.num_items + len(query.exclude_item_ids) + consumed)


def make_candidates(data: RetrievalData, rows: np.ndarray, scores: np.ndarray, source: str) -> CandidateSet:
    rows = np.asarray(rows, dtype=np.int64)
    return CandidateSet(
        data.item_ids[rows].tolist(),
        {
            "item_row": rows,
            "score": np.asarray(scores, dtype=np.float32),
            "source": np.full(len(rows), source, dtype=object),
        },
    )


class _VersionStage:
    """Mixin: a stage reading one version's artifacts, loaded in ``initialize()``."""

    def __init__(self, artifacts: VersionArtifacts) -> None:
        self.artifacts = artifacts

    async def initialize(self) -> None:
        await self.artifacts.load()


class AnnSource(_VersionStage, Source):
    """Two-tower retrieval: the user's embedding -> hnswlib top-K items (score = inner product)."""

    name = "ann"
    inputs = ("user_id",)
    outputs = COLUMNS

    async def apply(self, query: Query, candidates: CandidateSet) -> CandidateSet:
        data = self.artifacts.data
        u = data.user_row(query.user_id)
        if u is None:  # cold start: no embedding for this user
            return CandidateSet.empty()
        k = fetch_size(query, data)
        labels, dist = data.ann.knn_query(data.user_embeddings[u], k=k, num_threads=1)
        space = data.manifest.ann.space
        scores = -dist[0] if space == "l2" else 1.0 - dist[0]  # hnswlib: ip/cosine distance = 1 - sim
        return make_candidates(data, labels[0], scores, "ann")


class PopularitySource(_VersionStage, Source):
    """Most popular items (score = log1p(interaction count)); the only source for cold-start users."""

    name = "popular"
    inputs = ()
    outputs = COLUMNS

    async def apply(self, query: Query, candidates: CandidateSet) -> CandidateSet:
        data = self.artifacts.data
        k = min(fetch_size(query, data), len(data.popular_rows))
        return make_candidates(data, data.popular_rows[:k], data.popular_scores[:k], "popular")


def member_mask(rows: np.ndarray, drop_rows: np.ndarray) -> np.ndarray:
    """``np.isin(rows, drop_rows)`` for integer item rows: one sort of the (small) drop set and a binary
    search per candidate; no per-element Python, no catalog-sized table."""
    d = np.sort(np.asarray(drop_rows)).astype(np.int64, copy=False)
    rows = np.asarray(rows, dtype=np.int64)
    if not len(d):
        return np.zeros(len(rows), dtype=bool)
    pos = np.searchsorted(d, rows)
    np.minimum(pos, len(d) - 1, out=pos)
    return d[pos] == rows


def _split(candidates: CandidateSet, drop_rows: np.ndarray) -> FilterResult:
    if not len(candidates) or not len(drop_rows):
        return FilterResult.unchanged(candidates)
    # removed candidates are built only if someone reads them (metrics count them without building)
    return FilterResult.from_mask(candidates, member_mask(candidates.column("item_row"), drop_rows))


class ExcludeItemsFilter(_VersionStage, Filter):
    """Drops the request's ``exclude_item_ids`` (ids unknown to the catalog are ignored)."""

    name = "exclude_items"
    inputs = ("item_row",)

    def apply(self, query: Query, candidates: CandidateSet) -> FilterResult:
        if not query.exclude_item_ids:
            return FilterResult.unchanged(candidates)
        return _split(candidates, self.artifacts.data.item_rows(query.exclude_item_ids))


class ConsumedItemsFilter(_VersionStage, Filter):
    """Drops items the user already consumed (``consumed.npz``)."""

    name = "consumed_items"
    inputs = ("item_row",)

    def apply(self, query: Query, candidates: CandidateSet) -> FilterResult:
        data = self.artifacts.data
        return _split(candidates, data.consumed_rows(data.user_row(query.user_id)))


class TopNSelector(Selector):
    """Keeps the first ``num_candidates`` in merge order: ANN results first, popular items fill."""

    name = "top_n"
    inputs = COLUMNS
    outputs = COLUMNS

    def apply(self, query: Query, candidates: CandidateSet) -> CandidateSet:
        return candidates.head(query.num_items)
