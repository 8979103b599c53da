"""Online feature hydration as a pipeline stage, plus the pure matrix assembly it relies on.

The stage reads the user vector and every candidate's item vector through a fast
:class:`~cascade_features.stores.OnlineReader`, substitutes the manifest defaults for rows the store
does not hold, and builds the ranker's matrix with :meth:`FeatureLayout.assemble` (the same code
training uses, so serving cannot skew from it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cascade_core.features import FeatureLayout
from cascade_core.registry import RankerSpec
from cascade_core.stages import CandidateSet, Hydrator, Query
from cascade_features.stores import FetchResult, OnlineReader

FEATURES_COLUMN = "features"
ITEM_MISSING_COLUMN = "item_features_missing"
RETRIEVAL_SCORE_COLUMN = "retrieval_score"
USER_MISSING_PARAM = "user_features_missing"


@dataclass(frozen=True)
class FeatureDefaults:
    """Ranker layout and the per-entity default vectors (training-set means) from a manifest."""

    layout: FeatureLayout
    user: np.ndarray  # float32 [user_dim]
    item: np.ndarray  # float32 [item_dim]

    @classmethod
    def from_ranker(cls, ranker: RankerSpec) -> "FeatureDefaults":
        layout = FeatureLayout.from_names(ranker.feature_names)
        d = np.asarray(ranker.feature_defaults, dtype=np.float32)
        if d.shape != (layout.dim,):
            raise ValueError(
                f"manifest ranker.feature_defaults has {d.size} values, expected {layout.dim} "
                "(one per ranker.feature_names)"
            )
        u, i = layout.user_dim, layout.item_dim
        return cls(layout, d[:u].copy(), d[u : u + i].copy())


@dataclass(slots=True)
class Assembled:
    matrix: np.ndarray  # float32 [n, layout.dim]
    item_missing: np.ndarray  # bool [n]
    user_missing: bool

    @property
    def missing_items(self) -> int:
        return int(self.item_missing.sum())


def assemble(defaults: FeatureDefaults, fetched: FetchResult, retrieval_scores: np.ndarray | None) -> Assembled:
    """Fill missing rows with defaults and assemble ``[user | item | cross]`` rows, input order."""
    user_vec = fetched.user_vec if fetched.user_found else defaults.user
    item_mat = fetched.item_mat
    missing = ~fetched.item_found
    if missing.any():
        item_mat = np.where(missing[:, None], defaults.item[None, :], item_mat).astype(np.float32, copy=False)
    mat = defaults.layout.assemble(user_vec, item_mat, retrieval_scores)
    return Assembled(mat, missing, not fetched.user_found)


def defaults_only(defaults: FeatureDefaults, n: int, retrieval_scores: np.ndarray | None) -> Assembled:
    """The matrix when no store is reachable: every row from defaults."""
    lay = defaults.layout
    fetched = FetchResult(np.zeros(lay.user_dim, np.float32), False,
                          np.zeros((n, lay.item_dim), np.float32), np.zeros(n, dtype=bool))
    return assemble(defaults, fetched, retrieval_scores)


class OnlineFeatureHydrator(Hydrator):
    """Ranker features for (query.user_id x candidates) from the online store, in one round trip."""

    name = "online_features"
    inputs = (RETRIEVAL_SCORE_COLUMN,)
    outputs = (FEATURES_COLUMN, ITEM_MISSING_COLUMN)

    def __init__(self, reader: OnlineReader, defaults: FeatureDefaults) -> None:
        self.reader = reader
        self.defaults = defaults
        if (reader.user.dim, reader.item.dim) != (defaults.layout.user_dim, defaults.layout.item_dim):
            raise ValueError("reader vector lengths differ from the manifest layout")

    async def initialize(self) -> None:
        await self.reader.initialize()

    async def close(self) -> None:
        await self.reader.close()

    def describe(self) -> str:
        return f"{super().describe()} <- {self.reader.describe()}"

    @staticmethod
    def _scores(candidates: CandidateSet) -> np.ndarray | None:
        s = candidates.columns.get(RETRIEVAL_SCORE_COLUMN)
        return None if s is None else np.asarray(s, dtype=np.float32)

    def _columns(self, query: Query, a: Assembled) -> dict[str, Any]:
        query.params[USER_MISSING_PARAM] = a.user_missing
        return {FEATURES_COLUMN: a.matrix, ITEM_MISSING_COLUMN: a.item_missing}

    async def assemble(self, user_id: str, item_ids: list[str], retrieval_scores: np.ndarray | None) -> Assembled:
        """The stage's work without the CandidateSet wrapping (the gRPC servicer calls this)."""
        fetched = await self.reader.fetch(user_id, item_ids)
        return assemble(self.defaults, fetched, retrieval_scores)

    async def apply(self, query: Query, candidates: CandidateSet) -> dict[str, Any]:
        a = await self.assemble(query.user_id, candidates.item_ids, self._scores(candidates))
        return self._columns(query, a)

    def fallback(self, query: Query, candidates: CandidateSet) -> dict[str, Any]:
        return self._columns(query, defaults_only(self.defaults, len(candidates), self._scores(candidates)))
