"""Online-store backends table: ``type`` of the config -> fast reader class."""

from __future__ import annotations

from typing import Callable

from cascade_features.config import RedisStoreConfig, SqliteStoreConfig
from cascade_features.stores.base import FetchResult, OnlineReader, RealtimeRows, ViewSpec, item_view, user_view

__all__ = ["FetchResult", "OnlineReader", "RealtimeRows", "ViewSpec", "item_view", "make_reader", "user_view",
           "READERS"]


def _sqlite(config: SqliteStoreConfig, project: str, user: ViewSpec, item: ViewSpec,
            realtime: bool = False) -> OnlineReader:
    from cascade_features.stores.sqlite import SqliteReader

    return SqliteReader(config, project, user, item, realtime=realtime)


def _redis(config: RedisStoreConfig, project: str, user: ViewSpec, item: ViewSpec,
           realtime: bool = False) -> OnlineReader:
    from cascade_features.stores.redis import RedisReader

    return RedisReader(config, project, user, item, realtime=realtime)


READERS: dict[str, Callable[..., OnlineReader]] = {"sqlite": _sqlite, "redis": _redis}


def make_reader(config: SqliteStoreConfig | RedisStoreConfig, project: str, user_dim: int,
                item_dim: int, realtime: bool = False) -> OnlineReader:
    """The fast reader for ``config.type`` (no I/O until ``initialize()``); ``realtime`` also reads the
    stream views in the same round trip (for layouts with real-time features)."""
    try:
        factory = READERS[config.type]
    except KeyError:
        raise ValueError(f"online_store.type {config.type!r}: expected one of {sorted(READERS)}") from None
    return factory(config, project, user_view(user_dim), item_view(item_dim), realtime=realtime)
