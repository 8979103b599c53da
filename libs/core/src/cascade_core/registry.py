"""Versioned local model registry: the contract between training pipelines and services.

Layout (``$CASCADE_ARTIFACTS_DIR``, default ``./artifacts``)::

    registry/
      LATEST                      # text file: the version id services load by default
      <version_id>/
        manifest.json             # ModelManifest (below)
        items.parquet             # item catalog: item_id (str), title, category, genres, year, popularity
        item_embeddings.npy       # float32 [n_items, dim], row i <-> items.parquet row i
        user_ids.json             # list[str], row i <-> user_embeddings.npy row i
        user_embeddings.npy       # float32 [n_users, dim]
        ann.hnsw                  # ANN index over item_embeddings (labels = item row index)
        popular.json              # [{"item_id": str, "score": log1p(#interactions)}], most popular first
        consumed.npz              # CSR: indptr/indices (item rows) per user row — already-consumed items
        ranker.onnx               # ranker: input "features" float32 [N, n_features] -> "score" float32 [N]
        feast/                    # offline feature tables (parquet) materialized into the online store

Services name a version (``CASCADE_MODEL_VERSION``; empty or "latest" means the LATEST pointer)
and load only the files they need. Nothing here imports heavy dependencies.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from cascade_core.errors import NotFoundError

VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class FileSet(BaseModel):
    items: str = "items.parquet"
    item_embeddings: str = "item_embeddings.npy"
    user_ids: str = "user_ids.json"
    user_embeddings: str = "user_embeddings.npy"
    ann_index: str = "ann.hnsw"
    popular: str = "popular.json"
    consumed: str = "consumed.npz"
    ranker: str = "ranker.onnx"
    feast_dir: str = "feast"


class AnnSpec(BaseModel):
    library: str = "hnswlib"
    space: str = "ip"
    dim: int
    m: int = 16
    ef_construction: int = 200
    ef_search: int = 200


class RankerSpec(BaseModel):
    name: str = "ranker"
    input_name: str = "features"
    output_name: str = "score"
    feature_names: list[str]
    # Value used for a feature when its entity has no stored row (training-set means).
    feature_defaults: list[float]
    opset: int = 17


class ModelManifest(BaseModel):
    version_id: str
    created_at: datetime
    git_commit: str = "unknown"
    data_fingerprint: str
    dataset: str
    n_users: int
    n_items: int
    embedding_dim: int
    ann: AnnSpec
    ranker: RankerSpec
    metrics: dict[str, Any] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    files: FileSet = Field(default_factory=FileSet)


def artifacts_dir() -> Path:
    return Path(os.environ.get("CASCADE_ARTIFACTS_DIR", "artifacts")).resolve()


class Registry:
    """Read/write access to ``<root>/registry``. Writers are the training pipelines."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root is not None else artifacts_dir()
        self.registry_dir = self.root / "registry"

    # -- reading ---------------------------------------------------------------------
    def versions(self) -> list[str]:
        if not self.registry_dir.is_dir():
            return []
        return sorted(p.name for p in self.registry_dir.iterdir() if (p / "manifest.json").is_file())

    def latest(self) -> str:
        pointer = self.registry_dir / "LATEST"
        if not pointer.is_file():
            raise NotFoundError(
                f"no model registered under {self.registry_dir}: run `make train` "
                "(or set CASCADE_ARTIFACTS_DIR to a directory holding registry/LATEST)"
            )
        return pointer.read_text().strip()

    def resolve(self, version: str | None) -> str:
        if not version or version == "latest":
            return self.latest()
        if not VERSION_RE.match(version):
            raise NotFoundError(f"invalid model version {version!r}: use letters, digits, '.', '_' or '-'")
        if not (self.registry_dir / version / "manifest.json").is_file():
            known = ", ".join(self.versions()[-5:]) or "none"
            raise NotFoundError(f"model version {version!r} not found in {self.registry_dir} (known: {known})")
        return version

    def path(self, version: str | None = None) -> Path:
        return self.registry_dir / self.resolve(version)

    def manifest(self, version: str | None = None) -> ModelManifest:
        p = self.path(version) / "manifest.json"
        return ModelManifest.model_validate_json(p.read_text())

    def file(self, version: str | None, name: str) -> Path:
        """Path of one artifact by its FileSet field name (e.g. ``"ranker"``)."""
        m = self.manifest(version)
        return self.path(m.version_id) / getattr(m.files, name)

    # -- writing ---------------------------------------------------------------------
    def create_version_dir(self, version_id: str) -> Path:
        if not VERSION_RE.match(version_id):
            raise ValueError(f"invalid version id {version_id!r}")
        d = self.registry_dir / version_id
        d.mkdir(parents=True, exist_ok=False)
        return d

    def write_manifest(self, manifest: ModelManifest) -> Path:
        d = self.registry_dir / manifest.version_id
        p = d / "manifest.json"
        tmp = p.with_suffix(".tmp")
        tmp.write_text(manifest.model_dump_json(indent=2))
        tmp.replace(p)
        return p

    def set_latest(self, version_id: str) -> None:
        self.resolve(version_id)
        tmp = self.registry_dir / "LATEST.tmp"
        tmp.write_text(version_id + "\n")
        tmp.replace(self.registry_dir / "LATEST")


def load_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())
