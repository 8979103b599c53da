"""Fast reader of Feast's SQLite online store.

Feast layout (``feast/infra/online_stores/sqlite.py``): one table ``"<project>_<view>"`` with
columns ``entity_key BLOB`` (serialized entity key), ``feature_name TEXT``, ``value BLOB``
(serialized ``ValueProto``), ``event_ts``, ``created_ts``; primary key ``(entity_key, feature_name)``.
The reader issues ONE query (user row ``UNION ALL`` item rows) on a read-only connection of its own.
Feast (the one writer) runs in another process or connection; the busy timeout bounds the wait
for its commit before the store counts as unavailable.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Sequence

from cascade_core.errors import UnavailableError
from cascade_features.codec import decode_float_lists
from cascade_features.config import SqliteStoreConfig
from cascade_features.stores.base import FetchResult, OnlineReader, ViewSpec


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


class SqliteReader(OnlineReader):
    type = "sqlite"

    def __init__(self, config: SqliteStoreConfig, project: str, user: ViewSpec, item: ViewSpec,
                 busy_timeout_s: float = 1.0) -> None:
        super().__init__(project, user, item)
        self.config = config
        self.busy_timeout_s = busy_timeout_s
        self._conn: sqlite3.Connection | None = None
        self._user_table = _quote(f"{project}_{user.view}")
        self._item_table = _quote(f"{project}_{item.view}")
        self._sql_cache: dict[int, str] = {}

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

    def _sql(self, n: int) -> str:
        sql = self._sql_cache.get(n)
        if sql is None:
            items = (
                f" UNION ALL SELECT 1, entity_key, value FROM {self._item_table}"
                f" WHERE feature_name = ? AND entity_key IN ({','.join('?' * n)})"
            ) if n else ""
            sql = (f"SELECT 0, entity_key, value FROM {self._user_table}"
                   f" WHERE feature_name = ? AND entity_key = ?{items}")
            if len(self._sql_cache) < 64:
                self._sql_cache[n] = sql
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
            rows = self._connect().execute(self._sql(len(item_keys)), params).fetchall()
        except sqlite3.OperationalError as e:  # locked, missing table, unreadable file
            raise UnavailableError(f"SQLite online store {self.config.path}: {e}") from e
        user_val: bytes | None = None
        item_vals: dict[bytes, bytes] = {}
        for tag, key, value in rows:
            if tag == 0:
                user_val = value
            else:
                item_vals[key] = value
        user_mat, user_found = decode_float_lists([user_val], self.user.dim, self.user.ref)
        item_mat, item_found = decode_float_lists(
            [item_vals.get(k) for k in item_keys], self.item.dim, self.item.ref
        )
        if inverse is not None:
            item_mat, item_found = item_mat[inverse], item_found[inverse]
        return FetchResult(user_mat[0], bool(user_found[0]), item_mat, item_found)

    async def fetch(self, user_id: str, item_ids: Sequence[str]) -> FetchResult:
        # One indexed query on a local file: cheaper inline than a thread hop.
        return self.fetch_sync(user_id, item_ids)
