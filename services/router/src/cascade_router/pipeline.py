"""The router's Recommend pipeline, assembled from settings (no I/O: stages connect in initialize())."""

from __future__ import annotations

from collections.abc import Callable

from cascade_core.stages import Pipeline, SideEffect, Source

from cascade_router.batch import BatchStore
from cascade_router.experiments import Shadow
from cascade_router.exposures import ExposureLogger
from cascade_router.model import ServingModel
from cascade_router.settings import RouterSettings
from cascade_router.stages import (
    ExcludeItemsFilter,
    FeatureHydrator,
    PopularFallbackSource,
    RankingScorer,
    RetrievalSource,
    TopKSelector,
)
from cascade_router.stages.batch import BatchCacheSource, BatchFallbackSource
from cascade_router.stages.side_effects import ExposureLogging, ShadowRanking


def build_pipeline(
    settings: RouterSettings,
    model: ServingModel,
    *,
    exposures: ExposureLogger | None = None,
    shadow: Callable[[], Shadow | None] | None = None,
    batch_store: BatchStore | None = None,
) -> Pipeline:
    """``exposures``: log an exposure per response; ``shadow``: returns the active shadow config (hot
    reloaded; None = off); ``batch_store``: personalised fallback lists before the popularity list."""
    popular = PopularFallbackSource(model, settings.num_candidates)
    fallback: Source = popular if batch_store is None else BatchFallbackSource(batch_store, popular)
    side_effects: list[SideEffect] = []
    if exposures is not None:
        side_effects.append(ExposureLogging(exposures))
    if shadow is not None:
        side_effects.append(ShadowRanking(model, settings.ranking_target, shadow))
    return Pipeline(
        "router.Recommend",
        sources=[
            RetrievalSource(settings.retrieval_target, settings.retrieval_timeout_s, settings.num_candidates)
        ],
        fallback_sources=[fallback],
        filters=[ExcludeItemsFilter()],
        hydrators=[
            FeatureHydrator(
                model, settings.features_target, settings.features_timeout_s, settings.feature_service
            )
        ],
        scorers=[RankingScorer(model, settings.ranking_target, settings.ranking_timeout_s)],
        selector=TopKSelector(),
        side_effects=side_effects,
    )


def build_cache_pipeline(store: BatchStore, exposures: ExposureLogger | None = None) -> Pipeline:
    """Batch lists served as they are (``CASCADE_BATCH_MODE=cache``); a miss falls through to the main
    pipeline."""
    return Pipeline(
        "router.Recommend.cache",
        sources=[BatchCacheSource(store)],
        filters=[ExcludeItemsFilter()],
        selector=TopKSelector(),
        side_effects=[ExposureLogging(exposures)] if exposures is not None else [],
    )
