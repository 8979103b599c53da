"""Online feature hydration as a pipeline stage, plus the pure matrix assembly it relies on.

The stage reads the user vector and every candidate's item vector through a fast
:class:`~cascade_features.stores.OnlineReader`, substitutes the manifest defaults for rows the store
does not hold, and builds the ranker's matrix with :meth:`FeatureLayout.assemble` (the same code
training uses, so serving cannot skew from it).

Layouts with real-time features: the reader also returns the stream worker's ``user_realtime`` /
``item_realtime`` rows (same round trip) and :func:`realtime_vectors` turns them into the layout's
real-time vectors at request time with the functions training uses
(:func:`cascade_core.features.realtime_user_vector`, :func:`~cascade_core.features.realtime_item_matrix`).
Missing rows are "no events" (zeros), as in training.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from cascade_core.features import FeatureLayout, realtime_item_matrix, realtime_user_vector
from cascade_core.registry import RankerSpec
from cascade_core.stages import CandidateSet, Hydrator, Query
from cascade_features.stores import FetchResult, OnlineReader, RealtimeRows

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


def now_ms() -> int:
    return int(time.time() * 1000)


def realtime_vectors(layout: FeatureLayout, rows: RealtimeRows | None, at_ms: int
                     ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(user real-time vector, item real-time matrix) at ``at_ms``; (None, None) = no events / no block."""
    if not layout.realtime or rows is None:
        return None, None
    return (realtime_user_vector(layout, rows.user, at_ms),
            realtime_item_matrix(layout, rows.item_trending, rows.item_last_ms, rows.item_found, at_ms))


def assemble(defaults: FeatureDefaults, fetched: FetchResult, retrieval_scores: np.ndarray | None,
             at_ms: int | None = None) -> Assembled:
    """Fill missing rows with defaults and assemble ``[user | item | cross (| real-time)]`` rows, input order.

    ``at_ms``: the time real-time features are evaluated at (default: now)."""
    user_vec = fetched.user_vec if fetched.user_found else defaults.user
    item_mat = fetched.item_mat
    missing = ~fetched.item_found
    if missing.any():
        item_mat = np.where(missing[:, None], defaults.item[None, :], item_mat).astype(np.float32, copy=False)
    user_rt, item_rt = realtime_vectors(defaults.layout, fetched.realtime, now_ms() if at_ms is None else at_ms)
    mat = defaults.layout.assemble(user_vec, item_mat, retrieval_scores, user_rt=user_rt, item_rt=item_rt)
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

    def __init__(self, reader: OnlineReader, defaults: FeatureDefaults,
                 clock_ms: Callable[[], int] = now_ms) -> None:
        self.reader = reader
        self.defaults = defaults
        self.clock_ms = clock_ms
        if (reader.user.dim, reader.item.dim) != (defaults.layout.user_dim, defaults.layout.item_dim):
            raise ValueError("reader vector lengths differ from the manifest layout")
        if defaults.layout.realtime and not reader.realtime:
            raise ValueError("the manifest layout has real-time features: build the reader with realtime=True")

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
        return assemble(self.defaults, fetched, retrieval_scores, self.clock_ms())

    async def apply(self, query: Query, candidates: CandidateSet) -> dict[str, Any]:
        a = await self.assemble(query.user_id, candidates.item_ids, self._scores(candidates))
        return self._columns(query, a)

    def fallback(self, query: Query, candidates: CandidateSet) -> dict[str, Any]:
        return self._columns(query, defaults_only(self.defaults, len(candidates), self._scores(candidates)))
