"""Real-time feature math: per-entity window state, shared by the stream worker and the batch job.

One implementation for stream and batch: the worker feeds each entity's :class:`EntityState` events as
they arrive and writes :meth:`EntityState.features` (absolute values, recomputed from state — never
increments); :func:`compute_features` feeds the same class an event DataFrame in time order and emits
the values as of every event (the offline table for point-in-time joins).

Semantics (the contract in ``cascade_features.stream_definitions``):

* values are "as of" the entity's latest event time ``as_of``; a window ``W`` counts the entity's
  events with ``as_of - W < ts <= as_of``;
* an event is counted once per entity: ``event_id`` is the de-duplication key (redeliveries and
  producer retries carry the same id); the first copy wins;
* an event at or before ``as_of - MAX_WINDOW`` can no longer be in any window and is ignored;
* users: the last ``LAST_N`` distinct items of non-impression events (most recent first) and their
  categories; items: a trending score (exponentially decayed weighted engagement).

Because every value is a function of the *set* of de-duplicated events, the final state does not
depend on arrival order, batching or redelivery — which is what makes crash-restart exact.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right, insort
from dataclasses import dataclass
from typing import Any, Iterable, Literal, Mapping

import numpy as np
import pandas as pd
from cascade_features.definitions import ITEM_JOIN_KEY, USER_JOIN_KEY
from cascade_features.stream_definitions import (
    COUNT_FEATURES,
    EVENT_TYPES,
    ITEM_REALTIME_FEATURES,
    LAST_CATEGORIES,
    LAST_EVENT_MS,
    LAST_ITEMS,
    LAST_N,
    MAX_WINDOW_MS,
    TRENDING,
    TRENDING_HALF_LIFE_MS,
    TRENDING_WEIGHTS,
    USER_REALTIME_FEATURES,
    WINDOWS_MS,
)

UNKNOWN_CATEGORY = "unknown"
Kind = Literal["user", "item"]
_N_TYPES = len(EVENT_TYPES)
_WEIGHTS = tuple(TRENDING_WEIGHTS[t] for t in EVENT_TYPES)
_IMPRESSION = EVENT_TYPES.index("impression")
_WINDOWS = tuple(WINDOWS_MS.items())


@dataclass(frozen=True, slots=True)
class Event:
    """The fields the feature math needs (``type_index`` into ``EVENT_TYPES``)."""

    event_id: str
    type_index: int
    user_id: str
    item_id: str
    ts: int  # epoch ms


class EntityState:
    """Window state of one user or item; ``add`` is idempotent per ``event_id``."""

    __slots__ = ("kind", "ts", "ids", "recent", "last_ms")

    def __init__(self, kind: Kind) -> None:
        self.kind = kind
        self.ts: list[list[int]] = [[] for _ in range(_N_TYPES)]  # sorted event times per type
        self.ids: dict[str, int] = {}  # event_id -> ts, for events still inside the largest window
        self.recent: dict[str, tuple[int, str, str]] = {}  # users: item -> (ts, event_id, category)
        self.last_ms = 0

    def add(self, e: Event, category: str = UNKNOWN_CATEGORY) -> bool:
        """Fold one event in. False when it changes nothing (duplicate, or older than every window)."""
        if e.event_id in self.ids or e.ts <= self.last_ms - MAX_WINDOW_MS:
            return False
        self.ids[e.event_id] = e.ts
        insort(self.ts[e.type_index], e.ts)
        if self.kind == "user" and e.type_index != _IMPRESSION:
            prev = self.recent.get(e.item_id)
            if prev is None or (e.ts, e.event_id) > prev[:2]:
                self.recent[e.item_id] = (e.ts, e.event_id, category)
        if e.ts > self.last_ms:
            self.last_ms = e.ts
            self._evict()
        return True

    def _evict(self) -> None:
        cutoff = self.last_ms - MAX_WINDOW_MS
        live = 0
        for lst in self.ts:
            if lst and lst[0] <= cutoff:
                del lst[: bisect_right(lst, cutoff)]
            live += len(lst)
        if len(self.ids) > 2 * live + 16:
            self.ids = {k: t for k, t in self.ids.items() if t > cutoff}
        if self.recent and len(self.recent) > LAST_N:
            self.recent = {k: v for k, v in self.recent.items() if v[0] > cutoff}

    @property
    def n_events(self) -> int:
        return sum(len(lst) for lst in self.ts)

    def features(self) -> dict[str, Any]:
        """Absolute feature values as of ``last_ms`` (names of the view's schema)."""
        as_of = self.last_ms
        out: dict[str, Any] = {}
        for suffix, width in _WINDOWS:
            lo = as_of - width
            for t, lst in zip(EVENT_TYPES, self.ts):
                out[f"{t}_count_{suffix}"] = len(lst) - bisect_right(lst, lo)
        if self.kind == "user":
            cutoff = as_of - MAX_WINDOW_MS
            top = heapq.nlargest(
                LAST_N, ((v[0], v[1], item, v[2]) for item, v in self.recent.items() if v[0] > cutoff)
            )
            out[LAST_ITEMS] = [x[2] for x in top]
            out[LAST_CATEGORIES] = [x[3] for x in top]
        else:
            out[TRENDING] = trending_score(self.ts, as_of)
        out[LAST_EVENT_MS] = as_of
        return out


def trending_score(ts_by_type: list[list[int]], as_of: int) -> float:
    """Sum of weight(type) * 0.5 ** ((as_of - ts) / half-life) over the events in the largest window."""
    lo = as_of - MAX_WINDOW_MS
    score = 0.0
    for w, lst in zip(_WEIGHTS, ts_by_type):
        if w and lst:
            arr = np.asarray(lst[bisect_right(lst, lo) :], dtype=np.float64)
            score += w * float(np.exp2((arr - as_of) / TRENDING_HALF_LIFE_MS).sum())
    return score


def feature_names(kind: Kind) -> tuple[str, ...]:
    return USER_REALTIME_FEATURES if kind == "user" else ITEM_REALTIME_FEATURES


def join_key(kind: Kind) -> str:
    return USER_JOIN_KEY if kind == "user" else ITEM_JOIN_KEY


def entity_of(e: Event, kind: Kind) -> str:
    return e.user_id if kind == "user" else e.item_id


# -- batch ----------------------------------------------------------------------------------------
EVENT_COLUMNS = ("event_id", "event_type", "user_id", "item_id", "timestamp")


def _events_from_frame(df: pd.DataFrame) -> list[Event]:
    missing = [c for c in EVENT_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"event frame lacks columns {missing} (has {list(df.columns)})")
    index = {t: i for i, t in enumerate(EVENT_TYPES)}
    bad = sorted(set(df["event_type"]) - set(index))
    if bad:
        raise ValueError(f"event frame has unknown event types {bad[:5]}")
    return [
        Event(str(eid), index[et], str(u), str(i), int(ts))
        for eid, et, u, i, ts in zip(
            df["event_id"], df["event_type"], df["user_id"], df["item_id"], df["timestamp"]
        )
    ]


def feature_rows(
    events: Iterable[Event], kind: Kind, catalog: Mapping[str, str] | None = None, every_event: bool = True
) -> list[dict[str, Any]]:
    """Rows ``{join_key, as_of_ms, features...}`` for ``kind``.

    ``events`` are in log order (first copy of an ``event_id`` wins per entity). With ``every_event``
    one row per entity and distinct event time (the value as of that time: the offline table);
    otherwise one row per entity (its final state: what the online store must hold).
    """
    cat = catalog or {}
    by_entity: dict[str, list[Event]] = {}
    seen: set[tuple[str, str]] = set()
    for e in events:
        ent = entity_of(e, kind)
        if (ent, e.event_id) in seen:
            continue
        seen.add((ent, e.event_id))
        by_entity.setdefault(ent, []).append(e)
    key = join_key(kind)
    rows: list[dict[str, Any]] = []
    for ent, evs in by_entity.items():
        evs.sort(key=lambda e: (e.ts, e.event_id))
        state = EntityState(kind)
        for n, e in enumerate(evs):
            state.add(e, cat.get(e.item_id, UNKNOWN_CATEGORY))
            last_of_time = n + 1 == len(evs) or evs[n + 1].ts != e.ts
            if last_of_time and (every_event or n + 1 == len(evs)):
                rows.append({key: ent, "as_of_ms": state.last_ms, **state.features()})
    return rows


@dataclass(frozen=True)
class FeatureTables:
    users: pd.DataFrame
    items: pd.DataFrame


def _frame(rows: list[dict[str, Any]], kind: Kind) -> pd.DataFrame:
    cols = [join_key(kind), "as_of_ms", *feature_names(kind)]
    df = pd.DataFrame(rows, columns=cols)
    for c in COUNT_FEATURES + (LAST_EVENT_MS, "as_of_ms"):
        df[c] = df[c].astype("int64")
    if kind == "item":
        df[TRENDING] = df[TRENDING].astype("float64")
    return df


def compute_features(
    events: pd.DataFrame, catalog: Mapping[str, str] | None = None, every_event: bool = True
) -> FeatureTables:
    """The real-time features of an event DataFrame (columns ``EVENT_COLUMNS``, timestamp in epoch ms).

    Rows are in log order; validate them first (``cascade_stream.events``). Used by the offline job
    and by training to compute exactly what the worker serves.
    """
    evs = _events_from_frame(events)
    return FeatureTables(
        users=_frame(feature_rows(evs, "user", catalog, every_event), "user"),
        items=_frame(feature_rows(evs, "item", catalog, every_event), "item"),
    )
