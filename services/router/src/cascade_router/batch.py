"""Read side of batch predictions (written by ``cascade_pipelines.batch_predict``).

Two stores, chosen by ``CASCADE_BATCH_PREDICTIONS``:

* ``redis://host:port/db`` — one key per user, ``cascade:batch:v1:<user_id>`` holding JSON
  ``{"items": [...], "scores": [...], "model_version": "...", "created_at": "..."}``; the
  production choice (constant memory in the router, shared by every replica);
* a parquet file (``user_id, rank, item_id, score, model_version``) — loaded into memory at start-up;
  for local runs and small catalogs.

The key format and the parquet columns are the contract with the writer: both import them from here.
"""

from __future__ import annotations

import abc
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cascade_core.errors import UnavailableError

REDIS_KEY_PREFIX = "cascade:batch:v1:"
PARQUET_COLUMNS = ("user_id", "rank", "item_id", "score", "model_version")


def redis_key(user_id: str, prefix: str = REDIS_KEY_PREFIX) -> str:
    return f"{prefix}{user_id}"


def encode_list(items: list[str], scores: list[float], model_version: str, created_at: str) -> bytes:
    return json.dumps(
        {"items": items, "scores": scores, "model_version": model_version, "created_at": created_at},
        separators=(",", ":"),
    ).encode()


@dataclass(frozen=True, slots=True)
class BatchList:
    items: list[str]
    scores: list[float]
    model_version: str


def decode_list(raw: bytes | str) -> BatchList:
    doc = json.loads(raw)
    items, scores = doc["items"], doc["scores"]
    if len(items) != len(scores):
        raise ValueError(f"batch list has {len(items)} items and {len(scores)} scores")
    return BatchList([str(i) for i in items], [float(s) for s in scores], str(doc.get("model_version", "")))


class BatchStore(abc.ABC):
    kind: str = "store"

    async def initialize(self) -> None:
        return None

    async def close(self) -> None:
        return None

    @abc.abstractmethod
    async def get(self, user_id: str) -> BatchList | None:
        """The user's precomputed list, None when there is none; UnavailableError when the store is down."""


class ParquetBatchStore(BatchStore):
    kind = "parquet"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lists: dict[str, BatchList] = {}

    async def initialize(self) -> None:
        import pyarrow.parquet as pq

        if self._lists:
            return
        if not self.path.is_file():
            raise FileNotFoundError(
                f"CASCADE_BATCH_PREDICTIONS: {self.path} does not exist; run "
                "`python -m cascade_pipelines.batch_predict` or unset the variable"
            )
        cols = pq.read_table(self.path, columns=list(PARQUET_COLUMNS)).to_pydict()
        rows = sorted(
            zip(cols["user_id"], cols["rank"], cols["item_id"], cols["score"], cols["model_version"]),
            key=lambda r: (str(r[0]), int(r[1])),
        )
        lists: dict[str, BatchList] = {}
        for uid, _rank, item, score, version in rows:
            found = lists.get(str(uid))
            if found is None:
                found = lists[str(uid)] = BatchList([], [], str(version))
            found.items.append(str(item))
            found.scores.append(float(score))
        self._lists = lists

    def __len__(self) -> int:
        return len(self._lists)

    async def get(self, user_id: str) -> BatchList | None:
        return self._lists.get(user_id)


class RedisBatchStore(BatchStore):
    kind = "redis"

    def __init__(self, url: str, timeout_s: float = 0.05, prefix: str = REDIS_KEY_PREFIX) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.prefix = prefix
        self._client: Any = None

    async def initialize(self) -> None:
        import redis.asyncio as aioredis

        if self._client is not None:
            return
        self._client = aioredis.Redis.from_url(
            self.url, socket_timeout=self.timeout_s, socket_connect_timeout=self.timeout_s
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def get(self, user_id: str) -> BatchList | None:
        if self._client is None:
            raise RuntimeError("RedisBatchStore.get() before initialize()")
        try:
            raw = await self._client.get(redis_key(user_id, self.prefix))
        except Exception as e:  # redis.exceptions.* and OSError: the store is down
            raise UnavailableError(f"batch predictions at {self.url}: {type(e).__name__}: {e}") from None
        return None if raw is None else decode_list(raw)


def open_store(spec: str, timeout_s: float = 0.05) -> BatchStore:
    """``redis://...`` / ``rediss://...`` -> Redis, anything else -> a parquet file path."""
    if spec.startswith(("redis://", "rediss://", "unix://")):
        return RedisBatchStore(spec, timeout_s)
    return ParquetBatchStore(Path(spec))
