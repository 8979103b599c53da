"""Build ranker inputs for one point in time: per-user candidate lists with FeatureLayout rows.

Used twice with the same code: for training (history = fit part, labels = validation interactions)
and for evaluation (history = train split, labels = test interactions), so train/eval/serve agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import hnswlib
import numpy as np

from cascade_core.features import FeatureLayout
from cascade_pipelines.candidates import Candidates, Consumed, ann_topk, merge_candidates
from cascade_pipelines.ranker import ListwiseData


@dataclass
class PointInTime:
    """Everything known at one cut: feature vectors, consumed items and popularity order."""

    user_vecs: np.ndarray  # [n_users, user_dim]
    item_vecs: np.ndarray  # [n_items, item_dim]
    consumed: Consumed
    popular_order: np.ndarray  # item rows, most popular first


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
        feats.append(layout.assemble(pit.user_vecs[int(u)], pit.item_vecs[c.items], c.scores))
        rel = truth.get(int(u), set())
        labels.append(np.fromiter((1.0 if int(i) in rel else 0.0 for i in c.items), np.float32, len(c.items)))
        n_rel.append(len(rel))
    return ListwiseData(feats, labels, n_rel)


def truth_sets(test_users: np.ndarray, test_items: np.ndarray) -> dict[int, set[int]]:
    out: dict[int, set[int]] = {}
    for u, i in zip(test_users.tolist(), test_items.tolist()):
        out.setdefault(u, set()).add(i)
    return out
