"""Filters: pure, synchronous removal of candidates."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from cascade_core.stages import CandidateSet, Filter, FilterResult, Query


class ExcludeItemsFilter(Filter):
    """Drops the request's ``exclude_item_ids``.

    Retrieval already excludes them; this is defence in depth (the popularity fallback does not, and a
    downstream bug must never show a storefront an item it asked to hide).
    """

    name: ClassVar[str] = "exclude_items"

    def apply(self, query: Query, candidates: CandidateSet) -> FilterResult:
        if not query.exclude_item_ids or not len(candidates):
            return FilterResult(candidates, CandidateSet.empty())
        excluded = query.exclude_item_ids
        keep = np.fromiter(
            (i not in excluded for i in candidates.item_ids), dtype=bool, count=len(candidates)
        )
        kept, removed = candidates.mask(keep)
        return FilterResult(kept, removed)
