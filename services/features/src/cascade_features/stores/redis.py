"""Fast reader of Feast's Redis online store.

Feast layout (``feast/infra/online_stores/redis.py``): one hash per entity, key
``serialize_entity_key(entity_key) + project``; field ``mmh3("<view>:<feature>")`` holds the
serialized ``ValueProto`` and ``_ts:<view>`` the event timestamp.

The reader runs ONE read-only Lua script (``EVALSHA``; reloaded automatically after a server
restart) that ``HGET``s the user's field and every unique candidate's field server-side: one round
trip and one reply array, decoded in bulk. Measured on this machine for 100 candidates it is ~8x
faster than a redis-py asyncio pipeline of 101 ``HGET``s, whose per-command client overhead
dominates. (Standalone Redis: on Redis Cluster the keys of one script would span slots.)
"""

from __future__ import annotations

from typing import Sequence

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from cascade_core.errors import UnavailableError
from cascade_features.codec import decode_float_lists, redis_field
from cascade_features.config import RedisStoreConfig
from cascade_features.stores.base import FetchResult, OnlineReader, ViewSpec


# KEYS[1] = user key, KEYS[2..] = item keys; ARGV = {user field, item field}. A missing hash or
# field yields Lua false, which keeps the reply array dense (a nil would truncate it).
_FETCH_LUA = """
local out = {redis.call('HGET', KEYS[1], ARGV[1])}
for i = 2, #KEYS do out[i] = redis.call('HGET', KEYS[i], ARGV[2]) end
return out
"""


class RedisReader(OnlineReader):
    type = "redis"

    def __init__(self, config: RedisStoreConfig, project: str, user: ViewSpec, item: ViewSpec) -> None:
        super().__init__(project, user, item)
        self.config = config
        self._suffix = project.encode("utf-8")
        self._user_field = redis_field(user.view, user.feature)
        self._item_field = redis_field(item.view, item.feature)
        self._client: aioredis.Redis | None = None
        self._script: AsyncScript | None = None

    async def initialize(self) -> None:
        c = self.config
        self._client = aioredis.Redis(
            host=c.host, port=c.port, db=c.db, password=c.password, ssl=c.ssl,
            socket_timeout=c.socket_timeout_s, socket_connect_timeout=c.socket_timeout_s,
        )
        self._script = self._client.register_script(_FETCH_LUA)  # no I/O: loaded on first call

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = self._script = None

    def describe(self) -> str:
        return f"redis[{self.project}] {self.config.describe()}"

    async def fetch(self, user_id: str, item_ids: Sequence[str]) -> FetchResult:
        if self._script is None:
            raise RuntimeError("RedisReader.fetch before initialize()")
        uniq, inverse = self._unique(item_ids)
        sfx = self._suffix
        user_key = self._user_keys.encode(user_id) + sfx
        item_keys = [k + sfx for k in self._item_keys.encode_many(uniq)]
        try:
            replies = await self._script(keys=[user_key, *item_keys], args=[self._user_field, self._item_field])
        except (RedisError, OSError) as e:
            raise UnavailableError(f"Redis online store {self.config.describe()}: {e}") from e
        user_mat, user_found = decode_float_lists(replies[:1], self.user.dim, self.user.ref)
        item_mat, item_found = decode_float_lists(replies[1:], self.item.dim, self.item.ref)
        if inverse is not None:
            item_mat, item_found = item_mat[inverse], item_found[inverse]
        return FetchResult(user_mat[0], bool(user_found[0]), item_mat, item_found)
