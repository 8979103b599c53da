"""ColocatedApp: the router app (experiments, servicer, health, metrics) over the in-process pipeline.

It subclasses :class:`~cascade_router.app.RouterApp`, so request validation, variant assignment,
fallback semantics, the batch cache and the response are the router's own; only the pipeline differs
(see :func:`cascade_colocated.pipeline.build_pipeline`).
"""

from __future__ import annotations

from cascade_core.stages import Pipeline
from cascade_router.app import RouterApp
from cascade_router.service import RecommendationServicer

from cascade_colocated.pipeline import build_pipeline
from cascade_colocated.settings import ColocatedSettings


class ColocatedApp(RouterApp):
    name = "colocated"
    pipeline: Pipeline
    servicer: RecommendationServicer

    def __init__(self, settings: ColocatedSettings) -> None:
        super().__init__(settings)  # builds the router's pipeline and servicer (no I/O)
        self.settings: ColocatedSettings = settings
        router_pipeline: Pipeline = self.pipeline
        router_servicer: RecommendationServicer = self.servicer
        pipeline = build_pipeline(settings, self.model, router_pipeline)
        self.pipeline = pipeline
        self.servicer = RecommendationServicer(
            pipeline, self.model, settings.request_budget_s, router_servicer.cache_pipeline
        )
