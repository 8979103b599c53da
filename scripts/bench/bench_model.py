"""The bench model: a registry version over a 1M-user x 1M-item synthetic catalog, built once and cached.

Training the real two-tower on 1M x 1M interactions takes hours on a 2-core machine, so the bench
model is derived, and says so in its manifest (``dataset = "synthetic-bench"``, ``params.bench_model``):

* **data**: :func:`cascade_pipelines.synthetic.generate` (seeded; :data:`BENCH_DATA`), ~20M interactions;
* **item embeddings** = the generator's own latent item factors (16 floats, re-drawn from the same seed,
  see :func:`item_factors`), L2-normalised and mapped into 64 dimensions by a fixed random isometry
  (orthonormal columns: inner products are unchanged). The model is the geometry the interactions were
  sampled from, served at a production-like width (64 floats per vector, what ANN distance computations
  cost); normalised, it is a cosine model like most production two-towers. (Measured while choosing:
  unnormalised factors, or 32 latent dimensions at 1M items, keep hnswlib below recall@100 0.95 even at
  ef 2048 with M=16 — 0.904 — because the generator's noise is isotropic in every latent dimension);
* **user embeddings** = mean of the item factors of everything the user interacted with ("item-average"
  user tower, computed with one ``bincount`` per dimension);
* **ANN**: hnswlib ``ip`` (:data:`ANN_M` = 32, :data:`ANN_EF_CONSTRUCTION` = 200: on a 250k-item slice of
  this catalog that graph reaches recall@100 0.968 at ef 200 for 289 CPU-µs per query, where M=16 /
  ef_construction=100 needs ef 640 and 758 µs), ``ef_search`` = the smallest ladder value whose
  recall@100 vs exact numpy search reaches 0.96 on 300 sampled users (a margin over the 0.95 target,
  which every bench run re-measures on other users; ladder up to 2048; written to the manifest);
* **ranker**: the pipeline's own :class:`~cascade_pipelines.ranker.RankerMLP` (hidden 64-32), trained
  listwise for 3 epochs on 2,000 users (5 interacted + 45 random items each, full-history features: the
  bench measures serving cost, not model quality), exported to ONNX by the pipeline's exporter;
* **features, popularity, consumed items**: the pipeline's own ``featurize`` functions over all
  interactions, written by :func:`cascade_pipelines.export.write_version` like any trained version.

The version id is ``bench-<hash of BENCH_DATA + MODEL_REV>``: an existing version is reused as is.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from cascade_core.registry import AnnSpec, ModelManifest, RankerSpec, Registry

# Bump when the derivation below changes (invalidates cached versions).
MODEL_REV = 5
ANN_M = 32
ANN_EF_CONSTRUCTION = 200
TUNE_RECALL = 0.96
EF_LADDER = (100, 128, 160, 200, 256, 320, 400, 512, 640, 800, 1024, 1280, 1600, 2048)


@dataclass(frozen=True)
class BenchData:
    n_users: int = 1_000_000
    n_items: int = 1_000_000
    n_categories: int = 20
    latent_dim: int = 16
    embedding_dim: int = 64
    mean_interactions: float = 20.0
    max_interactions: int = 100
    seed: int = 7


BENCH_DATA = BenchData()


def version_for(data: BenchData) -> str:
    blob = json.dumps({**asdict(data), "rev": MODEL_REV}, sort_keys=True).encode()
    return f"bench-{hashlib.sha256(blob).hexdigest()[:10]}"


def log(msg: str) -> None:
    print(f"[bench-model {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def synthetic_config(data: BenchData):  # noqa: ANN201 - pydantic model from the pipelines package
    from cascade_pipelines.synthetic import SyntheticConfig

    return SyntheticConfig(
        n_users=data.n_users, n_items=data.n_items, n_categories=data.n_categories,
        latent_dim=data.latent_dim, mean_interactions=data.mean_interactions,
        max_interactions=data.max_interactions, seed=data.seed,
    )


def item_factors(data: BenchData) -> np.ndarray:
    """The generator's latent item factors, L2-normalised, in ``embedding_dim`` floats: ``generate``
    draws them first from ``default_rng(seed)``, so a fresh generator with the same seed reproduces them."""
    from cascade_pipelines.synthetic import _item_side  # noqa: PLC2701 - see report: ask for a public API

    cfg = synthetic_config(data)
    f = np.asarray(_item_side(cfg, np.random.default_rng(cfg.seed))[4], dtype=np.float32)
    f /= np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    return np.ascontiguousarray(f @ isometry(data).T)


def isometry(data: BenchData) -> np.ndarray:
    """float32 [embedding_dim, latent_dim] with orthonormal columns (seeded): maps latent factors into
    the embedding width without changing any inner product."""
    rng = np.random.default_rng(data.seed + 1)
    q, _ = np.linalg.qr(rng.standard_normal((data.embedding_dim, data.latent_dim)))
    return q.astype(np.float32)


def user_means(users: np.ndarray, items: np.ndarray, item_emb: np.ndarray, n_users: int) -> np.ndarray:
    """Mean item embedding per user over its interactions (zeros for users without any)."""
    out = np.zeros((n_users, item_emb.shape[1]), dtype=np.float32)
    count = np.bincount(users, minlength=n_users).astype(np.float64)
    denom = np.maximum(count, 1.0)
    for d in range(item_emb.shape[1]):
        out[:, d] = np.bincount(users, weights=item_emb[items, d], minlength=n_users) / denom
    return out


def check_embeddings(users: np.ndarray, items: np.ndarray, user_emb: np.ndarray, item_emb: np.ndarray,
                     seed: int = 0) -> tuple[float, float]:
    """Mean <user, item> over sampled interactions vs random pairs; the first must be clearly larger."""
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(users), size=20_000)
    pos = float(np.mean(np.sum(user_emb[users[pick]] * item_emb[items[pick]], axis=1)))
    rnd = float(np.mean(np.sum(user_emb[users[pick]] * item_emb[rng.integers(0, len(item_emb), 20_000)], axis=1)))
    if not pos > rnd + 0.05:
        raise RuntimeError(f"bench embeddings carry no signal (interacted {pos:.3f} vs random {rnd:.3f}): "
                           "cascade_pipelines.synthetic changed how it draws item factors?")
    return pos, rnd


def train_small_ranker(layout, user_vecs, item_vecs, user_emb, item_emb, indptr, indices, out: Path,
                       seed: int = 0) -> tuple[np.ndarray, dict]:  # noqa: ANN001
    """3 listwise epochs over 2,000 users: 5 interacted items (label 1) + 45 random items each."""
    import torch

    from cascade_pipelines.ranker import ListwiseData, RankerConfig, export_onnx, train_ranker

    torch.set_num_threads(2)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    feats, labels, n_rel = [], [], []
    for u in rng.choice(len(user_vecs), size=2000, replace=False):
        seen = indices[indptr[u]:indptr[u + 1]]
        pos = rng.choice(seen, size=min(5, len(seen)), replace=False)
        neg = rng.integers(0, len(item_vecs), size=45)
        rows = np.concatenate([pos, neg]).astype(np.int64)
        feats.append(layout.assemble(user_vecs[u], item_vecs[rows], item_emb[rows] @ user_emb[u]))
        labels.append(np.r_[np.ones(len(pos)), np.zeros(45)].astype(np.float32))
        n_rel.append(len(pos))
    data = ListwiseData(feats, labels, n_rel)
    cfg = RankerConfig(hidden=(64, 32), epochs=3, patience=3, seed=seed)
    model, info = train_ranker(data, cfg, log=log)
    export_onnx(model, layout.dim, out)
    return data.stacked().mean(axis=0), {k: v for k, v in info.items() if k != "epochs"}


def build(root: Path, data: BenchData = BENCH_DATA) -> str:
    """Write ``<root>/registry/<bench version>`` (reused when present) and point LATEST at it."""
    from cascade_core.features import FeatureLayout
    from cascade_pipelines import ann as ann_mod
    from cascade_pipelines.export import git_commit, write_version
    from cascade_pipelines.featurize import consumed_csr, item_vectors, popularity, user_vectors
    from cascade_pipelines.synthetic import generate

    registry = Registry(root)
    vid = version_for(data)
    if vid in registry.versions():
        registry.set_latest(vid)
        log(f"reusing {registry.registry_dir / vid}")
        return vid
    t_start = time.perf_counter()
    ds = generate(synthetic_config(data), progress=True)
    log(f"generated {ds.n_users:,} users x {ds.n_items:,} items, {len(ds.interactions):,} interactions "
        f"({time.perf_counter() - t_start:.0f}s)")
    u = ds.user_codes()
    i = ds.item_codes()
    item_emb = item_factors(data)
    user_emb = user_means(u, i, item_emb, ds.n_users)
    pos, rnd = check_embeddings(u, i, user_emb, item_emb)
    log(f"embeddings: mean <u,i> interacted {pos:.3f} vs random {rnd:.3f}")

    layout = FeatureLayout(ds.categories())
    genre_mat = ds.genre_matrix(layout.categories)
    as_of = int(ds.interactions["timestamp"].max())
    user_vecs = user_vectors(ds.interactions, ds.n_users, genre_mat, layout, as_of)
    item_vecs = item_vectors(ds.interactions, ds.items, genre_mat, layout)
    indptr, indices = consumed_csr(ds.interactions, ds.n_users)
    pop = popularity(ds.interactions)
    log(f"features {layout.dim} columns ({time.perf_counter() - t_start:.0f}s)")

    t0 = time.perf_counter()
    index = ann_mod.build_index(item_emb, m=ANN_M, ef_construction=ANN_EF_CONSTRUCTION, threads=2)
    rng = np.random.default_rng(data.seed)
    sample = rng.choice(ds.n_users, size=300, replace=False)
    exact = ann_mod.exact_topk(user_emb[sample], item_emb, 100, batch=16)
    ef, recall = 0, 0.0
    for ef in EF_LADDER:
        index.set_ef(ef)
        recall = ann_mod.recall_vs_exact(index.knn_query(user_emb[sample], k=100)[0], exact)
        if recall >= TUNE_RECALL:
            break
    log(f"hnswlib M={ANN_M} efC={ANN_EF_CONSTRUCTION} -> ef_search {ef}, recall@100 {recall:.4f} ({time.perf_counter() - t0:.0f}s)")

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "ranker.onnx"
        defaults, rk_info = train_small_ranker(layout, user_vecs, item_vecs, user_emb, item_emb, indptr,
                                               indices, onnx_path, seed=data.seed)
        now = datetime.now(timezone.utc).replace(microsecond=0)
        manifest = ModelManifest(
            version_id=vid, created_at=now, git_commit=git_commit(), data_fingerprint=vid,
            dataset="synthetic-bench", n_users=ds.n_users, n_items=ds.n_items, embedding_dim=data.embedding_dim,
            ann=AnnSpec(dim=data.embedding_dim, m=ANN_M, ef_construction=ANN_EF_CONSTRUCTION, ef_search=ef),
            ranker=RankerSpec(feature_names=layout.names, feature_defaults=[float(x) for x in defaults]),
            metrics={"ann_recall@100_vs_exact": recall, "ranker": rk_info},
            params={"bench_data": asdict(data), "bench_model": __doc__.split("\n\n")[1].strip(),
                    "model_rev": MODEL_REV},
        )
        write_version(
            registry, manifest, items=ds.items, popularity=pop, item_emb=item_emb,
            user_ids=ds.users["user_id"].astype(str).tolist(), user_emb=user_emb, index=index,
            consumed=(indptr, indices), ranker_onnx=onnx_path, user_features=user_vecs,
            item_features=item_vecs, eval_md="bench model: not evaluated (see manifest params.bench_model)\n",
        )
    log(f"wrote {registry.registry_dir / vid} ({time.perf_counter() - t_start:.0f}s)")
    return vid


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=Path("artifacts/bench"))
    ap.add_argument("--users", type=int, default=BENCH_DATA.n_users)
    ap.add_argument("--items", type=int, default=BENCH_DATA.n_items)
    a = ap.parse_args()
    print(build(a.root, BenchData(n_users=a.users, n_items=a.items)))
