"""Builds a tiny, valid model-registry version (seeded numpy, no torch, no training).

Used by the retrieval and ranking tests so they never depend on the training pipelines. Every file
follows :mod:`cascade_core.registry`; the ranker is a small MLP written with the ``onnx`` helper API
and :meth:`TinyRanker.predict` is its numpy reference (tests compare onnxruntime/Triton against it).

Layout of the fixture (all seeded): users ``u000..``, items ``i0000..``; each user's three best
items by inner product are marked consumed (so the consumed filter has something to remove);
popularity is Zipf-like. ``cold-user`` is never a known user.
"""

from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass
from datetime import datetime, timezone

import hnswlib
import numpy as np
import onnx
import pyarrow as pa
import pyarrow.parquet as pq
from onnx import TensorProto, helper, numpy_helper

from cascade_core.features import FeatureLayout
from cascade_core.registry import AnnSpec, ModelManifest, RankerSpec, Registry

CATEGORIES = ("action", "comedy", "drama", "horror")
CONSUMED_TOP = 3  # each user's top-N items by inner product are marked consumed


@dataclass(frozen=True)
class TinyRanker:
    """``score = w2 . relu(x @ W1 + b1) + b2``: float32 [N, F] -> [N]."""

    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: float

    @classmethod
    def random(cls, n_features: int, hidden: int = 8, seed: int = 0) -> "TinyRanker":
        rng = np.random.default_rng(seed)
        return cls(
            w1=rng.normal(0, 0.5, (n_features, hidden)).astype(np.float32),
            b1=rng.normal(0, 0.1, hidden).astype(np.float32),
            w2=rng.normal(0, 0.5, hidden).astype(np.float32),
            b2=float(rng.normal(0, 0.1)),
        )

    @property
    def n_features(self) -> int:
        return int(self.w1.shape[0])

    def predict(self, x: np.ndarray) -> np.ndarray:
        h = np.maximum(np.asarray(x, np.float32) @ self.w1 + self.b1, 0.0)
        return (h @ self.w2 + np.float32(self.b2)).astype(np.float32)

    def to_onnx(self, path: pathlib.Path, input_name: str = "features", output_name: str = "score",
                opset: int = 17) -> pathlib.Path:
        inits = [
            numpy_helper.from_array(self.w1, "W1"),
            numpy_helper.from_array(self.b1, "B1"),
            numpy_helper.from_array(self.w2.reshape(-1, 1), "W2"),
            numpy_helper.from_array(np.array([self.b2], np.float32), "B2"),
            numpy_helper.from_array(np.array([-1], np.int64), "FLAT"),
        ]
        nodes = [
            helper.make_node("MatMul", [input_name, "W1"], ["h0"]),
            helper.make_node("Add", ["h0", "B1"], ["h1"]),
            helper.make_node("Relu", ["h1"], ["h2"]),
            helper.make_node("MatMul", ["h2", "W2"], ["o0"]),
            helper.make_node("Add", ["o0", "B2"], ["o1"]),
            helper.make_node("Reshape", ["o1", "FLAT"], [output_name]),
        ]
        graph = helper.make_graph(
            nodes, "tiny_ranker",
            [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", self.n_features])],
            [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["N"])],
            initializer=inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(path))
        return path


@dataclass(frozen=True)
class FixtureVersion:
    """What the builder wrote, for tests to compute expectations from."""

    root: pathlib.Path
    manifest: ModelManifest
    item_ids: list[str]
    user_ids: list[str]
    item_embeddings: np.ndarray
    user_embeddings: np.ndarray
    popularity: np.ndarray  # raw interaction counts per item row
    indptr: np.ndarray
    indices: np.ndarray
    ranker: TinyRanker

    @property
    def version(self) -> str:
        return self.manifest.version_id

    def consumed_rows(self, user_row: int) -> np.ndarray:
        return self.indices[self.indptr[user_row]:self.indptr[user_row + 1]]

    def popular_order(self) -> np.ndarray:
        """Item rows, most popular first (ties by row, as popular.json is written)."""
        return np.lexsort((np.arange(len(self.popularity)), -self.popularity))


def build_registry(
    root: pathlib.Path | str,
    version_id: str = "v1",
    *,
    n_users: int = 40,
    n_items: int = 300,
    dim: int = 16,
    seed: int = 0,
    set_latest: bool = True,
    ranker_seed: int | None = None,
) -> FixtureVersion:
    """Write ``<root>/registry/<version_id>/`` (and LATEST when ``set_latest``); return its contents."""
    rng = np.random.default_rng(seed)
    reg = Registry(root)
    d = reg.create_version_dir(version_id)

    item_ids = [f"i{i:04d}" for i in range(n_items)]
    user_ids = [f"u{u:03d}" for u in range(n_users)]
    item_emb = rng.normal(0, 1, (n_items, dim)).astype(np.float32)
    item_emb /= np.linalg.norm(item_emb, axis=1, keepdims=True)
    user_emb = rng.normal(0, 1, (n_users, dim)).astype(np.float32)
    popularity = np.floor(1000.0 / (1.0 + rng.permutation(n_items))).astype(np.float64)

    cats = [CATEGORIES[i % len(CATEGORIES)] for i in range(n_items)]
    pq.write_table(pa.table({
        "item_id": item_ids,
        "title": [f"Item {i}" for i in range(n_items)],
        "category": cats,
        "genres": [[c] for c in cats],
        "year": [1980 + i % 40 for i in range(n_items)],
        "popularity": popularity,
    }), d / "items.parquet")
    np.save(d / "item_embeddings.npy", item_emb)
    (d / "user_ids.json").write_text(json.dumps(user_ids))
    np.save(d / "user_embeddings.npy", user_emb)

    ann = AnnSpec(dim=dim, m=16, ef_construction=200, ef_search=200)
    index = hnswlib.Index(space=ann.space, dim=dim)
    index.init_index(max_elements=n_items, ef_construction=ann.ef_construction, M=ann.m, random_seed=seed)
    index.set_num_threads(1)
    index.add_items(item_emb, np.arange(n_items))
    index.save_index(str(d / "ann.hnsw"))

    order = np.lexsort((np.arange(n_items), -popularity))
    (d / "popular.json").write_text(json.dumps(
        [{"item_id": item_ids[r], "score": float(np.log1p(popularity[r]))} for r in order]
    ))

    # consumed: each user's top-CONSUMED_TOP items by inner product plus a few random ones
    ip = user_emb @ item_emb.T
    rows = []
    for u in range(n_users):
        top = np.argsort(-ip[u], kind="stable")[:CONSUMED_TOP]
        extra = rng.choice(n_items, size=int(rng.integers(0, 6)), replace=False)
        rows.append(np.unique(np.concatenate([top, extra])).astype(np.int32))
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum([len(r) for r in rows], out=indptr[1:])
    indices = np.concatenate(rows).astype(np.int32)
    np.savez(d / "consumed.npz", indptr=indptr, indices=indices)

    layout = FeatureLayout(CATEGORIES)
    ranker = TinyRanker.random(layout.dim, seed=seed if ranker_seed is None else ranker_seed)
    ranker.to_onnx(d / "ranker.onnx")

    manifest = ModelManifest(
        version_id=version_id,
        created_at=datetime.now(timezone.utc),
        data_fingerprint=f"fixture-{seed}",
        dataset="fixture",
        n_users=n_users,
        n_items=n_items,
        embedding_dim=dim,
        ann=ann,
        ranker=RankerSpec(feature_names=layout.names, feature_defaults=[0.0] * layout.dim),
    )
    reg.write_manifest(manifest)
    if set_latest:
        reg.set_latest(version_id)
    return FixtureVersion(
        root=pathlib.Path(root), manifest=manifest, item_ids=item_ids, user_ids=user_ids,
        item_embeddings=item_emb, user_embeddings=user_emb, popularity=popularity,
        indptr=indptr, indices=indices, ranker=ranker,
    )
