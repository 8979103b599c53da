from __future__ import annotations

import numpy as np
import pytest

from cascade_pipelines import ann
from cascade_pipelines.metrics import mean_metrics, ndcg_at_k, recall_at_k


def test_metric_values() -> None:
    assert recall_at_k([1, 2, 3], {2, 9}, 2) == 0.5
    assert ndcg_at_k([5, 1], {1}, 10) == pytest.approx(1 / np.log2(3))
    assert ndcg_at_k([1, 5], {1}, 10) == 1.0
    assert ndcg_at_k([7, 8], {1}, 10) == 0.0
    m = mean_metrics([[1, 2], [3]], [{1}, {4}], {"recall@1": 1, "ndcg@2": 2})
    assert m == {"recall@1": 0.5, "ndcg@2": 0.5}


def _clustered(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((50, dim))
    x = centers[rng.integers(0, 50, n)] + 0.7 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_exact_topk_matches_brute_force() -> None:
    emb, q = _clustered(500, 16, 0), _clustered(20, 16, 1)
    top = ann.exact_topk(q, emb, 10)
    brute = np.argsort(-(q @ emb.T), axis=1)[:, :10]
    assert (top == brute).all()


def test_hnsw_recall_vs_exact_oracle() -> None:
    emb, queries = _clustered(20_000, 64, 2), _clustered(300, 64, 3)
    index = ann.build_index(emb, m=16, ef_construction=200)
    ef, tuned_recall = ann.tune_ef(index, queries, emb, k=100, target=0.95)
    index.set_ef(ef)
    labels, dist = index.knn_query(queries, k=100)
    recall = ann.recall_vs_exact(labels, ann.exact_topk(queries, emb, 100))
    assert recall >= 0.95 and tuned_recall >= 0.95 and ef >= 100
    # labels are item rows and distances are 1 - inner product
    np.testing.assert_allclose(1 - dist[:, 0], np.sum(queries * emb[labels[:, 0]], axis=1), atol=1e-4)
