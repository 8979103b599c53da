"""A tiny, seeded model-registry version for router/gateway/CLI tests (never depends on training).

Holds the files the router and the CLI read: ``manifest.json`` (real FeatureLayout names and
defaults), ``items.parquet`` (titles), ``popular.json`` (optional, ``log1p(count)`` scores as the
training export writes them) and a linear ``ranker.onnx`` built with the ``onnx`` helper API (input
"features" [N, F] -> output "score" [N]). ``full=True`` adds what retrieval and features serve from:
embeddings, ``user_ids.json``, an hnswlib ``ann.hnsw``, ``consumed.npz`` and the ``feast/`` tables
(users ``u0..u9``, one feature row for every user and item).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
from cascade_core.features import FeatureLayout
from cascade_core.registry import AnnSpec, ModelManifest, RankerSpec, Registry
from onnx import TensorProto, helper, numpy_helper

CATEGORIES = ("action", "comedy", "drama")
VERSION = "v-fixture"
N_ITEMS = 60
N_USERS = 10
DIM = 8


def ranker_onnx(weights: np.ndarray) -> onnx.ModelProto:
    """score = features @ weights, as an opset-17 ONNX graph."""
    f = len(weights)
    w = numpy_helper.from_array(weights.reshape(f, 1).astype(np.float32), name="w")
    shape = numpy_helper.from_array(np.array([-1], dtype=np.int64), name="flat")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["features", "w"], ["s2"]),
            helper.make_node("Reshape", ["s2", "flat"], ["score"]),
        ],
        "fixture_ranker",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", f])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])],
        initializer=[w, shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _write_serving_files(
    d: Path, rng: np.random.Generator, layout: FeatureLayout, item_ids: list[str]
) -> None:
    """Embeddings, ANN index, consumed items and Feast tables for the retrieval and feature services."""
    import hnswlib
    from cascade_features import definitions as fd
    from cascade_features.synthetic import DEFAULT_TS, table

    user_ids = [f"u{i}" for i in range(N_USERS)]
    item_emb = rng.standard_normal((N_ITEMS, DIM)).astype(np.float32)
    user_emb = rng.standard_normal((N_USERS, DIM)).astype(np.float32)
    np.save(d / "item_embeddings.npy", item_emb)
    np.save(d / "user_embeddings.npy", user_emb)
    (d / "user_ids.json").write_text(json.dumps(user_ids))
    index = hnswlib.Index(space="ip", dim=DIM)
    index.init_index(max_elements=N_ITEMS, ef_construction=200, M=16, random_seed=1)
    index.set_num_threads(1)
    index.add_items(item_emb, np.arange(N_ITEMS))
    index.save_index(str(d / "ann.hnsw"))
    indptr = np.arange(0, 2 * N_USERS + 1, 2, dtype=np.int64)  # two consumed items per user
    indices = rng.integers(0, N_ITEMS, size=2 * N_USERS).astype(np.int32)
    np.savez(d / "consumed.npz", indptr=indptr, indices=indices)
    user_vecs = rng.random((N_USERS, layout.user_dim)).astype(np.float32)
    item_vecs = rng.random((N_ITEMS, layout.item_dim)).astype(np.float32)
    item_vecs[:, 3:] = 0.0
    item_vecs[np.arange(N_ITEMS), 3 + np.arange(N_ITEMS) % len(CATEGORIES)] = 1.0  # one-hot category
    feast = d / "feast"
    feast.mkdir()
    import pyarrow.parquet as pq

    pq.write_table(
        table(fd.USER_JOIN_KEY, fd.USER_FEATURE, user_ids, user_vecs, DEFAULT_TS), feast / fd.USER_TABLE_FILE
    )
    pq.write_table(
        table(fd.ITEM_JOIN_KEY, fd.ITEM_FEATURE, item_ids, item_vecs, DEFAULT_TS), feast / fd.ITEM_TABLE_FILE
    )


def build_registry(
    root: Path, *, version: str = VERSION, with_popular: bool = True, seed: int = 7, full: bool = False
) -> Registry:
    rng = np.random.default_rng(seed)
    layout = FeatureLayout(CATEGORIES)
    reg = Registry(root)
    d = reg.create_version_dir(version)
    item_ids = [f"m{i}" for i in range(N_ITEMS)]
    popularity = rng.integers(1, 1000, size=N_ITEMS)
    pd.DataFrame(
        {
            "item_id": item_ids,
            "title": [f"Fixture Movie {i}" for i in range(N_ITEMS)],
            "category": [CATEGORIES[i % len(CATEGORIES)] for i in range(N_ITEMS)],
            "genres": [CATEGORIES[i % len(CATEGORIES)] for i in range(N_ITEMS)],
            "year": rng.integers(1980, 2020, size=N_ITEMS),
            "popularity": popularity,
        }
    ).to_parquet(d / "items.parquet", index=False)
    if with_popular:
        order = np.argsort(-popularity, kind="stable")
        (d / "popular.json").write_text(
            json.dumps([{"item_id": item_ids[i], "score": float(np.log1p(popularity[i]))} for i in order])
        )
    if full:
        _write_serving_files(d, np.random.default_rng(seed + 1), layout, item_ids)
    weights = rng.standard_normal(layout.dim).astype(np.float32)
    onnx.save(ranker_onnx(weights), d / "ranker.onnx")
    defaults = rng.random(layout.dim).astype(np.float32).round(3)
    reg.write_manifest(
        ModelManifest(
            version_id=version,
            created_at=datetime.now(UTC),
            data_fingerprint=f"fixture-seed-{seed}",
            dataset="fixture",
            n_users=N_USERS,
            n_items=N_ITEMS,
            embedding_dim=DIM,
            ann=AnnSpec(dim=DIM),
            ranker=RankerSpec(feature_names=layout.names, feature_defaults=[float(x) for x in defaults]),
        )
    )
    reg.set_latest(version)
    return reg


def popular_ids(reg: Registry, version: str = VERSION) -> list[str]:
    return [r["item_id"] for r in json.loads((reg.path(version) / "popular.json").read_text())]
