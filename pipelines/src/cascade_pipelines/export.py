"""Registry writer: lays out one model version exactly as ``cascade_core.registry`` specifies."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import hnswlib
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cascade_core.registry import FileSet, ModelManifest, Registry

POPULAR_TOP = 1000


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def version_id(now: datetime, fingerprint: str) -> str:
    return f"v{now:%Y%m%d-%H%M%S}-{fingerprint[:8]}"


def _vec_column(mat: np.ndarray) -> pa.ListArray:
    mat = np.ascontiguousarray(mat, dtype=np.float32)
    offsets = np.arange(0, mat.size + 1, mat.shape[1], dtype=np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(mat.reshape(-1), type=pa.float32()))


def write_feature_table(path: Path, key: str, ids: list[str], vec_name: str, mat: np.ndarray,
                        ts: datetime) -> None:
    """Feast offline table: key (string), event_timestamp/created (UTC), vector (list<float32>)."""
    n = len(ids)
    stamp = pa.array(np.full(n, np.datetime64(ts.astimezone(timezone.utc).replace(tzinfo=None), "us")), pa.timestamp("us", tz="UTC"))
    table = pa.table({key: pa.array(ids, pa.string()), "event_timestamp": stamp, "created": stamp,
                      vec_name: _vec_column(mat)})
    pq.write_table(table, path)


def write_items(path: Path, items: pd.DataFrame, popularity: np.ndarray) -> None:
    table = pa.table(
        {
            "item_id": pa.array(items["item_id"].astype(str).tolist(), pa.string()),
            "title": pa.array(items["title"].astype(str).tolist(), pa.string()),
            "category": pa.array(items["category"].astype(str).tolist(), pa.string()),
            "genres": pa.array(items["genres"].tolist(), pa.list_(pa.string())),
            "year": pa.array(items["year"].astype("Int32").to_numpy(dtype=object, na_value=None), pa.int32()),
            "popularity": pa.array(popularity.astype(np.float64)),
        }
    )
    pq.write_table(table, path)


def write_version(
    registry: Registry,
    manifest: ModelManifest,
    *,
    items: pd.DataFrame,
    popularity: np.ndarray,
    item_emb: np.ndarray,
    user_ids: list[str],
    user_emb: np.ndarray,
    index: hnswlib.Index,
    consumed: tuple[np.ndarray, np.ndarray],
    ranker_onnx: Path,
    user_features: np.ndarray,
    item_features: np.ndarray,
    eval_md: str,
    set_latest: bool = True,
) -> Path:
    """Write every FileSet file, then the manifest (marks the version complete), then move LATEST."""
    files: FileSet = manifest.files
    d = registry.create_version_dir(manifest.version_id)
    write_items(d / files.items, items, popularity)
    np.save(d / files.item_embeddings, np.ascontiguousarray(item_emb, np.float32))
    (d / files.user_ids).write_text(json.dumps(user_ids))
    np.save(d / files.user_embeddings, np.ascontiguousarray(user_emb, np.float32))
    index.save_index(str(d / files.ann_index))
    order = np.argsort(-popularity, kind="stable")[:POPULAR_TOP]
    order = order[popularity[order] > 0]
    ids = items["item_id"].astype(str).to_numpy()
    (d / files.popular).write_text(
        json.dumps([{"item_id": ids[i], "score": float(np.log1p(popularity[i]))} for i in order])
    )
    indptr, indices = consumed
    np.savez(d / files.consumed, indptr=indptr.astype(np.int64), indices=indices.astype(np.int32))
    (d / files.ranker).write_bytes(Path(ranker_onnx).read_bytes())
    feast = d / files.feast_dir
    feast.mkdir()
    ts = manifest.created_at
    write_feature_table(feast / "user_features.parquet", "user_id", user_ids, "user_vec", user_features, ts)
    write_feature_table(feast / "item_features.parquet", "item_id", ids.tolist(), "item_vec", item_features, ts)
    (d / "eval.md").write_text(eval_md)
    registry.write_manifest(manifest)
    if set_latest:
        registry.set_latest(manifest.version_id)
    return d
