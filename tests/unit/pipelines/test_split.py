from __future__ import annotations

import numpy as np
import pandas as pd

from cascade_pipelines.data import Dataset, build_dataset
from cascade_pipelines.split import temporal_split, validation_split


def _no_time_leakage(train: pd.DataFrame, test: pd.DataFrame) -> None:
    last_train = train.groupby("user_id", observed=True)["timestamp"].max()
    first_test = test.groupby("user_id", observed=True)["timestamp"].min()
    both = last_train.index.intersection(first_test.index)
    assert len(both) > 0
    assert (last_train.loc[both] <= first_test.loc[both]).all()


def test_ml_small_uses_per_user_split_without_leakage(ml_small: Dataset) -> None:
    s = temporal_split(ml_small.interactions)
    # a global cut leaves only ~23 evaluable users on ml-latest-small, so auto picks per-user
    assert s.strategy == "per-user" and "per-user" in s.description
    assert len(s.train) + len(s.test) == len(ml_small.interactions)
    _no_time_leakage(s.train, s.test)
    n = ml_small.interactions.groupby("user_id", observed=True).size()
    n_test = s.test.groupby("user_id", observed=True).size()
    assert (n_test == np.floor(n * 0.2)).all()
    assert len(s.eval_users()) == 671

    v = validation_split(s.train, s)
    assert v.strategy == "per-user"
    _no_time_leakage(v.train, v.test)
    assert len(v.train) + len(v.test) == len(s.train)


def test_global_cut_when_enough_users_span_it() -> None:
    rng = np.random.default_rng(0)
    rows = [(u, int(rng.integers(0, 50)), int(t)) for u in range(100) for t in rng.integers(0, 10_000, 20)]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).assign(rating=4.0)
    meta = pd.DataFrame({"item_id": range(50), "title": "t", "year": 2000, "genres": [["A"]] * 50})
    ds = build_dataset("toy", inter, meta)
    s = temporal_split(ds.interactions)
    assert s.strategy == "global" and s.cut_ts is not None
    assert (s.train["timestamp"] < s.cut_ts).all() and (s.test["timestamp"] >= s.cut_ts).all()
    assert len(s.eval_users()) >= 50
    forced = temporal_split(ds.interactions, strategy="per-user")
    assert forced.strategy == "per-user"
    _no_time_leakage(forced.train, forced.test)
