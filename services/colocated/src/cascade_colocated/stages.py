"""The router's downstream stages, answered in-process by the services' own code.

Each class subclasses the router stage it replaces, so name, inputs/outputs, ``fail_open`` and the
fallback are the router's; only the step that called the network changes:

* :class:`InProcessRetrievalSource` runs the retrieval service's pipeline
  (:func:`cascade_retrieval.pipeline.build_pipeline`: ANN + popularity, exclusion and consumed filters);
* :class:`InProcessFeatureHydrator` runs the feature service's :class:`OnlineFeatureHydrator` (fast
  online-store reader + :meth:`FeatureLayout.assemble`);
* :class:`InProcessRankingScorer` scores with the ranking service's :class:`ModelManager` and backend.

No protobuf, no HTTP/2, no second event loop: what is left is the stage work itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from cascade_core.errors import CascadeError, UnavailableError
from cascade_core.registry import Registry
from cascade_core.stages import CandidateSet, Query
from cascade_features.hydrator import FeatureDefaults, OnlineFeatureHydrator
from cascade_features.stores import make_reader
from cascade_platform import metrics
from cascade_ranking.backends import make_backend
from cascade_ranking.models import ModelManager
from cascade_ranking.routing import ModelRouting
from cascade_retrieval.artifacts import VersionArtifacts
from cascade_retrieval.pipeline import build_pipeline as build_retrieval_pipeline
from cascade_router import params
from cascade_router.model import ServingModel
from cascade_router.stages import FeatureHydrator, RankingScorer, RetrievalSource
from cascade_router.stages import columns as col
from cascade_router.stages.hydrators import retrieval_feature
from cascade_router.stages.sources import source_columns

from cascade_colocated.settings import ColocatedSettings

IN_PROCESS = "in-process"


class InProcessRetrievalSource(RetrievalSource):
    """Candidates from the retrieval pipeline of the served version, in this process."""

    def __init__(self, artifacts: VersionArtifacts, num_candidates: int) -> None:
        super().__init__(IN_PROCESS, 1.0, num_candidates)
        self.retrieval = build_retrieval_pipeline(artifacts)
        self._stage_seconds = {
            s.name: metrics.STAGE_SECONDS.labels("retrieval", s.name) for s in self.retrieval.stages()
        }

    async def initialize(self) -> None:
        await self.retrieval.initialize()

    async def close(self) -> None:
        await self.retrieval.close()

    async def apply(self, query: Query, candidates: CandidateSet) -> CandidateSet:
        inner = Query(
            user_id=query.user_id,
            num_items=self.num_candidates,
            request_id=query.request_id,
            exclude_item_ids=query.exclude_item_ids,
            deadline=query.deadline,
        )
        result = await self.retrieval.run(inner)
        for stage, seconds in result.stage_seconds.items():
            self._stage_seconds[stage].observe(seconds)
        c = result.candidates
        if not len(c):
            return CandidateSet.empty()
        return CandidateSet(c.item_ids, source_columns(c.column("score"), list(c.column("source"))))


class InProcessFeatureHydrator(FeatureHydrator):
    """The ranker matrix from the feature service's hydrator (same reader, same assembly)."""

    def __init__(self, model: ServingModel, settings: ColocatedSettings) -> None:
        super().__init__(model, IN_PROCESS, 1.0, settings.feature_service)
        self.settings = settings
        self.online: OnlineFeatureHydrator | None = None
        self._missing = metrics.FALLBACKS.labels("features", "missing_item_rows")
        self._user_missing = metrics.FALLBACKS.labels("features", "missing_user_row")

    async def initialize(self) -> None:
        self.model.load()
        self._names = self.model.feature_names
        defaults = FeatureDefaults.from_ranker(self.model.manifest.ranker)
        s = self.settings
        reader = make_reader(s.online_store, s.feast_project, defaults.layout.user_dim, defaults.layout.item_dim,
                             realtime=defaults.layout.realtime)
        self.online = OnlineFeatureHydrator(reader, defaults)
        await self.online.initialize()

    async def close(self) -> None:
        if self.online is not None:
            await self.online.close()

    async def apply(self, query: Query, candidates: CandidateSet) -> dict[str, Any]:
        if self.online is None:
            raise RuntimeError("InProcessFeatureHydrator.apply before initialize()")
        if not len(candidates):
            return {col.FEATURES: np.zeros((0, len(self._names)), dtype=np.float32)}
        a = await self.online.assemble(query.user_id, candidates.item_ids, retrieval_feature(candidates))
        if a.missing_items:
            self._missing.inc(a.missing_items)
        if a.user_missing:
            self._user_missing.inc()
        return {col.FEATURES: a.matrix}


class InProcessRankingScorer(RankingScorer):
    """Scores with the ranking service's model manager: the served version plus ``preload_versions``."""

    def __init__(self, model: ServingModel, settings: ColocatedSettings) -> None:
        super().__init__(model, IN_PROCESS, 1.0)
        self.settings = settings
        self.backend = make_backend(settings.backend)
        self.manager = ModelManager(Registry(settings.artifacts_dir), self.backend)

    async def initialize(self) -> None:
        self.model.load()
        self._names = self.model.feature_names
        self._model_name = self.model.manifest.ranker.name
        await self.backend.initialize()
        for version in self.settings.preload_versions:
            self.manager.pinned.add((await self.manager.ensure_loaded(version)).version)
        await self.manager.apply_routing(ModelRouting(default=self.model.version_id))

    async def close(self) -> None:
        await self.manager.close()
        await self.backend.close()

    async def apply(self, query: Query, candidates: CandidateSet) -> np.ndarray:
        version = str(query.params.get(params.RANKER_VERSION, ""))
        n = len(candidates)
        if n == 0:
            query.params[params.SCORED_MODEL_VERSION] = version or self.model.version_id
            return np.zeros(0, dtype=np.float32)
        try:
            served = self.manager.resolve(self._model_name, version, query.request_id)
        except CascadeError as e:  # unknown variant version: a config mismatch, served by the fallback
            raise UnavailableError(f"ranking: {e.message}") from None
        matrix = np.ascontiguousarray(candidates.column(col.FEATURES), dtype=np.float32)
        if matrix.shape != (n, served.n_features):
            raise UnavailableError(f"ranking: matrix {matrix.shape}, ranker takes {served.n_features} features")
        scores = await self.backend.score(served.name, served.version, matrix)
        if scores.shape != (n,) or not np.isfinite(scores).all():
            raise UnavailableError(f"ranking: {scores.shape} scores (finite: {np.isfinite(scores).all()})")
        query.params[params.SCORED_MODEL_VERSION] = served.version
        return scores
