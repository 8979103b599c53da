"""Tiny seeded registries for the modelops tests (the router fixture builder; no training, no torch)."""

from __future__ import annotations

import sys
from pathlib import Path

from cascade_core.registry import Registry

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "router"))
from router_fixture_registry import build_registry  # noqa: E402


def three_versions(root: Path) -> Registry:
    """v1 and v2 share the served feature layout; ``v-odd`` has one feature renamed."""
    build_registry(root, version="v1", seed=1)
    build_registry(root, version="v2", seed=2)
    reg = build_registry(root, version="v-odd", seed=3)
    manifest = reg.manifest("v-odd")
    names = list(manifest.ranker.feature_names)
    names[0] = "renamed_feature"
    reg.write_manifest(manifest.model_copy(update={"ranker": manifest.ranker.model_copy(
        update={"feature_names": names})}))
    reg.set_latest("v1")
    return reg
