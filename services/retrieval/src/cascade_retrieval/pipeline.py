"""The retrieval pipeline of one registry version, and its printable tree."""

from __future__ import annotations

import functools
import time

from cascade_core.registry import Registry
from cascade_core.stages import CandidateSet, Pipeline, PipelineResult, Query
from cascade_retrieval.artifacts import VersionArtifacts
from cascade_retrieval.stages import (
    AnnSource,
    ConsumedItemsFilter,
    ExcludeItemsFilter,
    PopularitySource,
    TopNSelector,
)

# Filters whose decision for a candidate depends on that candidate's item (and the query) alone.
_ROW_WISE_FILTERS = (ExcludeItemsFilter, ConsumedItemsFilter)


class RetrievalPipeline(Pipeline):
    """:class:`Pipeline` whose later sources only *fill*: they run when the first source falls short.

    Shortcut, taken only when it provably changes nothing in the result's candidates: the filters are
    row-wise (:data:`_ROW_WISE_FILTERS`: an item is dropped or kept by its own row), the selector is
    :class:`TopNSelector` (the first ``num_items`` in merge order) and there are no hydrators, scorers or
    side effects. Merging keeps the first source's rows first (later duplicates are dropped) and
    filtering row by row commutes with merging, so once the first source's candidates that survive the
    filters number ``num_items``, the selector's output is made of them alone: the later sources (the
    popularity source) are not run. Such a request records no stage time for them, and the filters'
    ``removed`` counts cover the first source's candidates. Otherwise the request runs as
    :meth:`Pipeline.run` does, reusing the first source's output.
    """

    @functools.cached_property
    def _fill_only(self) -> bool:
        """Whether the shortcut applies (decided once: a pipeline's stages are fixed when it is built)."""
        return (
            len(self.sources) > 1
            and not self.hydrators and not self.scorers and not self.side_effects
            and type(self.selector) is TopNSelector
            and all(type(f) in _ROW_WISE_FILTERS for f in self.filters)
        )

    async def run(self, query: Query) -> PipelineResult:
        if not self._fill_only:
            return await super().run(query)
        result = PipelineResult(CandidateSet.empty())
        first = self.sources[0]
        out, ok = await self._run_stage(first, first.apply(query, CandidateSet.empty()), result)
        n = query.num_items
        if ok and out is not None and len(out) >= n:
            cands = CandidateSet.concat([out])  # de-duplicated, as the merge would
            removed: dict[str, int] = {}
            for f in self.filters:
                if len(cands) < n:
                    break
                t0 = time.perf_counter()
                fr = f.apply(query, cands)
                result.stage_seconds[f.name] = time.perf_counter() - t0
                removed[f.name] = fr.n_removed
                cands = fr.kept
            if len(cands) >= n:
                result.removed.update(removed)
                t0 = time.perf_counter()
                result.candidates = self.selector.apply(query, cands)
                result.stage_seconds[self.selector.name] = time.perf_counter() - t0
                return result
        # the first source fell short: merge with the others and filter everything (stage times and
        # removed counts are then those of the full run)
        outs = [(out, ok), *await self._run_sources(self.sources[1:], query, result)]
        return await self._run_after_sources(query, outs, result)


def build_pipeline(artifacts: VersionArtifacts) -> Pipeline:
    """sources (ann, popular) -> filters (exclude, consumed) -> top-N selector. No I/O here.

    The popularity source only fills: it runs when the ANN candidates left after the filters are fewer
    than asked for (cold users, tiny catalogs); see :class:`RetrievalPipeline`.
    """
    return RetrievalPipeline(
        "retrieval",
        sources=[AnnSource(artifacts), PopularitySource(artifacts)],
        filters=[ExcludeItemsFilter(artifacts), ConsumedItemsFilter(artifacts)],
        selector=TopNSelector(),
    )


def pipeline_tree() -> str:
    """The pipeline's tree for docs (``python -m cascade_retrieval --print-pipeline``); reads nothing."""
    return build_pipeline(VersionArtifacts(Registry("."), "latest")).tree()
