"""The registry version the router serves: manifest, feature layout and ranker defaults.

Loaded once at start-up (``load()`` is idempotent) and shared by the stages that need it, so the
feature fallback matrix and the ranker's feature names come from the same manifest.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from cascade_core.features import FeatureLayout
from cascade_core.registry import ModelManifest, Registry


class ServingModel:
    def __init__(self, artifacts_dir: Path | str, model_version: str) -> None:
        self.registry = Registry(artifacts_dir)
        self.requested_version = model_version
        self._manifest: ModelManifest | None = None
        self._layout: FeatureLayout | None = None
        self._defaults: np.ndarray | None = None

    @property
    def loaded(self) -> bool:
        return self._manifest is not None

    def load(self) -> None:
        """Resolve the version and read its manifest (raises NotFoundError naming what to do)."""
        if self._manifest is not None:
            return
        manifest = self.registry.manifest(self.requested_version)
        ranker = manifest.ranker
        layout = FeatureLayout.from_names(ranker.feature_names)
        if len(ranker.feature_defaults) != layout.dim:
            raise ValueError(
                f"manifest {manifest.version_id}: ranker.feature_defaults has {len(ranker.feature_defaults)} "
                f"values, expected {layout.dim} (one per feature name)"
            )
        self._defaults = np.asarray(ranker.feature_defaults, dtype=np.float32)
        self._layout = layout
        self._manifest = manifest

    def _need(self) -> ModelManifest:
        if self._manifest is None:
            raise RuntimeError("ServingModel.load() must run before use (in a stage's initialize())")
        return self._manifest

    @property
    def manifest(self) -> ModelManifest:
        return self._need()

    @property
    def version_id(self) -> str:
        return self._need().version_id

    @property
    def layout(self) -> FeatureLayout:
        self._need()
        assert self._layout is not None
        return self._layout

    @property
    def feature_names(self) -> list[str]:
        return list(self._need().ranker.feature_names)

    @property
    def user_defaults(self) -> np.ndarray:
        """Default user vector (the user part of ``feature_defaults``)."""
        self._need()
        assert self._defaults is not None
        return self._defaults[: self.layout.user_dim]

    @property
    def item_defaults(self) -> np.ndarray:
        """Default item vector (the item part of ``feature_defaults``)."""
        self._need()
        assert self._defaults is not None
        u = self.layout.user_dim
        return self._defaults[u : u + self.layout.item_dim]

    def file(self, name: str) -> Path:
        """Path of one artifact of the served version by FileSet field name (may not exist)."""
        m = self._need()
        return self.registry.path(m.version_id) / getattr(m.files, name)
