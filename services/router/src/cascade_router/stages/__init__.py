"""The router's pipeline stages (see :mod:`cascade_core.stages` for the contract)."""

from cascade_router.stages.filters import ExcludeItemsFilter
from cascade_router.stages.hydrators import FeatureHydrator
from cascade_router.stages.scorers import RankingScorer
from cascade_router.stages.selectors import TopKSelector
from cascade_router.stages.sources import PopularFallbackSource, RetrievalSource

__all__ = [
    "ExcludeItemsFilter",
    "FeatureHydrator",
    "PopularFallbackSource",
    "RankingScorer",
    "RetrievalSource",
    "TopKSelector",
]
