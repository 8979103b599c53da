"""Ranker feature layout: one definition shared by training and serving (no train/serve skew).

The ranker sees one row per (user, candidate item)::

    [ user vector (broadcast) | item vector | cross features ]

* user vector  = USER_SCALARS + one affinity per category (share of the user's interactions)
* item vector  = ITEM_SCALARS + one-hot/multi-hot category membership
* cross        = CROSS (computed at serving time from the two vectors and the retrieval score)

The user and item vectors are what the offline tables and the Feast online store hold
(packed ``Array(Float32)`` features ``user_features:user_vec`` and ``item_features:item_vec``);
cross features are computed by :meth:`FeatureLayout.assemble`, in training and in serving.

Real-time block (``FeatureLayout(categories, realtime=True)``), appended after the columns above so a
layout without it — and every registry version trained before it existed — is unchanged::

    [ ... | user real-time vector | item real-time vector | real-time cross features ]

* user real-time = RT_USER_SCALARS + one "recent interest" per category
* item real-time = RT_ITEM_SCALARS
* real-time cross = RT_CROSS

They are computed from the stream worker's views ``user_realtime`` / ``item_realtime`` (raw values as of
the entity's last event; contract in ``cascade_features.stream_definitions``) and the time they are
used at, by :func:`realtime_user_vector` / :func:`realtime_item_matrix` — the same functions in
training (offline values point-in-time joined strictly before the label time) and in serving (online
values, now = request time). No events gives the all-zero vector, in training and serving alike.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Any, Mapping, Sequence

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


# -- real-time features ------------------------------------------------------------------------------
# Raw inputs: names and constants of the stream views (cascade_features.stream_definitions restates
# them; tests/unit/core/test_realtime_layout.py keeps the two equal). cascade_core stays dependency-free.
RT_HALF_LIFE_MS = 60 * 60_000  # = stream_definitions.TRENDING_HALF_LIFE_MS
RT_ENGAGED_TYPES: tuple[str, ...] = ("click", "add_to_cart", "purchase")
RT_COUNT_WINDOWS_MS: dict[str, int] = {"5m": 5 * 60_000, "1h": 60 * 60_000}
RT_LAST_CATEGORIES = "last_categories"
RT_LAST_EVENT_MS = "last_event_ms"
RT_TRENDING = "trending_score"
# The user_realtime / item_realtime features a reader must fetch.
RT_USER_INPUTS: tuple[str, ...] = (
    *(f"{t}_count_{w}" for w in RT_COUNT_WINDOWS_MS for t in RT_ENGAGED_TYPES),
    RT_LAST_CATEGORIES,
    RT_LAST_EVENT_MS,
)
RT_ITEM_INPUTS: tuple[str, ...] = (RT_TRENDING, RT_LAST_EVENT_MS)

RT_USER_SCALARS: tuple[str, ...] = (
    "rt_user_recency",  # 0.5 ** ((now - last_event_ms) / 1 h); 0 without events
    "rt_user_log_engaged_5m",  # log1p(clicks + add-to-carts + purchases in the 5 min up to the last event); 0 once stale
    "rt_user_log_engaged_1h",  # same over 1 h
)
RT_USER_CAT_PREFIX = "rt_user_cat:"  # recency * share of the last-N engaged items' categories equal to c
RT_ITEM_SCALARS: tuple[str, ...] = (
    "rt_item_log_trending",  # log1p(trending_score decayed to now: * 0.5 ** ((now - last_event_ms) / 1 h))
)
RT_CROSS: tuple[str, ...] = (
    "rt_category_match",  # sum(user recent interest * item categories) / max(1, #item categories)
)


@dataclass(frozen=True)
class FeatureLayout:
    categories: tuple[str, ...]
    realtime: bool = False

    @classmethod
    def from_names(cls, feature_names: Sequence[str]) -> "FeatureLayout":
        """The layout a manifest's ``ranker.feature_names`` describe (with or without the real-time block)."""
        prefix = "user_cat_affinity:"
        cats = tuple(n[len(prefix):] for n in feature_names if n.startswith(prefix))
        layout = cls(cats, realtime=RT_USER_SCALARS[0] in feature_names)
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
    def rt_user_names(self) -> list[str]:
        if not self.realtime:
            return []
        return [*RT_USER_SCALARS, *(f"{RT_USER_CAT_PREFIX}{c}" for c in self.categories)]

    @property
    def rt_item_names(self) -> list[str]:
        return list(RT_ITEM_SCALARS) if self.realtime else []

    @property
    def rt_cross_names(self) -> list[str]:
        return list(RT_CROSS) if self.realtime else []

    @property
    def names(self) -> list[str]:
        return [*self.user_names, *self.item_names, *CROSS, *self.rt_user_names, *self.rt_item_names,
                *self.rt_cross_names]

    @property
    def rt_user_dim(self) -> int:
        return len(RT_USER_SCALARS) + len(self.categories) if self.realtime else 0

    @property
    def rt_item_dim(self) -> int:
        return len(RT_ITEM_SCALARS) if self.realtime else 0

    @property
    def rt_offset(self) -> int:
        """First column of the real-time block (= the width of a layout without it)."""
        return self.user_dim + self.item_dim + len(CROSS)

    @property
    def user_dim(self) -> int:
        return len(USER_SCALARS) + len(self.categories)

    @property
    def item_dim(self) -> int:
        return len(ITEM_SCALARS) + len(self.categories)

    @property
    def dim(self) -> int:
        return self.rt_offset + (self.rt_user_dim + self.rt_item_dim + len(RT_CROSS) if self.realtime else 0)

    def assemble(
        self,
        user_vec: np.ndarray,
        item_mat: np.ndarray,
        retrieval_scores: np.ndarray | None = None,
        out: np.ndarray | None = None,
        user_rt: np.ndarray | None = None,
        item_rt: np.ndarray | None = None,
    ) -> np.ndarray:
        """Build the float32 [n_items, dim] matrix for one user.

        ``user_vec``: [user_dim]; ``item_mat``: [n, item_dim]; ``retrieval_scores``: [n] or None (zeros).
        Real-time layouts: ``user_rt`` [rt_user_dim] and ``item_rt`` [n, rt_item_dim] (from
        :func:`realtime_user_vector` / :func:`realtime_item_matrix`); None = no events (zeros).
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
        if self.realtime:
            ur = np.zeros(self.rt_user_dim, np.float32) if user_rt is None else np.asarray(user_rt, np.float32)
            if ur.shape != (self.rt_user_dim,):
                raise ValueError(f"real-time user vector has shape {ur.shape}, expected ({self.rt_user_dim},)")
            o, ru, ri = self.rt_offset, self.rt_user_dim, self.rt_item_dim
            m[:, o : o + ru] = ur
            if item_rt is None:
                m[:, o + ru : o + ru + ri] = 0.0
            else:
                item_rt = np.asarray(item_rt, dtype=np.float32)
                if item_rt.shape != (n, ri):
                    raise ValueError(f"real-time item matrix has shape {item_rt.shape}, expected (n, {ri})")
                m[:, o + ru : o + ru + ri] = item_rt
            m[:, o + ru + ri] = (item_cats @ ur[len(RT_USER_SCALARS):]) / denom
        elif user_rt is not None or item_rt is not None:
            raise ValueError("real-time vectors given for a layout without real-time features")
        return m

    def assemble_batch(
        self,
        user_mat: np.ndarray,
        item_mat: np.ndarray,
        retrieval_scores: np.ndarray | None = None,
        user_rt: np.ndarray | None = None,
        item_rt: np.ndarray | None = None,
    ) -> np.ndarray:
        """Row-aligned variant for training: user_mat [n, user_dim], item_mat [n, item_dim]
        (real-time layouts: user_rt [n, rt_user_dim], item_rt [n, rt_item_dim], None = zeros)."""
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
        if self.realtime:
            o, ru, ri = self.rt_offset, self.rt_user_dim, self.rt_item_dim
            ur = np.zeros((n, ru), np.float32) if user_rt is None else np.asarray(user_rt, np.float32)
            m[:, o : o + ru] = ur
            m[:, o + ru : o + ru + ri] = 0.0 if item_rt is None else np.asarray(item_rt, np.float32)
            m[:, o + ru + ri] = (item_mat[:, ni:] * ur[:, len(RT_USER_SCALARS):]).sum(axis=1) / denom
        elif user_rt is not None or item_rt is not None:
            raise ValueError("real-time vectors given for a layout without real-time features")
        return m


def _decay(now_ms: int | float, last_ms: int | float) -> float:
    return 0.5 ** (max(float(now_ms) - float(last_ms), 0.0) / RT_HALF_LIFE_MS)


def realtime_user_vector(layout: FeatureLayout, values: Mapping[str, Any] | None, now_ms: int) -> np.ndarray:
    """float32 [rt_user_dim]: the user's real-time vector at ``now_ms`` from its ``user_realtime`` values.

    ``values`` holds (at least) ``RT_USER_INPUTS`` as the stream worker wrote them — counts as of the
    last event, ``last_categories`` most recent first, ``last_event_ms`` — or None when the user has no
    row (no events: zeros). Staleness is applied from ``last_event_ms`` (stream_definitions §5): a
    window count is 0 once ``now - last_event_ms`` reaches the window (else the stored count, which
    counts the window up to the last event), recency and interests decay with a 1 h half-life.
    """
    out = np.zeros(layout.rt_user_dim, dtype=np.float32)
    if values is None or not values.get(RT_LAST_EVENT_MS):
        return out
    last = int(values[RT_LAST_EVENT_MS])
    age = max(int(now_ms) - last, 0)
    recency = _decay(now_ms, last)
    out[0] = recency
    for j, (w, width) in enumerate(RT_COUNT_WINDOWS_MS.items(), start=1):
        if age < width:
            out[j] = math.log1p(sum(int(values.get(f"{t}_count_{w}") or 0) for t in RT_ENGAGED_TYPES))
    cats = list(values.get(RT_LAST_CATEGORIES) or [])
    if cats:
        index = {c: k for k, c in enumerate(layout.categories)}
        base = len(RT_USER_SCALARS)
        share = recency / len(cats)
        for c in cats:
            k = index.get(c)
            if k is not None:
                out[base + k] += share
    return out


def realtime_item_matrix(
    layout: FeatureLayout,
    trending: np.ndarray,
    last_event_ms: np.ndarray,
    found: np.ndarray,
    now_ms: int | np.ndarray,
) -> np.ndarray:
    """float32 [n, rt_item_dim] from the candidates' ``item_realtime`` values at ``now_ms`` (scalar or [n]).

    ``trending_score`` decays exactly (stream_definitions §5); rows not ``found`` (no events) are zeros.
    """
    trending = np.asarray(trending, dtype=np.float64)
    n = trending.shape[0]
    out = np.zeros((n, layout.rt_item_dim), dtype=np.float32)
    if n == 0 or not layout.realtime:
        return out
    age = np.maximum(np.asarray(now_ms, dtype=np.float64) - np.asarray(last_event_ms, dtype=np.float64), 0.0)
    decayed = np.where(np.asarray(found, bool), np.maximum(trending, 0.0) * np.exp2(-age / RT_HALF_LIFE_MS), 0.0)
    out[:, 0] = np.log1p(decayed)
    return out
