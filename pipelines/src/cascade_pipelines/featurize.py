"""User and item feature vectors in the :class:`cascade_core.features.FeatureLayout` order.

Computed from a *history* frame only (interactions strictly available at feature time), so the same
code builds leakage-free training features (history = the fit part), the evaluation features
(history = the train split) and the served Feast tables (history = everything).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cascade_core.features import ITEM_SCALARS, USER_SCALARS, FeatureLayout

RATING_CENTER = 3.5


def _mean_rating(codes: np.ndarray, rating: np.ndarray, n: int) -> np.ndarray:
    known = ~np.isnan(rating)
    s = np.bincount(codes[known], weights=rating[known], minlength=n)
    c = np.bincount(codes[known], minlength=n)
    out = np.zeros(n, dtype=np.float64)
    np.divide(s, c, out=out, where=c > 0)
    return np.where(c > 0, out - RATING_CENTER, 0.0)


def user_vectors(
    history: pd.DataFrame, n_users: int, genre_mat: np.ndarray, layout: FeatureLayout, as_of: int
) -> np.ndarray:
    """float32 [n_users, layout.user_dim]; users without history get all zeros."""
    u = history["user_id"].cat.codes.to_numpy(np.int64)
    i = history["item_id"].cat.codes.to_numpy(np.int64)
    ts = history["timestamp"].to_numpy(np.int64)
    rating = history["rating"].to_numpy(np.float64)
    out = np.zeros((n_users, layout.user_dim), dtype=np.float32)
    count = np.bincount(u, minlength=n_users).astype(np.float64)
    last = np.full(n_users, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(last, u, ts)
    days = np.where(count > 0, np.maximum(as_of - last, 0) / 86400.0, 0.0)
    out[:, 0] = np.log1p(count)
    out[:, 1] = _mean_rating(u, rating, n_users)
    out[:, 2] = np.log1p(days)
    nu = len(USER_SCALARS)
    g = genre_mat[i]
    denom = np.maximum(count, 1.0)
    for c in range(genre_mat.shape[1]):
        out[:, nu + c] = np.bincount(u, weights=g[:, c], minlength=n_users) / denom
    return out


def item_vectors(
    history: pd.DataFrame, items: pd.DataFrame, genre_mat: np.ndarray, layout: FeatureLayout
) -> np.ndarray:
    """float32 [n_items, layout.item_dim]; popularity/rating from history, year and categories static."""
    n_items = len(items)
    i = history["item_id"].cat.codes.to_numpy(np.int64)
    rating = history["rating"].to_numpy(np.float64)
    out = np.zeros((n_items, layout.item_dim), dtype=np.float32)
    out[:, 0] = np.log1p(np.bincount(i, minlength=n_items))
    out[:, 1] = _mean_rating(i, rating, n_items)
    year = items["year"].astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)
    out[:, 2] = np.where(np.isnan(year), 0.0, (year - 1990.0) / 20.0)
    out[:, len(ITEM_SCALARS):] = genre_mat
    return out


def consumed_csr(history: pd.DataFrame, n_users: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR (indptr int64 [n_users+1], indices int32 sorted per row) of distinct items per user."""
    u = history["user_id"].cat.codes.to_numpy(np.int64)
    i = history["item_id"].cat.codes.to_numpy(np.int64)
    n_items = len(history["item_id"].cat.categories)
    key = np.unique(u * n_items + i)
    uu, ii = key // n_items, key % n_items
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(uu, minlength=n_users), out=indptr[1:])
    return indptr, ii.astype(np.int32)


def popularity(history: pd.DataFrame) -> np.ndarray:
    """Interaction count per item row (float64)."""
    n_items = len(history["item_id"].cat.categories)
    return np.bincount(history["item_id"].cat.codes.to_numpy(np.int64), minlength=n_items).astype(np.float64)
