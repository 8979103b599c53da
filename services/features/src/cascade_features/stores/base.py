"""Contract of the fast online-store readers.

A reader fetches, in one store round trip, the packed user vector and the packed vectors of all
candidate items that Feast materialized into its online store, and decodes them into numpy.
Missing rows come back as zeros with ``found = False`` (the caller substitutes the manifest
defaults). Any store outage — connection refused, timeout, lock, table not materialized yet —
raises :class:`~cascade_core.errors.UnavailableError` so callers can degrade.

Every implementation runs the shared contract suite in ``tests/unit/features/test_store_contract.py``,
which compares it with Feast's own ``get_online_features`` on the same data.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np

from cascade_core.features import RT_ITEM_INPUTS, RT_LAST_EVENT_MS, RT_TRENDING, RT_USER_INPUTS
from cascade_features.codec import EntityKeyEncoder, decode_value
from cascade_features.definitions import (
    ITEM_FEATURE,
    ITEM_JOIN_KEY,
    ITEM_VIEW,
    USER_FEATURE,
    USER_JOIN_KEY,
    USER_VIEW,
)
from cascade_features.stream_definitions import ITEM_REALTIME_VIEW, USER_REALTIME_VIEW

# The real-time (stream worker) features a real-time layout needs, per view.
USER_RT_FEATURES: tuple[str, ...] = RT_USER_INPUTS
ITEM_RT_FEATURES: tuple[str, ...] = RT_ITEM_INPUTS


@dataclass(frozen=True)
class ViewSpec:
    """One packed-vector feature: its feature view, feature name, join key and vector length."""

    view: str
    feature: str
    join_key: str
    dim: int

    @property
    def ref(self) -> str:
        return f"{self.view}:{self.feature}"


def user_view(dim: int) -> ViewSpec:
    return ViewSpec(USER_VIEW, USER_FEATURE, USER_JOIN_KEY, dim)


def item_view(dim: int) -> ViewSpec:
    return ViewSpec(ITEM_VIEW, ITEM_FEATURE, ITEM_JOIN_KEY, dim)


@dataclass(slots=True)
class RealtimeRows:
    """Raw ``user_realtime`` / ``item_realtime`` values read with the vectors (real-time readers only)."""

    user: dict[str, Any] | None  # USER_RT_FEATURES -> value; None when the user has no row (no events)
    item_trending: np.ndarray  # float64 [n], input order; 0 when not found
    item_last_ms: np.ndarray  # int64 [n]
    item_found: np.ndarray  # bool [n]

    @classmethod
    def decode(cls, user_raw: dict[str, bytes | None], item_raw: list[dict[str, bytes | None]]) -> "RealtimeRows":
        """From serialized ValueProtos: ``user_raw`` feature -> bytes, ``item_raw`` one dict per item."""
        user = {f: decode_value(user_raw.get(f)) for f in USER_RT_FEATURES}
        n = len(item_raw)
        trending = np.zeros(n, np.float64)
        last = np.zeros(n, np.int64)
        found = np.zeros(n, dtype=bool)
        for j, raw in enumerate(item_raw):
            ts = decode_value(raw.get(RT_LAST_EVENT_MS))
            if ts:
                last[j] = int(ts)
                trending[j] = float(decode_value(raw.get(RT_TRENDING)) or 0.0)
                found[j] = True
        return cls(user if user.get(RT_LAST_EVENT_MS) else None, trending, last, found)

    def take(self, inverse: np.ndarray) -> "RealtimeRows":
        return RealtimeRows(self.user, self.item_trending[inverse], self.item_last_ms[inverse],
                            self.item_found[inverse])


@dataclass(slots=True)
class FetchResult:
    user_vec: np.ndarray  # float32 [user_dim]; zeros when not found
    user_found: bool
    item_mat: np.ndarray  # float32 [n, item_dim], input order; zero rows when not found
    item_found: np.ndarray  # bool [n]
    realtime: RealtimeRows | None = None  # only from readers built with realtime=True


class OnlineReader(abc.ABC):
    """Reads one Feast project's user and item vectors directly from the online store."""

    type: ClassVar[str]

    def __init__(self, project: str, user: ViewSpec, item: ViewSpec, realtime: bool = False) -> None:
        self.project = project
        self.user = user
        self.item = item
        # Also read the stream views (user_realtime, item_realtime) in the same round trip.
        self.realtime = realtime
        self.user_rt_view = USER_REALTIME_VIEW
        self.item_rt_view = ITEM_REALTIME_VIEW
        self._user_keys = EntityKeyEncoder(user.join_key)
        self._item_keys = EntityKeyEncoder(item.join_key)

    async def initialize(self) -> None:
        """Open connections; never raises for a store that is merely down (fetch will)."""
        return None

    async def close(self) -> None:
        return None

    @abc.abstractmethod
    async def fetch(self, user_id: str, item_ids: Sequence[str]) -> FetchResult:
        """User vector + item matrix (input order, duplicates allowed) in one store round trip; with
        ``realtime`` also the user's and items' real-time rows (``FetchResult.realtime``)."""

    def describe(self) -> str:
        return f"{self.type}[{self.project}]"

    @staticmethod
    def _unique(item_ids: Sequence[str]) -> tuple[list[str], np.ndarray | None]:
        """Unique ids in first-seen order and, when there were duplicates, the inverse index."""
        uniq = list(dict.fromkeys(item_ids))
        if len(uniq) == len(item_ids):
            return uniq, None
        pos = {k: i for i, k in enumerate(uniq)}
        return uniq, np.fromiter((pos[k] for k in item_ids), dtype=np.int64, count=len(item_ids))
