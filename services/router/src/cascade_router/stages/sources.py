"""Candidate sources: the retrieval service, and the registry's popularity list as its fallback."""

from __future__ import annotations

import json
import logging
from typing import ClassVar

import numpy as np
from cascade.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from cascade_core.errors import UnavailableError
from cascade_core.stages import CandidateSet, Query, Source

from cascade_router import params
from cascade_router.model import ServingModel
from cascade_router.stages import columns as col
from cascade_router.stages.downstream import Downstream

log = logging.getLogger("cascade.router.sources")


def order_scores(scores: np.ndarray) -> np.ndarray:
    """Scores clamped to be non-increasing along the given order (the baseline ``score`` column).

    Sorting by them (stable) keeps the source's order, and equals the raw scores wherever the source
    was already sorted by them.
    """
    scores = np.asarray(scores, dtype=np.float32)
    return np.minimum.accumulate(scores) if len(scores) else scores


def source_columns(scores: np.ndarray, sources: list[str]) -> dict[str, object]:
    scores = np.asarray(scores, dtype=np.float32)
    return {col.RETRIEVAL_SCORE: scores, col.SOURCE: sources, col.SCORE: order_scores(scores)}


class RetrievalSource(Source):
    """Candidates from the retrieval service (ANN over two-tower embeddings + popularity), best first.

    Asks for the variant's ``num_candidates`` (``params.NUM_CANDIDATES``) when it sets one, else the
    router's ``CASCADE_NUM_CANDIDATES``.
    """

    name: ClassVar[str] = "retrieval"
    inputs: ClassVar[tuple[str, ...]] = ()
    outputs: ClassVar[tuple[str, ...]] = (col.RETRIEVAL_SCORE, col.SOURCE, col.SCORE)
    fail_open: ClassVar[bool] = True

    def __init__(self, target: str, timeout_s: float, num_candidates: int) -> None:
        self.num_candidates = num_candidates
        self.downstream = Downstream(
            target=target,
            target_name="retrieval",
            stub_factory=retrieval_pb2_grpc.RetrievalServiceStub,
            method="Retrieve",
            timeout_s=timeout_s,
            idempotent=True,  # a read: safe to retry when the connection was refused
        )

    async def initialize(self) -> None:
        await self.downstream.open()

    async def close(self) -> None:
        await self.downstream.close()

    async def apply(self, query: Query, candidates: CandidateSet) -> CandidateSet:
        req = retrieval_pb2.RetrieveRequest(
            user_id=query.user_id,
            num_candidates=int(query.params.get(params.NUM_CANDIDATES) or self.num_candidates),
            exclude_item_ids=sorted(query.exclude_item_ids),
            request_id=query.request_id,
        )
        resp = await self.downstream.call(req, stage=self.name)
        n = len(resp.item_ids)
        if len(resp.scores) != n or len(resp.sources) != n:
            raise self.downstream.bad_response(
                self.name, f"{n} item_ids, {len(resp.scores)} scores, {len(resp.sources)} sources"
            )
        return CandidateSet(list(resp.item_ids), source_columns(np.asarray(resp.scores), list(resp.sources)))


class PopularFallbackSource(Source):
    """Most popular items of the served registry version (``popular.json``), when retrieval fails.

    Loaded once in ``initialize()``. A registry version without the file leaves this source
    unavailable: with retrieval down too, the request fails with UNAVAILABLE.
    """

    name: ClassVar[str] = "popular_fallback"
    inputs: ClassVar[tuple[str, ...]] = ()
    outputs: ClassVar[tuple[str, ...]] = (col.RETRIEVAL_SCORE, col.SOURCE, col.SCORE)
    fail_open: ClassVar[bool] = True
    SOURCE_NAME: ClassVar[str] = "popular"

    def __init__(self, model: ServingModel, num_candidates: int) -> None:
        self.model = model
        self.num_candidates = num_candidates
        self._item_ids: list[str] | None = None
        self._scores: np.ndarray | None = None

    @property
    def available(self) -> bool:
        return self._item_ids is not None

    async def initialize(self) -> None:
        self.model.load()
        path = self.model.file("popular")
        if not path.is_file():
            log.warning("no popularity fallback: %s missing", path, extra={"event": "popular_missing"})
            return
        rows = json.loads(path.read_text())
        if not isinstance(rows, list):
            raise ValueError(f"{path}: expected a JSON list of {{item_id, score}}, got {type(rows).__name__}")
        ids: list[str] = []
        scores: list[float] = []
        for i, r in enumerate(rows):
            if not isinstance(r, dict) or not isinstance(r.get("item_id"), str):
                raise ValueError(f"{path}: entry {i} must be an object with a string item_id")
            ids.append(r["item_id"])
            scores.append(float(r.get("score", 0.0)))
        self._item_ids = ids
        self._scores = np.asarray(scores, dtype=np.float32)

    async def apply(self, query: Query, candidates: CandidateSet) -> CandidateSet:
        if self._item_ids is None or self._scores is None:
            raise UnavailableError("no popularity list in the served registry version")
        # Ask for enough that the exclusion filter still leaves num_candidates.
        wanted = int(query.params.get(params.NUM_CANDIDATES) or self.num_candidates)
        k = min(len(self._item_ids), wanted + len(query.exclude_item_ids))
        return CandidateSet(self._item_ids[:k], source_columns(self._scores[:k], [self.SOURCE_NAME] * k))
