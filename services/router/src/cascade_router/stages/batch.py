"""Sources over batch predictions: a personalised fallback when retrieval is down, and a cache."""

from __future__ import annotations

import logging
import time
from typing import ClassVar

import numpy as np
from cascade_core.errors import UnavailableError
from cascade_core.stages import CandidateSet, Query, Source

from cascade_router import metrics, params
from cascade_router.batch import BatchList, BatchStore
from cascade_router.stages import columns as col
from cascade_router.stages.sources import PopularFallbackSource, order_scores, source_columns

log = logging.getLogger("cascade.router.batch")
BATCH_SOURCE = "batch"
LOG_INTERVAL_S = 10.0


class _Lookup:
    """Store lookup with metrics; store outages become a miss, logged at most once per interval."""

    def __init__(self, store: BatchStore, mode: str) -> None:
        self.store = store
        self.mode = mode
        self._last_log = float("-inf")

    async def get(self, user_id: str) -> BatchList | None:
        try:
            found = await self.store.get(user_id)
        except (UnavailableError, ValueError, KeyError) as e:
            metrics.BATCH_LOOKUPS.labels(self.mode, "error").inc()
            now = time.monotonic()
            if now - self._last_log >= LOG_INTERVAL_S:
                self._last_log = now
                log.warning("batch predictions unavailable (%s): %s", self.mode, e,
                            extra={"event": "batch_unavailable"})
            return None
        metrics.BATCH_LOOKUPS.labels(self.mode, "hit" if found else "miss").inc()
        return found


class BatchFallbackSource(Source):
    """Fallback: the user's precomputed top-K (source ``batch``), then the popularity list.

    Runs only when every primary source failed or returned nothing (a fallback source). The baseline
    ``score`` is clamped non-increasing along that combined order, so with ranking down too the
    batch items stay first. A missing or unreachable batch store leaves just the popularity list.
    """

    name: ClassVar[str] = "batch_fallback"
    outputs: ClassVar[tuple[str, ...]] = (col.RETRIEVAL_SCORE, col.SOURCE, col.SCORE)
    fail_open: ClassVar[bool] = True

    def __init__(self, store: BatchStore, popular: PopularFallbackSource) -> None:
        self.lookup = _Lookup(store, "fallback")
        self.popular = popular

    async def initialize(self) -> None:
        await self.lookup.store.initialize()
        await self.popular.initialize()

    async def close(self) -> None:
        await self.lookup.store.close()
        await self.popular.close()

    async def apply(self, query: Query, candidates: CandidateSet) -> CandidateSet:
        found = await self.lookup.get(query.user_id)
        popular = (
            await self.popular.apply(query, candidates) if self.popular.available else CandidateSet.empty()
        )
        if found is None or not found.items:
            if not self.popular.available:
                raise UnavailableError("no batch list for this user and no popularity list")
            return popular
        batch = CandidateSet(
            found.items,
            source_columns(np.asarray(found.scores, np.float32), [BATCH_SOURCE] * len(found.items)),
        )
        merged = CandidateSet.concat([batch, popular])
        retrieval = np.asarray(merged.column(col.RETRIEVAL_SCORE), dtype=np.float32)
        return merged.with_columns(**{col.SCORE: order_scores(retrieval)})


class BatchCacheSource(Source):
    """Cache: the user's precomputed list as the only source (the cache pipeline of the servicer)."""

    name: ClassVar[str] = "batch_cache"
    outputs: ClassVar[tuple[str, ...]] = (col.RETRIEVAL_SCORE, col.SOURCE, col.SCORE)
    fail_open: ClassVar[bool] = True

    def __init__(self, store: BatchStore) -> None:
        self.lookup = _Lookup(store, "cache")

    async def initialize(self) -> None:
        await self.lookup.store.initialize()

    async def close(self) -> None:
        await self.lookup.store.close()

    async def apply(self, query: Query, candidates: CandidateSet) -> CandidateSet:
        found = await self.lookup.get(query.user_id)
        if found is None:
            return CandidateSet.empty()
        query.params[params.BATCH_MODEL_VERSION] = found.model_version
        return CandidateSet(
            found.items,
            source_columns(np.asarray(found.scores, np.float32), [BATCH_SOURCE] * len(found.items)),
        )
