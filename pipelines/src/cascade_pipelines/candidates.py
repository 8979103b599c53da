"""Candidate generation shared by ranker training and offline evaluation (mirrors the serving path).

Per user: two-tower top-``ann_k`` items not yet consumed (scores = inner products), then the most
popular unconsumed items (``popular_k``; retrieval score 0 unless the item also came from the ANN —
the ``retrieval_score`` contract for non-ANN sources), deduplicated, ANN first.
"""

from __future__ import annotations

from dataclasses import dataclass

import hnswlib
import numpy as np


@dataclass
class Consumed:
    """CSR of consumed item rows per user row."""

    indptr: np.ndarray
    indices: np.ndarray

    def row(self, u: int) -> np.ndarray:
        return self.indices[self.indptr[u] : self.indptr[u + 1]]


@dataclass
class Candidates:
    items: np.ndarray  # int64 item rows
    scores: np.ndarray  # float32 retrieval score (0 for non-ANN)
    from_ann: np.ndarray  # bool


def ann_topk(
    user_vecs: np.ndarray,
    item_emb: np.ndarray,
    users: np.ndarray,
    consumed: Consumed,
    k: int,
    index: hnswlib.Index | None = None,
    ef_search: int = 200,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Top-k unconsumed items per user by inner product: exact (numpy) or via the hnswlib index,
    over-fetching by the user's consumed count so k unconsumed items remain."""
    out = []
    n_items = len(item_emb)
    for row, u in enumerate(users):
        q = user_vecs[row]
        seen = consumed.row(int(u))
        kk = min(n_items, k + len(seen))
        if index is None:
            s = item_emb @ q
            s[seen] = -np.inf
            top = np.argpartition(-s, min(k, n_items - 1))[: min(k, n_items)]
            top = top[np.argsort(-s[top], kind="stable")]
            top = top[np.isfinite(s[top])]
            out.append((top.astype(np.int64), s[top].astype(np.float32)))
        else:
            index.set_ef(max(ef_search, kk))
            labels, dist = index.knn_query(q[None, :], k=kk)
            labels, sims = labels[0].astype(np.int64), (1.0 - dist[0]).astype(np.float32)
            keep = ~np.isin(labels, seen)
            out.append((labels[keep][:k], sims[keep][:k]))
    return out


def merge_candidates(
    ann: tuple[np.ndarray, np.ndarray],
    popular_order: np.ndarray,
    seen: np.ndarray,
    popular_k: int,
    extra: np.ndarray | None = None,
) -> Candidates:
    """ANN items first, then up to ``popular_k`` unconsumed popular items, then ``extra`` (e.g. random
    negatives for training), deduplicated; non-ANN items carry retrieval score 0."""
    ann_items, ann_scores = ann
    taken = set(ann_items.tolist())
    seen_set = set(seen.tolist())
    pop: list[int] = []
    for it in popular_order:
        if len(pop) >= popular_k:
            break
        it = int(it)
        if it not in seen_set and it not in taken:
            pop.append(it)
            taken.add(it)
    more: list[int] = []
    if extra is not None:
        for it in extra.tolist():
            if it not in seen_set and it not in taken:
                more.append(it)
                taken.add(it)
    rest = np.asarray(pop + more, dtype=np.int64)
    return Candidates(
        items=np.concatenate([ann_items, rest]),
        scores=np.concatenate([ann_scores, np.zeros(len(rest), np.float32)]),
        from_ann=np.concatenate([np.ones(len(ann_items), bool), np.zeros(len(rest), bool)]),
    )
