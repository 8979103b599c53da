"""Scorer: the ranking service scores the feature matrix with the variant's ranker version(s)."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import numpy as np
from cascade.ranking.v1 import ranking_pb2, ranking_pb2_grpc
from cascade_core.stages import CandidateSet, Query, Scorer

from cascade_router import params
from cascade_router.model import ServingModel
from cascade_router.stages import columns as col
from cascade_router.stages.downstream import Downstream


class RankingScorer(Scorer):
    """Rank -> one score per candidate, replacing the ``score`` column.

    Reads the variant's ``params.RANKER_VERSION`` ("" = the ranking service's default) and records the
    version that answered in ``params.SCORED_MODEL_VERSION``. Fail-open: when ranking is down the
    pipeline keeps the sources' baseline ``score`` (retrieval order, non-increasing).

    Interleave requests (``params.INTERLEAVE_ARMS``) are scored by both arms' versions concurrently on
    the same matrix; both score vectors go to ``params.ARM_SCORES`` for the selector's team draft and
    arm A's scores are the ``score`` column. If either arm fails the whole stage falls back (a list
    must never be interleaved against a missing ranker).

    The scored candidates (``params.SCORED_CANDIDATES``) and the served scores
    (``params.PRIMARY_SCORES``) are kept by reference for the shadow side effect.
    """

    name: ClassVar[str] = "ranking"
    inputs: ClassVar[tuple[str, ...]] = (col.FEATURES,)
    outputs: ClassVar[tuple[str, ...]] = (col.SCORE,)
    fail_open: ClassVar[bool] = True

    def __init__(self, model: ServingModel, target: str, timeout_s: float) -> None:
        self.model = model
        self.downstream = Downstream(
            target=target,
            target_name="ranking",
            stub_factory=ranking_pb2_grpc.RankingServiceStub,
            method="Rank",
            timeout_s=timeout_s,
            idempotent=True,  # a read: safe to retry when the connection was refused
        )
        self._names: list[str] = []
        self._model_name = ""

    async def initialize(self) -> None:
        self.model.load()
        self._names = self.model.feature_names
        self._model_name = self.model.manifest.ranker.name
        await self.downstream.open()

    async def close(self) -> None:
        await self.downstream.close()

    async def _rank(self, query: Query, matrix: np.ndarray, version: str) -> tuple[np.ndarray, str]:
        n = matrix.shape[0]
        req = ranking_pb2.RankRequest(
            model_name=self._model_name,
            model_version=version,
            feature_names=self._names,
            rows=n,
            cols=matrix.shape[1],
            matrix=matrix.tobytes(),
            request_id=query.request_id,
        )
        resp = await self.downstream.call(req, stage=self.name)
        if len(resp.scores) != n:
            raise self.downstream.bad_response(self.name, f"{len(resp.scores)} scores for {n} rows")
        scores = np.asarray(resp.scores, dtype=np.float32)
        if not np.isfinite(scores).all():
            raise self.downstream.bad_response(self.name, "non-finite scores")
        return scores, resp.model_version or version or self.model.version_id

    async def apply(self, query: Query, candidates: CandidateSet) -> np.ndarray:
        version = str(query.params.get(params.RANKER_VERSION, ""))
        query.params[params.SCORED_CANDIDATES] = candidates
        n = len(candidates)
        if n == 0:
            query.params[params.SCORED_MODEL_VERSION] = version or self.model.version_id
            return np.zeros(0, dtype=np.float32)
        matrix = np.ascontiguousarray(candidates.column(col.FEATURES), dtype="<f4")
        arms = query.params.get(params.INTERLEAVE_ARMS)
        if arms:
            a, b = arms
            if a.ranker_version == b.ranker_version:  # an A/A interleave: one call serves both arms
                sa, va = await self._rank(query, matrix, a.ranker_version)
                sb, vb = sa, va
            else:
                (sa, va), (sb, vb) = await asyncio.gather(
                    self._rank(query, matrix, a.ranker_version), self._rank(query, matrix, b.ranker_version)
                )
            query.params[params.ARM_SCORES] = {a.name: sa, b.name: sb}
            query.params[params.ARM_VERSIONS] = {a.name: va, b.name: vb}
            query.params[params.SCORED_MODEL_VERSION] = f"interleave({va},{vb})"
            query.params[params.PRIMARY_SCORES] = sa
            return sa
        scores, served = await self._rank(query, matrix, version)
        query.params[params.SCORED_MODEL_VERSION] = served
        query.params[params.PRIMARY_SCORES] = scores
        return scores
