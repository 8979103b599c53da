"""Build ranker inputs for one point in time: per-user candidate lists with FeatureLayout rows.

Used twice with the same code: for training (history = fit part, labels = validation interactions)
and for evaluation (history = train split, labels = test interactions), so train/eval/serve agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import hnswlib
import numpy as np

from cascade_core.features import FeatureLayout
from cascade_pipelines.candidates import Candidates, Consumed, ann_topk, merge_candidates
from cascade_pipelines.ranker import ListwiseData

if TYPE_CHECKING:
    from cascade_pipelines.realtime import RealtimeAt


@dataclass
class PointInTime:
    """Everything known at one cut: feature vectors, consumed items and popularity order."""

    user_vecs: np.ndarray  # [n_users, user_dim]
    item_vecs: np.ndarray  # [n_items, item_dim]
    consumed: Consumed
    popular_order: np.ndarray  # item rows, most popular first
    # Real-time features of each user at its label time (real-time layouts only; None: no events).
    realtime: "RealtimeAt | None" = None

    def assemble(self, layout: FeatureLayout, user: int, items: np.ndarray,
                 retrieval_scores: np.ndarray | None) -> np.ndarray:
        """The ranker rows of ``user`` x ``items`` at this point in time (training and evaluation)."""
        user_rt = item_rt = None
        if layout.realtime and self.realtime is not None:
            user_rt, item_rt = self.realtime.user(user), self.realtime.items(user, items)
        return layout.assemble(self.user_vecs[user], self.item_vecs[items], retrieval_scores,
                               user_rt=user_rt, item_rt=item_rt)


def user_candidates(
    pit: PointInTime,
    user_emb: np.ndarray,
    item_emb: np.ndarray,
    users: np.ndarray,
    ann_k: int,
    popular_k: int,
    index: hnswlib.Index | None = None,
    ef_search: int = 200,
    n_random: int = 0,
    seed: int = 0,
) -> list[Candidates]:
    """ANN top-``ann_k`` ∪ popular top-``popular_k`` (+ ``n_random`` random items) per user, consumed removed."""
    rng = np.random.default_rng(seed)
    ann = ann_topk(user_emb, item_emb, users, pit.consumed, ann_k, index=index, ef_search=ef_search)
    out = []
    for row, u in enumerate(users):
        extra = rng.integers(0, len(item_emb), size=n_random) if n_random else None
        out.append(merge_candidates(ann[row], pit.popular_order, pit.consumed.row(int(u)), popular_k, extra))
    return out


def listwise_data(
    layout: FeatureLayout,
    pit: PointInTime,
    users: np.ndarray,
    cands: list[Candidates],
    truth: dict[int, set[int]],
) -> ListwiseData:
    feats, labels, n_rel = [], [], []
    for u, c in zip(users, cands):
        feats.append(pit.assemble(layout, int(u), c.items, c.scores))
        rel = truth.get(int(u), set())
        labels.append(np.fromiter((1.0 if int(i) in rel else 0.0 for i in c.items), np.float32, len(c.items)))
        n_rel.append(len(rel))
    return ListwiseData(feats, labels, n_rel)


def truth_sets(test_users: np.ndarray, test_items: np.ndarray) -> dict[int, set[int]]:
    out: dict[int, set[int]] = {}
    for u, i in zip(test_users.tolist(), test_items.tolist()):
        out.setdefault(u, set()).add(i)
    return out
