"""Hydrator: the ranker's feature matrix from the feature service, or defaults when it is down."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from cascade.features.v1 import features_pb2, features_pb2_grpc
from cascade_core.stages import CandidateSet, Hydrator, Query

from cascade_router.model import ServingModel
from cascade_router.stages import columns as col
from cascade_router.stages.downstream import Downstream

ANN_SOURCE = "ann"


def retrieval_feature(candidates: CandidateSet) -> np.ndarray:
    """The ``retrieval_score`` cross feature: the two-tower inner product for ANN candidates, 0 for
    every other source (as in training: log-popularity is not an inner product)."""
    scores = np.asarray(candidates.column(col.RETRIEVAL_SCORE), dtype=np.float32)
    is_ann = np.fromiter(
        (s == ANN_SOURCE for s in candidates.column(col.SOURCE)), dtype=bool, count=len(scores)
    )
    return np.where(is_ann, scores, np.float32(0.0)).astype(np.float32)


class FeatureHydrator(Hydrator):
    """GetFeatures -> packed float32 [n, n_features] matrix, columns in the manifest's order.

    Fallback (feature service down, or an answer in another layout): every user and item gets the
    manifest's ``ranker.feature_defaults`` (training means), with the cross features computed by
    :meth:`FeatureLayout.assemble` from those defaults and the retrieval feature — the same code path
    training uses, so the ranker still sees a well-formed row.
    """

    name: ClassVar[str] = "features"
    inputs: ClassVar[tuple[str, ...]] = (col.RETRIEVAL_SCORE, col.SOURCE)
    outputs: ClassVar[tuple[str, ...]] = (col.FEATURES,)
    fail_open: ClassVar[bool] = True

    def __init__(self, model: ServingModel, target: str, timeout_s: float, feature_service: str = "") -> None:
        self.model = model
        self.feature_service = feature_service
        self.downstream = Downstream(
            target=target,
            target_name="features",
            stub_factory=features_pb2_grpc.FeatureServiceStub,
            method="GetFeatures",
            timeout_s=timeout_s,
            idempotent=True,  # a read: safe to retry when the connection was refused
        )
        self._names: list[str] = []

    async def initialize(self) -> None:
        self.model.load()
        self._names = self.model.feature_names
        await self.downstream.open()

    async def close(self) -> None:
        await self.downstream.close()

    async def apply(self, query: Query, candidates: CandidateSet) -> dict[str, Any]:
        n, dim = len(candidates), len(self._names)
        if n == 0:
            return {col.FEATURES: np.zeros((0, dim), dtype=np.float32)}
        req = features_pb2.GetFeaturesRequest(
            user_id=query.user_id,
            item_ids=candidates.item_ids,
            retrieval_scores=retrieval_feature(candidates).tolist(),
            feature_service=self.feature_service,
            request_id=query.request_id,
        )
        resp = await self.downstream.call(req, stage=self.name)
        if list(resp.feature_names) != self._names:
            raise self.downstream.bad_response(
                self.name,
                f"feature layout {list(resp.feature_names)[:4]}... ({len(resp.feature_names)} columns) "
                "differs "
                f"from manifest {self.model.version_id} ({dim} columns): serve the same registry version",
            )
        if resp.rows != n or resp.cols != dim or len(resp.matrix) != 4 * n * dim:
            raise self.downstream.bad_response(
                self.name,
                f"matrix {resp.rows}x{resp.cols} with {len(resp.matrix)} bytes, expected {n}x{dim} float32",
            )
        matrix = np.frombuffer(resp.matrix, dtype="<f4").reshape(n, dim).astype(np.float32)
        return {col.FEATURES: matrix}

    def fallback(self, query: Query, candidates: CandidateSet) -> dict[str, Any]:
        n = len(candidates)
        layout = self.model.layout
        item_mat = np.broadcast_to(self.model.item_defaults, (n, layout.item_dim))
        matrix = layout.assemble(
            self.model.user_defaults, item_mat, retrieval_feature(candidates) if n else None
        )
        return {col.FEATURES: matrix}
