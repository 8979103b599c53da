"""Ranker feature layout: one definition shared by training and serving (no train/serve skew).

The ranker sees one row per (user, candidate item)::

    [ user vector (broadcast) | item vector | cross features ]

* user vector  = USER_SCALARS + one affinity per category (share of the user's interactions)
* item vector  = ITEM_SCALARS + one-hot/multi-hot category membership
* cross        = CROSS (computed at serving time from the two vectors and the retrieval score)

The user and item vectors are what the offline tables and the Feast online store hold
(packed ``Array(Float32)`` features ``user_features:user_vec`` and ``item_features:item_vec``);
cross features are computed by :meth:`FeatureLayout.assemble`, in training and in serving.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

USER_SCALARS: tuple[str, ...] = (
    "user_log_interactions",  # log1p(#interactions in history)
    "user_mean_rating",  # mean explicit rating (0 when unknown), centred on 3.5
    "user_log_days_since_last",  # log1p(days between last interaction and the feature timestamp)
)
ITEM_SCALARS: tuple[str, ...] = (
    "item_log_popularity",  # log1p(#interactions in history)
    "item_mean_rating",  # mean rating, centred on 3.5 (0 when unknown)
    "item_year_norm",  # (year - 1990) / 20, 0 when unknown
)
CROSS: tuple[str, ...] = (
    "retrieval_score",  # two-tower inner product from the retrieval stage (0 for non-ANN sources)
    "category_match",  # sum(user affinity * item categories) / max(1, #item categories)
)


@dataclass(frozen=True)
class FeatureLayout:
    categories: tuple[str, ...]

    @classmethod
    def from_names(cls, feature_names: Sequence[str]) -> "FeatureLayout":
        prefix = "user_cat_affinity:"
        cats = tuple(n[len(prefix):] for n in feature_names if n.startswith(prefix))
        layout = cls(cats)
        if list(feature_names) != layout.names:
            raise ValueError("feature names do not match the Cascade layout; retrain or fix the manifest")
        return layout

    @property
    def user_names(self) -> list[str]:
        return [*USER_SCALARS, *(f"user_cat_affinity:{c}" for c in self.categories)]

    @property
    def item_names(self) -> list[str]:
        return [*ITEM_SCALARS, *(f"item_cat:{c}" for c in self.categories)]

    @property
    def names(self) -> list[str]:
        return [*self.user_names, *self.item_names, *CROSS]

    @property
    def user_dim(self) -> int:
        return len(USER_SCALARS) + len(self.categories)

    @property
    def item_dim(self) -> int:
        return len(ITEM_SCALARS) + len(self.categories)

    @property
    def dim(self) -> int:
        return self.user_dim + self.item_dim + len(CROSS)

    def assemble(
        self,
        user_vec: np.ndarray,
        item_mat: np.ndarray,
        retrieval_scores: np.ndarray | None = None,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Build the float32 [n_items, dim] matrix for one user.

        ``user_vec``: [user_dim]; ``item_mat``: [n, item_dim]; ``retrieval_scores``: [n] or None (zeros).
        """
        user_vec = np.asarray(user_vec, dtype=np.float32)
        item_mat = np.asarray(item_mat, dtype=np.float32)
        n = item_mat.shape[0]
        if user_vec.shape != (self.user_dim,):
            raise ValueError(f"user vector has shape {user_vec.shape}, expected ({self.user_dim},)")
        if item_mat.shape != (n, self.item_dim):
            raise ValueError(f"item matrix has shape {item_mat.shape}, expected (n, {self.item_dim})")
        m = out if out is not None else np.empty((n, self.dim), dtype=np.float32)
        u, i = self.user_dim, self.item_dim
        m[:, :u] = user_vec
        m[:, u : u + i] = item_mat
        m[:, u + i] = 0.0 if retrieval_scores is None else np.asarray(retrieval_scores, dtype=np.float32)
        nu, ni = len(USER_SCALARS), len(ITEM_SCALARS)
        item_cats = item_mat[:, ni:]
        denom = np.maximum(item_cats.sum(axis=1), 1.0)
        m[:, u + i + 1] = (item_cats @ user_vec[nu:]) / denom
        return m

    def assemble_batch(
        self, user_mat: np.ndarray, item_mat: np.ndarray, retrieval_scores: np.ndarray | None = None
    ) -> np.ndarray:
        """Row-aligned variant for training: user_mat [n, user_dim], item_mat [n, item_dim]."""
        user_mat = np.asarray(user_mat, dtype=np.float32)
        item_mat = np.asarray(item_mat, dtype=np.float32)
        n = user_mat.shape[0]
        u, i = self.user_dim, self.item_dim
        m = np.empty((n, self.dim), dtype=np.float32)
        m[:, :u] = user_mat
        m[:, u : u + i] = item_mat
        m[:, u + i] = 0.0 if retrieval_scores is None else np.asarray(retrieval_scores, dtype=np.float32)
        nu, ni = len(USER_SCALARS), len(ITEM_SCALARS)
        denom = np.maximum(item_mat[:, ni:].sum(axis=1), 1.0)
        m[:, u + i + 1] = (item_mat[:, ni:] * user_mat[:, nu:]).sum(axis=1) / denom
        return m
