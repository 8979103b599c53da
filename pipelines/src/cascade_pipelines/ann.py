"""ANN index over item embeddings (hnswlib, inner product) and the exact numpy oracle it is tested against."""

from __future__ import annotations

from pathlib import Path

import hnswlib
import numpy as np

EF_LADDER = (100, 128, 160, 200, 256, 320, 400, 512, 800, 1024)


def build_index(emb: np.ndarray, m: int = 16, ef_construction: int = 200, seed: int = 100,
                threads: int = 1) -> hnswlib.Index:
    """hnswlib ``ip`` index; labels are the item row indices. One thread by default = reproducible."""
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    index = hnswlib.Index(space="ip", dim=emb.shape[1])
    index.init_index(max_elements=max(1, len(emb)), ef_construction=ef_construction, M=m, random_seed=seed)
    index.add_items(emb, np.arange(len(emb)), num_threads=threads)
    return index


def load_index(path: Path | str, dim: int, ef: int) -> hnswlib.Index:
    index = hnswlib.Index(space="ip", dim=dim)
    index.load_index(str(path))
    index.set_ef(ef)
    return index


def exact_topk(queries: np.ndarray, emb: np.ndarray, k: int, batch: int = 1024) -> np.ndarray:
    """Exact inner-product top-k item rows per query (best first): the test oracle."""
    k = min(k, len(emb))
    out = np.empty((len(queries), k), dtype=np.int64)
    for s in range(0, len(queries), batch):
        scores = queries[s : s + batch] @ emb.T
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
        out[s : s + batch] = np.take_along_axis(part, order, axis=1)
    return out


def recall_vs_exact(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean |approx ∩ exact| / k over queries."""
    k = exact.shape[1]
    hits = [len(np.intersect1d(a, e, assume_unique=True)) for a, e in zip(approx, exact)]
    return float(np.mean(hits) / k) if len(hits) else 1.0


def tune_ef(index: hnswlib.Index, queries: np.ndarray, emb: np.ndarray, k: int = 100,
            target: float = 0.95, ladder: tuple[int, ...] = EF_LADDER) -> tuple[int, float]:
    """Smallest ef_search on the ladder whose recall@k vs exact reaches ``target`` on ``queries``."""
    k = min(k, len(emb))
    exact = exact_topk(queries, emb, k)
    ef, rec = ladder[-1], 0.0
    for ef in ladder:
        index.set_ef(max(ef, k))
        labels, _ = index.knn_query(queries, k=k)
        rec = recall_vs_exact(labels, exact)
        if rec >= target:
            break
    index.set_ef(max(ef, k))
    return max(ef, k), rec
