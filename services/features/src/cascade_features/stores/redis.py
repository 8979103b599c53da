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
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from cascade_core.errors import UnavailableError
from cascade_platform.breaker import CircuitBreaker
from cascade_features.codec import decode_float_lists, redis_field
from cascade_features.config import RedisStoreConfig
from cascade_features.stores.base import (
    ITEM_RT_FEATURES,
    USER_RT_FEATURES,
    FetchResult,
    OnlineReader,
    RealtimeRows,
    ViewSpec,
)


# KEYS[1] = user key, KEYS[2..] = item keys; ARGV = {user field, item field, nu, nu user real-time
# fields, item real-time fields...}. Reply: user vector, the user's real-time fields, then per item its
# vector and real-time fields. A missing hash or field yields Lua false, which keeps the reply array
# dense (a nil would truncate it). Feast keeps every view of an entity in the entity's one hash, so the
# real-time fields (stream views) sit next to the packed vectors.
_FETCH_LUA = """
local nu = tonumber(ARGV[3])
local ni = #ARGV - 3 - nu
local out = {redis.call('HGET', KEYS[1], ARGV[1])}
for j = 1, nu do out[#out + 1] = redis.call('HGET', KEYS[1], ARGV[3 + j]) end
for i = 2, #KEYS do
  out[#out + 1] = redis.call('HGET', KEYS[i], ARGV[2])
  for j = 1, ni do out[#out + 1] = redis.call('HGET', KEYS[i], ARGV[3 + nu + j]) end
end
return out
"""


class RedisReader(OnlineReader):
    type = "redis"

    def __init__(self, config: RedisStoreConfig, project: str, user: ViewSpec, item: ViewSpec,
                 realtime: bool = False) -> None:
        super().__init__(project, user, item, realtime=realtime)
        self.config = config
        self._suffix = project.encode("utf-8")
        self._user_field = redis_field(user.view, user.feature)
        self._item_field = redis_field(item.view, item.feature)
        self._user_rt = [redis_field(self.user_rt_view, f) for f in USER_RT_FEATURES] if realtime else []
        self._item_rt = [redis_field(self.item_rt_view, f) for f in ITEM_RT_FEATURES] if realtime else []
        self._args: list[bytes | int] = [self._user_field, self._item_field, len(self._user_rt), *self._user_rt,
                                         *self._item_rt]
        self._client: aioredis.Redis | None = None
        self._script: AsyncScript | None = None
        self._breaker: CircuitBreaker | None = None

    async def initialize(self) -> None:
        c = self.config
        self._client = aioredis.Redis(
            host=c.host, port=c.port, db=c.db, password=c.password, ssl=c.ssl,
            socket_timeout=c.socket_timeout_s, socket_connect_timeout=c.socket_timeout_s,
            # redis-py's default (3 retries, jittered exponential backoff up to 10 s) would hold a
            # request for seconds while Redis is down; the serving path fails fast instead (the
            # breaker + the caller's fallback), with one immediate retry for a dropped connection.
            retry=Retry(NoBackoff(), 1),
        )
        self._script = self._client.register_script(_FETCH_LUA)  # no I/O: loaded on first call
        # Redis down: fail fast (UnavailableError -> the caller's fallback) instead of a timeout per call
        self._breaker = CircuitBreaker("features", "redis")

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = self._script = None

    def describe(self) -> str:
        return f"redis[{self.project}] {self.config.describe()}"

    async def fetch(self, user_id: str, item_ids: Sequence[str]) -> FetchResult:
        if self._script is None or self._breaker is None:
            raise RuntimeError("RedisReader.fetch before initialize()")
        uniq, inverse = self._unique(item_ids)
        sfx = self._suffix
        user_key = self._user_keys.encode(user_id) + sfx
        item_keys = [k + sfx for k in self._item_keys.encode_many(uniq)]
        probe = self._breaker.before_call()  # CircuitOpenError (an UnavailableError) while open
        try:
            replies = await self._script(keys=[user_key, *item_keys], args=self._args)
        except (RedisError, OSError) as e:
            self._breaker.on_failure(probe)
            raise UnavailableError(f"Redis online store {self.config.describe()}: {e}") from e
        except BaseException:
            self._breaker.on_ignored(probe)
            raise
        self._breaker.on_success(probe)
        nu, stride = len(self._user_rt), 1 + len(self._item_rt)
        user_mat, user_found = decode_float_lists(replies[:1], self.user.dim, self.user.ref)
        items = replies[1 + nu:]
        item_mat, item_found = decode_float_lists(items[::stride], self.item.dim, self.item.ref)
        realtime = None
        if self.realtime:
            realtime = RealtimeRows.decode(
                dict(zip(USER_RT_FEATURES, replies[1 : 1 + nu])),
                [dict(zip(ITEM_RT_FEATURES, items[j * stride + 1 : (j + 1) * stride])) for j in range(len(uniq))],
            )
        if inverse is not None:
            item_mat, item_found = item_mat[inverse], item_found[inverse]
            realtime = realtime.take(inverse) if realtime is not None else None
        return FetchResult(user_mat[0], bool(user_found[0]), item_mat, item_found, realtime)
