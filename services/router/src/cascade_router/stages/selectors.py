"""Selector: the final ordering and truncation (team-draft interleaving for interleave requests)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from cascade_core.stages import CandidateSet, Query, Selector

from cascade_router import params
from cascade_router.interleave import coin_seed, team_draft
from cascade_router.stages import columns as col


class TopKSelector(Selector):
    """Sorts by ``score`` descending (stable: ties keep their incoming order), keeps ``num_items`` and
    numbers them ``rank`` 1..n.

    Interleave requests whose two arms both scored (``params.ARM_SCORES``) are team-drafted instead:
    the ``team`` column names the arm that contributed each item and ``score`` is that arm's score
    (scores of two rankers are not comparable, so an interleaved list is not sorted by score).
    """

    name: ClassVar[str] = "top_k"
    inputs: ClassVar[tuple[str, ...]] = (col.SCORE,)
    outputs: ClassVar[tuple[str, ...]] = (col.RANK, col.TEAM)

    def apply(self, query: Query, candidates: CandidateSet) -> CandidateSet:
        if not len(candidates):
            return candidates.with_columns(**{col.RANK: np.zeros(0, dtype=np.int32)})
        arm_scores = query.params.get(params.ARM_SCORES)
        arms = query.params.get(params.INTERLEAVE_ARMS)
        if arm_scores and arms:
            return self._interleave(query, candidates, arms, arm_scores)
        scores = np.asarray(candidates.column(col.SCORE), dtype=np.float64)
        order = np.argsort(-scores, kind="stable")[: query.num_items]
        top = candidates.take(order)
        return top.with_columns(**{col.RANK: np.arange(1, len(top) + 1, dtype=np.int32)})

    def _interleave(self, query: Query, candidates: CandidateSet, arms, arm_scores) -> CandidateSet:
        a, b = arms
        sa, sb = arm_scores[a.name], arm_scores[b.name]
        if len(sa) != len(candidates) or len(sb) != len(candidates):
            raise ValueError(
                f"arm scores ({len(sa)}, {len(sb)}) do not match the {len(candidates)} candidates"
            )
        assignment = query.params.get(params.ASSIGNMENT)
        salt = assignment.salt if assignment is not None else ""
        rows, teams = team_draft(sa, sb, query.num_items, coin_seed(salt, query.request_id))
        top = candidates.take(rows)
        team_arr = np.asarray(teams, dtype=bool)
        score = np.where(team_arr, np.asarray(sb)[rows], np.asarray(sa)[rows]).astype(np.float32)
        return top.with_columns(**{
            col.RANK: np.arange(1, len(top) + 1, dtype=np.int32),
            col.TEAM: [b.name if t else a.name for t in teams],
            col.SCORE: score,
        })
