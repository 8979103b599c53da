"""End-to-end: a tiny synthetic training run read back through cascade_core.registry.Registry."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cascade_core.features import FeatureLayout
from cascade_core.registry import Registry
from cascade_pipelines import ann
from cascade_pipelines.data import Dataset
from cascade_pipelines.train import main


def test_registry_round_trip(trained: tuple[Path, str], tiny: Dataset) -> None:
    root, vid = trained
    reg = Registry(root)
    assert reg.latest() == vid and reg.versions() == [vid]
    assert re.fullmatch(r"v\d{8}-\d{6}-[0-9a-f]{8}", vid) and vid.endswith(tiny.fingerprint()[:8])
    m = reg.manifest()
    assert m.data_fingerprint == tiny.fingerprint() and m.dataset == "synthetic"
    assert (m.n_users, m.n_items, m.embedding_dim) == (tiny.n_users, tiny.n_items, 64)
    assert m.created_at.tzinfo is not None and m.git_commit
    for name in type(m.files).model_fields:
        assert reg.file(None, name).exists(), name
    assert (reg.path() / "eval.md").read_text().startswith("# Offline evaluation")

    items = pd.read_parquet(reg.file(None, "items"))
    assert list(items.columns) == ["item_id", "title", "category", "genres", "year", "popularity"]
    assert items["item_id"].tolist() == tiny.items["item_id"].tolist()
    counts = np.bincount(tiny.item_codes(), minlength=tiny.n_items)
    np.testing.assert_array_equal(items["popularity"].to_numpy(), counts)

    item_emb = np.load(reg.file(None, "item_embeddings"))
    user_emb = np.load(reg.file(None, "user_embeddings"))
    user_ids = json.loads(reg.file(None, "user_ids").read_text())
    assert item_emb.shape == (tiny.n_items, 64) and item_emb.dtype == np.float32
    assert user_emb.shape == (len(user_ids), 64) and user_ids == tiny.users["user_id"].tolist()

    index = ann.load_index(reg.file(None, "ann_index"), m.ann.dim, m.ann.ef_search)
    labels, _ = index.knn_query(user_emb[:50], k=100)
    assert ann.recall_vs_exact(labels, ann.exact_topk(user_emb[:50], item_emb, 100)) >= 0.95

    popular = json.loads(reg.file(None, "popular").read_text())
    assert popular[0]["item_id"] == tiny.items["item_id"][int(np.argmax(counts))]
    assert [p["score"] for p in popular] == sorted((p["score"] for p in popular), reverse=True)

    csr = np.load(reg.file(None, "consumed"))
    indptr, indices = csr["indptr"], csr["indices"]
    assert len(indptr) == len(user_ids) + 1 and indptr[-1] == len(indices)
    u0 = set(tiny.interactions.loc[tiny.interactions["user_id"] == user_ids[0], "item_id"].astype(str))
    assert {items["item_id"][i] for i in indices[indptr[0]:indptr[1]]} == u0


def test_ranker_and_feast_tables_follow_the_layout(trained: tuple[Path, str], tiny: Dataset) -> None:
    root, _ = trained
    reg = Registry(root)
    m = reg.manifest()
    layout = FeatureLayout.from_names(m.ranker.feature_names)
    assert layout.categories == tiny.categories()
    assert len(m.ranker.feature_defaults) == layout.dim

    feast = reg.path() / m.files.feast_dir
    ut = pq.read_table(feast / "user_features.parquet")
    it = pq.read_table(feast / "item_features.parquet")
    for table, key, vec, dim in ((ut, "user_id", "user_vec", layout.user_dim),
                                 (it, "item_id", "item_vec", layout.item_dim)):
        assert table.column_names == [key, "event_timestamp", "created", vec]
        assert table.schema.field(key).type == pa.string()
        ts_type = table.schema.field("event_timestamp").type
        assert pa.types.is_timestamp(ts_type) and ts_type.tz == "UTC"
        assert pa.types.is_timestamp(table.schema.field("created").type)
        assert table.schema.field(vec).type == pa.list_(pa.float32())
        assert set(table.column(vec).to_pandas().map(len)) == {dim}

    # score one user's candidates with the served files only, as the ranking service would
    uvec = np.asarray(ut.column("user_vec")[0].as_py(), np.float32)
    imat = np.stack([np.asarray(v, np.float32) for v in it.column("item_vec").to_pylist()[:20]])
    x = layout.assemble(uvec, imat, np.linspace(-1, 1, 20))
    sess = ort.InferenceSession(str(reg.file(None, "ranker")), providers=["CPUExecutionProvider"])
    score = sess.run([m.ranker.output_name], {m.ranker.input_name: x})[0]
    assert score.shape == (20,) and np.isfinite(score).all() and np.ptp(score) > 0


def test_eval_metrics_recorded(trained: tuple[Path, str]) -> None:
    root, _ = trained
    m = Registry(root).manifest().metrics
    for system in ("popularity", "item_knn", "two_tower_ann", "pipeline"):
        assert 0.0 <= m[system]["ndcg@10"] <= 1.0
    assert m["eval_users"] > 0 and m["ann_recall@100_vs_exact"] >= 0.95
    # the synthetic data has latent structure: learned retrieval must beat popularity
    assert m["two_tower_ann"]["recall@100"] > m["popularity"]["recall@100"]


def test_if_missing_is_a_no_op_when_latest_exists(trained: tuple[Path, str]) -> None:
    root, vid = trained
    assert main(["--artifacts", str(root), "--if-missing"]) == 0
    assert Registry(root).versions() == [vid]
