"""cascade_core.features (train/serve-shared layout) and cascade_core.registry (artifact contract)."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

from cascade_core.errors import NotFoundError
from cascade_core.features import CROSS, ITEM_SCALARS, USER_SCALARS, FeatureLayout
from cascade_core.registry import AnnSpec, ModelManifest, Registry, RankerSpec

CATS = ("Action", "Comedy", "Drama")


def test_layout_names_and_round_trip():
    lay = FeatureLayout(CATS)
    assert lay.dim == len(lay.names) == len(USER_SCALARS) + len(ITEM_SCALARS) + 2 * len(CATS) + len(CROSS)
    assert FeatureLayout.from_names(lay.names) == lay
    with pytest.raises(ValueError, match="layout"):
        FeatureLayout.from_names(lay.names[:-1])


def test_assemble_matches_batch_variant_and_computes_category_match():
    lay = FeatureLayout(CATS)
    rng = np.random.default_rng(0)
    user = rng.random(lay.user_dim).astype(np.float32)
    items = rng.random((5, lay.item_dim)).astype(np.float32)
    items[:, len(ITEM_SCALARS):] = (items[:, len(ITEM_SCALARS):] > 0.5)
    scores = rng.random(5).astype(np.float32)
    m = lay.assemble(user, items, scores)
    mb = lay.assemble_batch(np.tile(user, (5, 1)), items, scores)
    np.testing.assert_allclose(m, mb, rtol=1e-6)
    # category_match by hand for row 0
    cats = items[0, len(ITEM_SCALARS):]
    expect = float(cats @ user[len(USER_SCALARS):]) / max(1.0, float(cats.sum()))
    assert m[0, lay.names.index("category_match")] == pytest.approx(expect, rel=1e-6)
    assert m[:, lay.names.index("retrieval_score")].tolist() == pytest.approx(scores.tolist())
    with pytest.raises(ValueError, match="user vector"):
        lay.assemble(user[:-1], items)


def _manifest(version: str) -> ModelManifest:
    lay = FeatureLayout(CATS)
    return ModelManifest(
        version_id=version, created_at=datetime.now(timezone.utc), data_fingerprint="abc", dataset="test",
        n_users=1, n_items=1, embedding_dim=4, ann=AnnSpec(dim=4),
        ranker=RankerSpec(feature_names=lay.names, feature_defaults=[0.0] * lay.dim),
    )


def test_registry_round_trip_and_clear_errors(tmp_path):
    reg = Registry(tmp_path)
    with pytest.raises(NotFoundError, match="make train"):
        reg.latest()
    for v in ("v1", "v2"):
        reg.create_version_dir(v)
        reg.write_manifest(_manifest(v))
    reg.set_latest("v1")
    assert reg.versions() == ["v1", "v2"]
    assert reg.resolve("latest") == "v1" and reg.resolve(None) == "v1"
    assert reg.manifest("v2").version_id == "v2"
    assert reg.file("v1", "ranker") == tmp_path / "registry" / "v1" / "ranker.onnx"
    with pytest.raises(NotFoundError, match="'v9' not found"):
        reg.resolve("v9")
    with pytest.raises(NotFoundError, match="invalid model version"):
        reg.resolve("../etc")
    with pytest.raises(FileExistsError):
        reg.create_version_dir("v1")
