"""Fast reader of Feast's SQLite online store.

Feast layout (``feast/infra/online_stores/sqlite.py``): one table ``"<project>_<view>"`` with
columns ``entity_key BLOB`` (serialized entity key), ``feature_name TEXT``, ``value BLOB``
(serialized ``ValueProto``), ``event_ts``, ``created_ts``; primary key ``(entity_key, feature_name)``.
The reader issues ONE query (user row ``UNION ALL`` item rows, and for real-time layouts ``UNION
ALL`` the user's ``user_realtime`` rows and the items' ``item_realtime`` rows) on a read-only
connection of its own. Feast and the stream worker (the writers) run in other processes; the busy
timeout bounds the wait for their commits before the store counts as unavailable. Until the stream
views' tables exist (no worker has applied them yet) real-time rows read as absent (no events); the
reader looks for the tables again every ``RT_TABLE_RECHECK_S``.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from typing import Sequence

from cascade_core.errors import UnavailableError
from cascade_features.codec import decode_float_lists
from cascade_features.config import SqliteStoreConfig
from cascade_features.stores.base import (
    ITEM_RT_FEATURES,
    USER_RT_FEATURES,
    FetchResult,
    OnlineReader,
    RealtimeRows,
    ViewSpec,
)

log = logging.getLogger("cascade.features.sqlite")
RT_TABLE_RECHECK_S = 5.0


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


class SqliteReader(OnlineReader):
    type = "sqlite"

    def __init__(self, config: SqliteStoreConfig, project: str, user: ViewSpec, item: ViewSpec,
                 busy_timeout_s: float = 1.0, realtime: bool = False) -> None:
        super().__init__(project, user, item, realtime=realtime)
        self.config = config
        self.busy_timeout_s = busy_timeout_s
        self._conn: sqlite3.Connection | None = None
        self._user_table = _quote(f"{project}_{user.view}")
        self._item_table = _quote(f"{project}_{item.view}")
        self._user_rt_table = f"{project}_{self.user_rt_view}"
        self._item_rt_table = f"{project}_{self.item_rt_view}"
        self._sql_cache: dict[tuple[int, bool, bool], str] = {}
        self._rt_tables: tuple[bool, bool] = (False, False)
        self._rt_checked = float("-inf")

    async def initialize(self) -> None:
        try:
            self._connect()
        except UnavailableError:
            pass  # not materialized yet: fetch retries and reports it

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def describe(self) -> str:
        return f"sqlite[{self.project}] {self.config.path}"

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            path = Path(self.config.path).resolve()
            if not path.is_file():
                raise UnavailableError(
                    f"SQLite online store {path} does not exist: run "
                    "`python -m cascade_features.repo apply-materialize --version latest`"
                )
            # Read-only; the service only ever reads from the event-loop thread.
            self._conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True,
                                         timeout=self.busy_timeout_s, check_same_thread=False)
        return self._conn

    def _realtime_tables(self, conn: sqlite3.Connection) -> tuple[bool, bool]:
        """Which stream-view tables exist (re-checked every RT_TABLE_RECHECK_S while one is missing)."""
        if not self.realtime:
            return (False, False)
        now = time.monotonic()
        if not all(self._rt_tables) and now - self._rt_checked >= RT_TABLE_RECHECK_S:
            self._rt_checked = now
            names = {r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN (?, ?)",
                (self._user_rt_table, self._item_rt_table))}
            found = (self._user_rt_table in names, self._item_rt_table in names)
            if found != self._rt_tables and not all(found):
                log.warning("real-time tables missing in %s (%s): real-time features read as 'no events' "
                            "until the stream worker creates them", self.config.path,
                            ", ".join(t for t, ok in zip((self._user_rt_table, self._item_rt_table), found)
                                      if not ok))
            self._rt_tables = found
        return self._rt_tables

    def _sql(self, n: int, user_rt: bool, item_rt: bool) -> str:
        ck = (n, user_rt, item_rt)
        sql = self._sql_cache.get(ck)
        if sql is None:
            sql = (f"SELECT 0, entity_key, feature_name, value FROM {self._user_table}"
                   f" WHERE feature_name = ? AND entity_key = ?")
            if n:
                sql += (f" UNION ALL SELECT 1, entity_key, feature_name, value FROM {self._item_table}"
                        f" WHERE feature_name = ? AND entity_key IN ({','.join('?' * n)})")
            if user_rt:
                sql += (f" UNION ALL SELECT 2, entity_key, feature_name, value FROM {_quote(self._user_rt_table)}"
                        f" WHERE entity_key = ? AND feature_name IN ({','.join('?' * len(USER_RT_FEATURES))})")
            if item_rt and n:
                sql += (f" UNION ALL SELECT 3, entity_key, feature_name, value FROM {_quote(self._item_rt_table)}"
                        f" WHERE entity_key IN ({','.join('?' * n)})"
                        f" AND feature_name IN ({','.join('?' * len(ITEM_RT_FEATURES))})")
            if len(self._sql_cache) < 128:
                self._sql_cache[ck] = sql
        return sql

    def fetch_sync(self, user_id: str, item_ids: Sequence[str]) -> FetchResult:
        uniq, inverse = self._unique(item_ids)
        user_key = self._user_keys.encode(user_id)
        item_keys = self._item_keys.encode_many(uniq)
        params: list[object] = [self.user.feature, user_key]
        if item_keys:
            params.append(self.item.feature)
            params.extend(item_keys)
        try:
            conn = self._connect()
            user_rt, item_rt = self._realtime_tables(conn)
            if user_rt:
                params.append(user_key)
                params.extend(USER_RT_FEATURES)
            if item_rt and item_keys:
                params.extend(item_keys)
                params.extend(ITEM_RT_FEATURES)
            rows = conn.execute(self._sql(len(item_keys), user_rt, item_rt), params).fetchall()
        except sqlite3.OperationalError as e:  # locked, missing table, unreadable file
            raise UnavailableError(f"SQLite online store {self.config.path}: {e}") from e
        user_val: bytes | None = None
        item_vals: dict[bytes, bytes] = {}
        user_rt_raw: dict[str, bytes | None] = {}
        item_rt_raw: dict[bytes, dict[str, bytes | None]] = {}
        for tag, key, feature, value in rows:
            if tag == 0:
                user_val = value
            elif tag == 1:
                item_vals[key] = value
            elif tag == 2:
                user_rt_raw[feature] = value
            else:
                item_rt_raw.setdefault(key, {})[feature] = value
        user_mat, user_found = decode_float_lists([user_val], self.user.dim, self.user.ref)
        item_mat, item_found = decode_float_lists(
            [item_vals.get(k) for k in item_keys], self.item.dim, self.item.ref
        )
        realtime = None
        if self.realtime:
            realtime = RealtimeRows.decode(user_rt_raw, [item_rt_raw.get(k, {}) for k in item_keys])
        if inverse is not None:
            item_mat, item_found = item_mat[inverse], item_found[inverse]
            realtime = realtime.take(inverse) if realtime is not None else None
        return FetchResult(user_mat[0], bool(user_found[0]), item_mat, item_found, realtime)

    async def fetch(self, user_id: str, item_ids: Sequence[str]) -> FetchResult:
        # One indexed query on a local file: cheaper inline than a thread hop.
        return self.fetch_sync(user_id, item_ids)
