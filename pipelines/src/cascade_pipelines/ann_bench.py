"""ANN library benchmark: hnswlib vs faiss-cpu (IndexHNSWFlat) vs usearch at equal HNSW settings.

Same vectors, same graph parameters (M / connectivity = 16, ef_construction / expansion_add = 200),
inner-product metric, one thread; for each ef_search the single-query latency (p50/p99 over the
queries) and recall@k against the exact numpy oracle. Prints a markdown table.

    python -m cascade_pipelines.ann_bench                      # registry LATEST if present, else synthetic
    python -m cascade_pipelines.ann_bench --synthetic 100000   # seeded clustered unit vectors, dim 64

faiss-cpu and usearch are dev/bench-only dependencies; serving uses hnswlib.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from cascade_pipelines.ann import build_index, exact_topk, recall_vs_exact


@dataclass
class Row:
    library: str
    ef: int
    build_s: float
    p50_us: float
    p99_us: float
    recall: float


def synthetic_vectors(n_items: int, n_queries: int, dim: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((256, dim)).astype(np.float32)

    def draw(n: int) -> np.ndarray:
        x = centers[rng.integers(0, 256, n)] + 0.8 * rng.standard_normal((n, dim)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    return draw(n_items), draw(n_queries)


def registry_vectors(root: str | None, n_queries: int) -> tuple[np.ndarray, np.ndarray, str]:
    from cascade_core.registry import Registry

    reg = Registry(root)
    items = np.load(reg.file(None, "item_embeddings"))
    users = np.load(reg.file(None, "user_embeddings"))
    rng = np.random.default_rng(0)
    q = users[rng.choice(len(users), size=min(n_queries, len(users)), replace=False)]
    return items, q, f"registry {reg.latest()}"


def _measure(search: Callable[[np.ndarray], np.ndarray], queries: np.ndarray,
             exact: np.ndarray) -> tuple[float, float, float]:
    for q in queries[:20]:
        search(q)  # warm-up
    lat, got = [], []
    for q in queries:
        t = time.perf_counter()
        got.append(search(q))
        lat.append((time.perf_counter() - t) * 1e6)
    return float(np.percentile(lat, 50)), float(np.percentile(lat, 99)), recall_vs_exact(np.stack(got), exact)


def bench(items: np.ndarray, queries: np.ndarray, k: int, efs: list[int], m: int = 16,
          ef_construction: int = 200) -> list[Row]:
    items = np.ascontiguousarray(items, np.float32)
    queries = np.ascontiguousarray(queries, np.float32)
    exact = exact_topk(queries, items, k)
    rows: list[Row] = []

    t = time.perf_counter()
    h = build_index(items, m, ef_construction)
    build = time.perf_counter() - t
    for ef in efs:
        h.set_ef(max(ef, k))
        rows.append(Row("hnswlib", ef, build, *_measure(lambda q: h.knn_query(q[None], k=k)[0][0], queries, exact)))

    try:
        import faiss

        faiss.omp_set_num_threads(1)
        t = time.perf_counter()
        f = faiss.IndexHNSWFlat(items.shape[1], m, faiss.METRIC_INNER_PRODUCT)
        f.hnsw.efConstruction = ef_construction
        f.add(items)
        build = time.perf_counter() - t
        for ef in efs:
            f.hnsw.efSearch = max(ef, k)
            rows.append(Row("faiss-cpu", ef, build, *_measure(lambda q: f.search(q[None], k)[1][0], queries, exact)))
    except ImportError:
        pass

    try:
        from usearch.index import Index

        t = time.perf_counter()
        u = Index(ndim=items.shape[1], metric="ip", dtype="f32", connectivity=m, expansion_add=ef_construction)
        u.add(np.arange(len(items)), items, threads=1)
        build = time.perf_counter() - t
        for ef in efs:
            u.expansion_search = max(ef, k)  # type: ignore[misc]  # settable at runtime
            rows.append(Row("usearch", ef, build,
                            *_measure(lambda q: np.asarray(u.search(q, k, threads=1).keys), queries, exact)))
    except ImportError:
        pass
    return rows


def render(rows: list[Row], title: str, k: int) -> str:
    out = [f"ANN benchmark — {title}, k={k}, M=16, ef_construction=200, 1 thread", "",
           f"| library | ef_search | build s | p50 µs | p99 µs | recall@{k} |", "|---|---:|---:|---:|---:|---:|"]
    out += [f"| {r.library} | {r.ef} | {r.build_s:.2f} | {r.p50_us:.0f} | {r.p99_us:.0f} | {r.recall:.4f} |"
            for r in rows]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--artifacts", default=None, help="artifacts root (uses registry LATEST embeddings)")
    ap.add_argument("--synthetic", type=int, default=0, help="use N seeded synthetic item vectors instead")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--ef", default="100,200,400")
    a = ap.parse_args(argv)
    efs = [int(x) for x in a.ef.split(",")]
    title = ""
    if not a.synthetic:
        try:
            items, queries, title = registry_vectors(a.artifacts, a.queries)
        except Exception as exc:  # no registry yet: fall back to synthetic vectors
            print(f"(no registry embeddings: {exc}; using synthetic vectors)")
            a.synthetic = 100_000
    if a.synthetic:
        items, queries = synthetic_vectors(a.synthetic, a.queries)
        title = f"synthetic {a.synthetic:,} x 64 clustered unit vectors"
    title += f", {len(items):,} items, {len(queries):,} queries"
    print(render(bench(items, queries, a.k, efs), title, a.k))


if __name__ == "__main__":
    main()
