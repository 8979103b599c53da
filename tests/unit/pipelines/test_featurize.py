from __future__ import annotations

import numpy as np
import pytest

from cascade_core.features import FeatureLayout
from cascade_pipelines.data import Dataset
from cascade_pipelines.featurize import consumed_csr, item_vectors, popularity, user_vectors


def test_vectors_match_hand_computation(ml_small: Dataset) -> None:
    layout = FeatureLayout(ml_small.categories())
    g = ml_small.genre_matrix(layout.categories)
    inter = ml_small.interactions
    as_of = int(inter["timestamp"].max())
    uv = user_vectors(inter, ml_small.n_users, g, layout, as_of)
    iv = item_vectors(inter, ml_small.items, g, layout)
    assert uv.shape == (671, layout.user_dim) and iv.shape == (9066, layout.item_dim)

    mine = inter[inter["user_id"] == "1"]
    u = ml_small.users.index[ml_small.users["user_id"] == "1"][0]
    assert uv[u, 0] == pytest.approx(np.log1p(20))
    assert uv[u, 1] == pytest.approx(mine["rating"].mean() - 3.5)
    assert uv[u, 2] == pytest.approx(np.log1p((as_of - mine["timestamp"].max()) / 86400), rel=1e-5)
    drama = layout.user_names.index("user_cat_affinity:Drama")
    n_drama = sum("Drama" in gs for gs in ml_small.items.set_index("item_id").loc[mine["item_id"].astype(str), "genres"])
    assert uv[u, drama] == pytest.approx(n_drama / 20)

    i = ml_small.items.index[ml_small.items["item_id"] == "31"][0]
    ratings = inter.loc[inter["item_id"] == "31", "rating"]
    assert iv[i, 0] == pytest.approx(np.log1p(len(ratings)))
    assert iv[i, 1] == pytest.approx(ratings.mean() - 3.5, rel=1e-5)
    assert iv[i, 2] == pytest.approx((1995 - 1990) / 20)
    assert iv[i, layout.item_names.index("item_cat:Drama")] == 1.0
    assert popularity(inter)[i] == len(ratings)


def test_history_only_features(ml_small: Dataset) -> None:
    """Features computed from an earlier history ignore later interactions (no leakage by construction)."""
    layout = FeatureLayout(ml_small.categories())
    g = ml_small.genre_matrix(layout.categories)
    inter = ml_small.interactions
    cut = int(inter["timestamp"].median())
    early = inter[inter["timestamp"] < cut]
    uv = user_vectors(early, ml_small.n_users, g, layout, cut)
    counts = np.bincount(early["user_id"].cat.codes, minlength=ml_small.n_users)
    np.testing.assert_allclose(uv[:, 0], np.log1p(counts), rtol=1e-6)
    assert (uv[counts == 0] == 0).all()


def test_consumed_csr(ml_small: Dataset) -> None:
    indptr, indices = consumed_csr(ml_small.interactions, ml_small.n_users)
    assert indptr[-1] == len(indices) == len(ml_small.interactions)  # (user, item) pairs are unique
    row = indices[indptr[0]:indptr[1]]
    assert (np.diff(row) > 0).all() and len(row) == 20
