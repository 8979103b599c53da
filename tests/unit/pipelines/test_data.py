from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cascade_pipelines.data import Dataset, load_dataset, recbole_ml100k_dir


def test_ml_small_shape_and_ids(ml_small: Dataset) -> None:
    assert (ml_small.n_users, ml_small.n_items, len(ml_small.interactions)) == (671, 9066, 100_004)
    inter = ml_small.interactions
    # MovieLens userId 1 is user_id "1" and rated 20 movies; movieId 31 is item_id "31"
    assert (inter["user_id"] == "1").sum() == 20
    assert "31" in set(inter.loc[inter["user_id"] == "1", "item_id"].astype(str))
    item = ml_small.items.set_index("item_id").loc["31"]
    assert item["title"] == "Dangerous Minds"
    assert item["category"] == "Drama" and item["genres"] == ["Drama"]
    assert item["year"] == 1995
    assert ml_small.users["user_id"].tolist()[:3] == ["1", "2", "3"]


def test_codes_index_the_frames(ml_small: Dataset) -> None:
    inter = ml_small.interactions.head(50)
    u = inter["user_id"].cat.codes.to_numpy()
    i = inter["item_id"].cat.codes.to_numpy()
    assert (ml_small.users["user_id"].to_numpy()[u] == inter["user_id"].astype(str).to_numpy()).all()
    assert (ml_small.items["item_id"].to_numpy()[i] == inter["item_id"].astype(str).to_numpy()).all()


def test_categories_exclude_placeholder(ml_small: Dataset) -> None:
    cats = ml_small.categories()
    assert "(no genres listed)" not in cats and "Drama" in cats and list(cats) == sorted(cats)
    g = ml_small.genre_matrix(cats)
    row = ml_small.items.index[ml_small.items["item_id"] == "1"][0]  # Toy Story
    assert {cats[j] for j in np.flatnonzero(g[row])} == set(ml_small.items.loc[row, "genres"])
    assert (ml_small.items["category"] == "unknown").sum() == (g.sum(1) == 0).sum()


def test_fingerprint_stable_and_sensitive(ml_small: Dataset) -> None:
    again = load_dataset("ml-latest-small")
    assert again.fingerprint() == ml_small.fingerprint()
    inter = ml_small.interactions.copy()
    inter.loc[0, "rating"] = inter.loc[0, "rating"] + 0.5
    changed = Dataset(ml_small.name, ml_small.users, ml_small.items, inter)
    assert changed.fingerprint() != ml_small.fingerprint()


def test_unknown_dataset_names_the_field() -> None:
    with pytest.raises(ValueError, match="field 'dataset'"):
        load_dataset("ml-1b")


def test_validate_rejects_non_categorical_ids(ml_small: Dataset) -> None:
    inter = ml_small.interactions.head(10).copy()
    inter["user_id"] = inter["user_id"].astype(str)
    with pytest.raises(ValueError, match="interactions.user_id"):
        Dataset("x", ml_small.users, ml_small.items, inter)


def test_ml100k_from_recbole_wheel() -> None:
    pytest.importorskip("recbole", reason="optional: pip install --no-deps -c constraints.txt recbole")
    assert (recbole_ml100k_dir() / "ml-100k.item").is_file()
    ds = load_dataset("ml-100k")
    assert (ds.n_users, ds.n_items, len(ds.interactions)) == (943, 1682, 100_000)
    assert (ds.interactions["user_id"] == "1").sum() == 272
    toy = ds.items.set_index("item_id").loc["1"]
    assert toy["title"] == "Toy Story" and toy["category"] == "Animation" and toy["year"] == 1995
    assert isinstance(ds.users.loc[0, "occupation"], str)
    assert pd.api.types.is_integer_dtype(ds.interactions["timestamp"])
