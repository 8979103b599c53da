"""The co-located Recommend pipeline: the router's own pipeline with its three network stages swapped
for in-process ones.

Fallback sources, filters, selector and side effects are taken from the pipeline the router builds
for the same settings (:func:`cascade_router.pipeline.build_pipeline`), so the co-located mode follows
the router as it evolves; a router that grows another network stage fails here, loudly, instead of
silently calling the network from the co-located process.
"""

from __future__ import annotations

from cascade_core.registry import Registry
from cascade_core.stages import Pipeline
from cascade_retrieval.artifacts import VersionArtifacts
from cascade_router.model import ServingModel
from cascade_router.stages import FeatureHydrator, RankingScorer, RetrievalSource

from cascade_colocated.settings import ColocatedSettings
from cascade_colocated.stages import InProcessFeatureHydrator, InProcessRankingScorer, InProcessRetrievalSource


def build_pipeline(settings: ColocatedSettings, model: ServingModel, router: Pipeline) -> Pipeline:
    """``router``: the router's pipeline for ``settings`` (built, not initialized). No I/O here."""
    for slot, stages, network in (("sources", router.sources, RetrievalSource),
                                  ("hydrators", router.hydrators, FeatureHydrator),
                                  ("scorers", router.scorers, RankingScorer)):
        if [type(s) for s in stages] != [network]:
            raise TypeError(f"router {slot} are {[type(s).__name__ for s in stages]}: the co-located mode "
                            f"replaces exactly one {network.__name__}; update cascade_colocated.pipeline")
    artifacts = VersionArtifacts(Registry(settings.artifacts_dir), settings.model_version)
    return Pipeline(
        "colocated.Recommend",
        sources=[InProcessRetrievalSource(artifacts, settings.num_candidates)],
        fallback_sources=router.fallback_sources,
        filters=router.filters,
        hydrators=[InProcessFeatureHydrator(model, settings)],
        scorers=[InProcessRankingScorer(model, settings)],
        selector=router.selector,
        side_effects=router.side_effects,
    )
