"""Real-time features for training: the dataset replayed as user events, point-in-time joined.

The stream worker serves ``user_realtime`` / ``item_realtime`` computed from live events. For training
the same values are needed as they were at each training row's time, with no leakage:

1. :func:`interaction_events` turns interactions into the events ``python -m cascade_stream.simulator
   replay`` sends for them (a view per rating, a click from 3.5, add-to-cart from 4.5, a purchase at
   5; timestamps in ms, deterministic ``event_id`` s);
2. :func:`offline_tables` computes the views' offline tables with
   :func:`cascade_stream.features.compute_features` — the code the worker runs — one row per entity
   and event time (exactly what ``python -m cascade_stream.offline`` writes to the offline store);
3. :class:`RealtimeHistory` point-in-time joins them: for an entity and a time ``t`` it takes the
   latest row with ``as_of <= t - 1 ms`` — Feast ``get_historical_features`` semantics (latest row
   at or before the entity timestamp) at ``t - 1 ms``, i.e. strictly before ``t``;
   ``tests/unit/pipelines/test_realtime_training.py`` checks it against Feast itself;
4. the raw values become layout vectors with :func:`cascade_core.features.realtime_user_vector` /
   :func:`~cascade_core.features.realtime_item_matrix` at ``now = t`` — the functions the feature
   service applies to online values at request time.

A training row's time ``t`` is its user's first label interaction (the first validation interaction
for the ranker's training rows, the first test interaction for evaluation rows): everything the user
did strictly before it is visible — all of it in the history part, by construction of the temporal
split — and nothing at or after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd

from cascade_core.features import (
    RT_ITEM_INPUTS,
    RT_LAST_EVENT_MS,
    RT_TRENDING,
    RT_USER_INPUTS,
    FeatureLayout,
    realtime_item_matrix,
    realtime_user_vector,
)

# Interaction -> events, as cascade_stream.simulator.replay (a unit test keeps the two equal).
CLICK_FROM, ADD_TO_CART_FROM, PURCHASE_FROM = 3.5, 4.5, 5.0


def interaction_events(interactions: pd.DataFrame, timestamp_unit: str = "s") -> pd.DataFrame:
    """Events (``cascade_stream.features.EVENT_COLUMNS``) for ``interactions`` (user_id, item_id,
    timestamp in ``timestamp_unit``, optional rating), in time order."""
    df = interactions.sort_values("timestamp", kind="stable")
    scale = {"s": 1000, "ms": 1}[timestamp_unit]
    user = df["user_id"].astype(str).to_numpy()
    item = df["item_id"].astype(str).to_numpy()
    ts = df["timestamp"].to_numpy(np.int64) * scale
    rating = (df["rating"].to_numpy(np.float64) if "rating" in df.columns
              else np.full(len(df), np.nan))
    implicit = np.isnan(rating)
    with np.errstate(invalid="ignore"):
        masks = {
            "view": np.ones(len(df), dtype=bool),
            "click": implicit | (rating >= CLICK_FROM),
            "add_to_cart": ~implicit & (rating >= ADD_TO_CART_FROM),
            "purchase": ~implicit & (rating >= PURCHASE_FROM),
        }
    order = {"view": 0, "click": 1, "add_to_cart": 2, "purchase": 3}
    parts = []
    pos = np.arange(len(df), dtype=np.int64)
    for t, m in masks.items():
        parts.append(pd.DataFrame({
            "_pos": pos[m] * 4 + order[t], "event_type": t, "user_id": user[m], "item_id": item[m],
            "timestamp": ts[m],
        }))
    ev = pd.concat(parts, ignore_index=True).sort_values("_pos", kind="stable").reset_index(drop=True)
    ev.insert(0, "event_id", "ml-" + ev["user_id"] + "-" + ev["item_id"] + "-" + ev["event_type"])
    return ev.drop(columns=["_pos"])


def offline_tables(events: pd.DataFrame, catalog: Mapping[str, str]) -> Any:
    """``compute_features(events, catalog)``: the views' offline tables (rows as of every event time)."""
    from cascade_stream.features import compute_features

    return compute_features(events, catalog, every_event=True)


class _AsOf:
    """Per-entity time-sorted offline rows with an as-of lookup."""

    def __init__(self, table: pd.DataFrame, key: str, columns: tuple[str, ...]) -> None:
        t = table.sort_values([key, "as_of_ms"], kind="stable").reset_index(drop=True)
        self.columns = columns
        self.data = {c: t[c].to_numpy() for c in columns}
        self.as_of = t["as_of_ms"].to_numpy(np.int64)
        keys = t[key].astype(str).to_numpy()
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.zeros(0, np.int64)
        ends = np.r_[starts[1:], len(keys)]
        self.span = {keys[s]: (int(s), int(e)) for s, e in zip(starts, ends)}

    def row(self, entity: str, at_ms: int) -> int | None:
        """Index of the latest row of ``entity`` with ``as_of <= at_ms`` (None: no such row)."""
        se = self.span.get(entity)
        if se is None:
            return None
        s, e = se
        k = int(np.searchsorted(self.as_of[s:e], at_ms, side="right")) - 1
        return None if k < 0 else s + k

    def values(self, idx: int) -> dict[str, Any]:
        return {c: self.data[c][idx] for c in self.columns}


@dataclass
class RealtimeHistory:
    """The offline tables of one event log, joined point in time (strictly before the asked time)."""

    users: _AsOf
    items: _AsOf

    @classmethod
    def from_events(cls, events: pd.DataFrame, catalog: Mapping[str, str]) -> "RealtimeHistory":
        tables = offline_tables(events, catalog)
        return cls.from_tables(tables.users, tables.items)

    @classmethod
    def from_tables(cls, users: pd.DataFrame, items: pd.DataFrame) -> "RealtimeHistory":
        return cls(_AsOf(users, "user_id", RT_USER_INPUTS), _AsOf(items, "item_id", RT_ITEM_INPUTS))

    def user_values(self, user_id: str, t_ms: int) -> dict[str, Any] | None:
        """``user_realtime`` values as the online store held them just before ``t_ms`` (None: no events)."""
        idx = self.users.row(user_id, t_ms - 1)
        return None if idx is None else self.users.values(idx)

    def user_vector(self, layout: FeatureLayout, user_id: str, t_ms: int) -> np.ndarray:
        return realtime_user_vector(layout, self.user_values(user_id, t_ms), t_ms)

    def item_matrix(self, layout: FeatureLayout, item_ids: list[str], t_ms: int) -> np.ndarray:
        n = len(item_ids)
        trending = np.zeros(n, np.float64)
        last = np.zeros(n, np.int64)
        found = np.zeros(n, dtype=bool)
        for j, iid in enumerate(item_ids):
            idx = self.items.row(iid, t_ms - 1)
            if idx is not None:
                trending[j] = self.items.data[RT_TRENDING][idx]
                last[j] = self.items.data[RT_LAST_EVENT_MS][idx]
                found[j] = True
        return realtime_item_matrix(layout, trending, last, found, t_ms)


@dataclass
class RealtimeAt:
    """Real-time features of a set of users, each at its own time (its first label interaction)."""

    layout: FeatureLayout
    history: RealtimeHistory
    user_ids: np.ndarray  # str per user code
    item_ids: np.ndarray  # str per item row
    times_ms: dict[int, int]  # user code -> t (ms)

    def user(self, u: int) -> np.ndarray:
        t = self.times_ms.get(int(u))
        if t is None:
            return np.zeros(self.layout.rt_user_dim, np.float32)
        return self.history.user_vector(self.layout, str(self.user_ids[int(u)]), t)

    def items(self, u: int, item_rows: np.ndarray) -> np.ndarray:
        t = self.times_ms.get(int(u))
        if t is None:
            return np.zeros((len(item_rows), self.layout.rt_item_dim), np.float32)
        return self.history.item_matrix(self.layout, [str(self.item_ids[int(i)]) for i in item_rows], t)


def first_label_times(labels: pd.DataFrame, timestamp_unit: str = "s") -> dict[int, int]:
    """User code -> time (ms) of the user's first label interaction."""
    scale = {"s": 1000, "ms": 1}[timestamp_unit]
    u = labels["user_id"].cat.codes.to_numpy(np.int64)
    ts = labels["timestamp"].to_numpy(np.int64)
    first: dict[int, int] = {}
    for uu, tt in zip(u.tolist(), ts.tolist()):
        if uu not in first or tt < first[uu]:
            first[uu] = tt
    return {k: v * scale for k, v in first.items()}
