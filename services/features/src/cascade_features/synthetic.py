"""Seeded synthetic feature tables in the training pipeline's exact parquet schema.

Used by the benchmark and the tests before (or instead of) real registry artifacts. Columns:
``<key>`` string, ``event_timestamp`` / ``created`` timestamp[us, UTC], ``<vec>`` list<float32>.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cascade_features.definitions import (
    CREATED_COLUMN,
    ITEM_FEATURE,
    ITEM_JOIN_KEY,
    ITEM_TABLE_FILE,
    TIMESTAMP_COLUMN,
    USER_FEATURE,
    USER_JOIN_KEY,
    USER_TABLE_FILE,
)

DEFAULT_TS = datetime(1998, 4, 23, tzinfo=timezone.utc)


@dataclass(frozen=True)
class SyntheticTables:
    user_ids: list[str]
    user_vecs: np.ndarray  # float32 [n_users, user_dim]
    item_ids: list[str]
    item_vecs: np.ndarray  # float32 [n_items, item_dim]

    def user(self, user_id: str) -> np.ndarray:
        return self.user_vecs[self.user_ids.index(user_id)]

    def items(self) -> dict[str, np.ndarray]:
        return dict(zip(self.item_ids, self.item_vecs))


def table(key: str, vec: str, ids: list[str], vecs: np.ndarray, ts: datetime) -> pa.Table:
    tstype = pa.timestamp("us", tz="UTC")
    n = len(ids)
    return pa.table({
        key: pa.array(ids, pa.string()),
        TIMESTAMP_COLUMN: pa.array([ts] * n, tstype),
        CREATED_COLUMN: pa.array([ts] * n, tstype),
        vec: pa.array(list(np.asarray(vecs, dtype=np.float32)), pa.list_(pa.float32())),
    })


def write_feature_tables(
    out_dir: Path | str, *, n_users: int, n_items: int, user_dim: int, item_dim: int,
    seed: int = 0, ts: datetime = DEFAULT_TS, user_prefix: str = "u", item_prefix: str = "i",
) -> SyntheticTables:
    """Write ``user_features.parquet`` and ``item_features.parquet`` into ``out_dir``."""
    rng = np.random.default_rng(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    user_ids = [f"{user_prefix}{i}" for i in range(n_users)]
    item_ids = [f"{item_prefix}{i}" for i in range(n_items)]
    uv = rng.standard_normal((n_users, user_dim)).astype(np.float32)
    iv = rng.random((n_items, item_dim)).astype(np.float32)
    pq.write_table(table(USER_JOIN_KEY, USER_FEATURE, user_ids, uv, ts), out / USER_TABLE_FILE)
    pq.write_table(table(ITEM_JOIN_KEY, ITEM_FEATURE, item_ids, iv, ts), out / ITEM_TABLE_FILE)
    return SyntheticTables(user_ids, uv, item_ids, iv)
