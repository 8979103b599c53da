"""Top-K ranking metrics with binary relevance (the definitions printed in eval.md)."""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np


def recall_at_k(ranked: Sequence[int] | np.ndarray, relevant: set[int], k: int) -> float:
    """|top-k ∩ relevant| / |relevant| (0 when nothing is relevant)."""
    if not relevant:
        return 0.0
    return sum(1 for x in list(ranked)[:k] if x in relevant) / len(relevant)


def ndcg_at_k(ranked: Sequence[int] | np.ndarray, relevant: set[int], k: int) -> float:
    """DCG@k / ideal DCG@k with gains 1/log2(rank+1); ideal = min(|relevant|, k) hits on top."""
    if not relevant:
        return 0.0
    dcg = sum(1.0 / np.log2(r + 2) for r, x in enumerate(list(ranked)[:k]) if x in relevant)
    idcg = sum(1.0 / np.log2(r + 2) for r in range(min(len(relevant), k)))
    return float(dcg / idcg)


def mean_metrics(
    ranked_lists: Iterable[Sequence[int] | np.ndarray], truths: Iterable[set[int]], ks: dict[str, int]
) -> dict[str, float]:
    """Average ``{"recall@K": ..., "ndcg@K": ...}`` over users; ``ks`` maps metric name -> K."""
    sums = {name: 0.0 for name in ks}
    n = 0
    for ranked, rel in zip(ranked_lists, truths):
        n += 1
        for name, k in ks.items():
            fn = ndcg_at_k if name.startswith("ndcg") else recall_at_k
            sums[name] += fn(ranked, rel, k)
    return {name: (v / n if n else 0.0) for name, v in sums.items()}
