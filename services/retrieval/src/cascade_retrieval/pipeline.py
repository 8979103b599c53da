"""The retrieval pipeline of one registry version, and its printable tree."""

from __future__ import annotations

from cascade_core.registry import Registry
from cascade_core.stages import Pipeline
from cascade_retrieval.artifacts import VersionArtifacts
from cascade_retrieval.stages import (
    AnnSource,
    ConsumedItemsFilter,
    ExcludeItemsFilter,
    PopularitySource,
    TopNSelector,
)


def build_pipeline(artifacts: VersionArtifacts) -> Pipeline:
    """sources (ann, popular) -> filters (exclude, consumed) -> top-N selector. No I/O here."""
    return Pipeline(
        "retrieval",
        sources=[AnnSource(artifacts), PopularitySource(artifacts)],
        filters=[ExcludeItemsFilter(artifacts), ConsumedItemsFilter(artifacts)],
        selector=TopNSelector(),
    )


def pipeline_tree() -> str:
    """The pipeline's tree for docs (``python -m cascade_retrieval --print-pipeline``); reads nothing."""
    return build_pipeline(VersionArtifacts(Registry("."), "latest")).tree()
