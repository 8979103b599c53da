"""The Redis reader's lean pipelined connection against real, dedicated ``redis-server`` processes.

Each test starts its own ``redis-server`` (free loopback port, no persistence) so it can flush scripts,
stop (SIGSTOP), kill and restart the server without touching the shared Redis. Rows are written in
Feast's layout (the contract suite checks that layout against Feast itself).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import redis

from cascade_core.errors import UnavailableError
from cascade_features.codec import EntityKeyEncoder, float_list_header, redis_field
from cascade_features.config import RedisStoreConfig
from cascade_features.definitions import ITEM_FEATURE, ITEM_JOIN_KEY, ITEM_VIEW, USER_FEATURE, USER_JOIN_KEY, USER_VIEW
from cascade_features.stores import OnlineReader, make_reader
from cascade_features.stores.redis import _FETCH_LUA
from cascade_platform.procs import free_port

pytestmark = pytest.mark.integration

PROJECT = "conn_t"
UDIM, IDIM = 5, 6
N_USERS, N_ITEMS = 40, 200
SHA = hashlib.sha1(_FETCH_LUA.encode()).hexdigest()


class RedisServer:
    """A dedicated redis-server child: start, stop/continue, kill and restart on the same port."""

    def __init__(self, workdir: Path, *extra: str) -> None:
        self.workdir, self.extra, self.port = workdir, extra, free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> "RedisServer":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:  # listening = ready (nothing to load); a plain socket skips redis-py's retry backoff
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on port {self.port} did not start") from None
                time.sleep(0.02)

    def client(self, **kw) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=10, **kw)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)


class Rows:
    """Distinct float vectors per user and item, written in Feast's Redis layout."""

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.users = {f"u{k}": rng.standard_normal(UDIM).astype(np.float32) for k in range(N_USERS)}
        self.items = {f"i{k}": rng.standard_normal(IDIM).astype(np.float32) for k in range(N_ITEMS)}

    def write(self, client: redis.Redis) -> None:
        sfx = PROJECT.encode()
        pipe = client.pipeline(transaction=False)
        for rows, jk, view, feat, dim in ((self.users, USER_JOIN_KEY, USER_VIEW, USER_FEATURE, UDIM),
                                          (self.items, ITEM_JOIN_KEY, ITEM_VIEW, ITEM_FEATURE, IDIM)):
            enc, field, header = EntityKeyEncoder(jk), redis_field(view, feat), float_list_header(dim)
            for eid, vec in rows.items():
                pipe.hset(enc.encode(eid) + sfx, field, header + vec.astype("<f4").tobytes())
        pipe.execute()

    def check(self, got, user_id: str, item_ids: list[str]) -> None:
        assert got.user_found == (user_id in self.users)
        np.testing.assert_array_equal(got.user_vec, self.users.get(user_id, np.zeros(UDIM, np.float32)))
        want = np.stack([self.items.get(i, np.zeros(IDIM, np.float32)) for i in item_ids]) if item_ids else \
            np.zeros((0, IDIM), np.float32)
        np.testing.assert_array_equal(got.item_mat, want)
        np.testing.assert_array_equal(got.item_found, [i in self.items for i in item_ids])


@pytest.fixture
def server(tmp_path: Path):
    s = RedisServer(tmp_path / "redis").start()
    try:
        yield s
    finally:
        s.resume() if s.proc is not None and s.proc.poll() is None else None
        s.kill()


@pytest.fixture
def rows(server: RedisServer) -> Rows:
    r = Rows()
    r.write(server.client())
    return r


async def reader_for(port: int, **cfg) -> OnlineReader:
    reader = make_reader(RedisStoreConfig(port=port, **cfg), PROJECT, UDIM, IDIM)
    await reader.initialize()
    return reader


def request(k: int) -> tuple[str, list[str]]:
    rng = np.random.default_rng(k)
    items = [f"i{j}" for j in rng.choice(N_ITEMS, size=int(rng.integers(0, 30)), replace=True)]
    return f"u{k % (N_USERS + 5)}", items + (["absent"] if k % 3 == 0 else [])  # some users/items missing


def reader_connections(server: RedisServer) -> int:
    """Connections whose last command was the reader's EVALSHA."""
    with server.client() as c:
        return sum(1 for cl in c.client_list() if cl["cmd"] == "evalsha")


async def test_concurrent_fetches_get_their_own_replies(server: RedisServer, rows: Rows):
    reader = await reader_for(server.port)
    try:
        reqs = [request(k) for k in range(60)]
        # all of them on a cold reader: one shared connect, then one pipelined connection
        got = await asyncio.gather(*(reader.fetch(u, items) for u, items in reqs))
        for (u, items), g in zip(reqs, got):
            rows.check(g, u, items)
        assert reader_connections(server) == 1  # one shared connect, one connection
        # requests piled up while the server is stopped: their replies arrive back to back
        server.pause()
        try:
            tasks = [asyncio.create_task(reader.fetch(u, items)) for u, items in reqs]
            await asyncio.sleep(0.05)  # let every task write its request
        finally:
            server.resume()
        for (u, items), g in zip(reqs, await asyncio.gather(*tasks)):
            rows.check(g, u, items)
    finally:
        await reader.close()


async def test_script_is_reloaded_after_script_flush(server: RedisServer, rows: Rows):
    reader = await reader_for(server.port)
    client = server.client()
    try:
        assert client.script_exists(SHA) == [False]
        rows.check(await reader.fetch("u1", ["i1", "i2"]), "u1", ["i1", "i2"])  # NOSCRIPT -> SCRIPT LOAD
        assert client.script_exists(SHA) == [True]
        client.script_flush()
        got = await asyncio.gather(*(reader.fetch(u, items) for u, items in map(request, range(10))))
        for (u, items), g in zip(map(request, range(10)), got):
            rows.check(g, u, items)
        assert client.script_exists(SHA) == [True]
    finally:
        await reader.close()


async def test_redis_restart_is_unavailable_then_recovers(server: RedisServer, rows: Rows):
    reader = await reader_for(server.port)
    try:
        rows.check(await reader.fetch("u2", ["i3"]), "u2", ["i3"])
        server.kill()
        with pytest.raises(UnavailableError, match="Redis online store"):
            await reader.fetch("u2", ["i3"])
        with pytest.raises(UnavailableError, match="Redis online store"):
            await reader.fetch("u2", ["i3"])
        server.start()  # same port, empty: no rows, no scripts
        got = await reader.fetch("u2", ["i3"])
        assert not got.user_found and not got.item_found.any()
        rows.write(server.client())
        rows.check(await reader.fetch("u2", ["i3", "i4"]), "u2", ["i3", "i4"])
    finally:
        await reader.close()


async def test_restart_between_calls_is_transparent(server: RedisServer, rows: Rows):
    """The server restarts while the reader's connection sits idle (no loop turn in between to notice):
    the next call finds the connection dead and retries once on a new one."""
    reader = await reader_for(server.port)
    try:
        rows.check(await reader.fetch("u5", ["i5"]), "u5", ["i5"])
        server.kill()
        server.start()
        rows.write(server.client())
        rows.check(await reader.fetch("u5", ["i5", "i6"]), "u5", ["i5", "i6"])
    finally:
        await reader.close()


async def test_cancelled_caller_does_not_shift_replies(server: RedisServer, rows: Rows):
    reader = await reader_for(server.port, socket_timeout_s=30)
    try:
        rows.check(await reader.fetch("u1", ["i1"]), "u1", ["i1"])  # connected, script loaded
        server.pause()
        try:
            cancelled = asyncio.create_task(reader.fetch("u7", ["i7", "i8", "i9"]))
            await asyncio.sleep(0.05)  # its request is written; its reply cannot come while stopped
            cancelled.cancel()
            with pytest.raises(asyncio.CancelledError):
                await cancelled
            after = asyncio.create_task(reader.fetch("u8", ["i10"]))
            await asyncio.sleep(0.05)
        finally:
            server.resume()
        rows.check(await after, "u8", ["i10"])  # not the cancelled caller's reply
        rows.check(await reader.fetch("u9", ["i11", "i12"]), "u9", ["i11", "i12"])
        assert reader_connections(server) == 1  # the same connection throughout
    finally:
        await reader.close()


async def test_hung_redis_times_out_then_recovers(server: RedisServer, rows: Rows):
    reader = await reader_for(server.port, socket_timeout_s=0.3)
    try:
        rows.check(await reader.fetch("u1", ["i1"]), "u1", ["i1"])
        server.pause()
        try:
            with pytest.raises(UnavailableError, match="Redis online store.*Timeout"):
                await reader.fetch("u3", ["i3"])
        finally:
            server.resume()
        rows.check(await reader.fetch("u3", ["i3"]), "u3", ["i3"])
    finally:
        await reader.close()


async def test_password_and_db(tmp_path: Path):
    srv = RedisServer(tmp_path / "redis-auth", "--requirepass", "s3cret").start()
    try:
        rows = Rows(seed=3)
        rows.write(srv.client(password="s3cret", db=2))
        reader = await reader_for(srv.port, password="s3cret", db=2)
        try:
            rows.check(await reader.fetch("u4", ["i4", "i5"]), "u4", ["i4", "i5"])
        finally:
            await reader.close()
        for cfg in ({"password": "wrong", "db": 2}, {"db": 2}):
            reader = await reader_for(srv.port, **cfg)
            try:
                with pytest.raises(UnavailableError, match="Redis online store"):
                    await reader.fetch("u4", ["i4"])
            finally:
                await reader.close()
        reader = await reader_for(srv.port, password="s3cret", db=0)  # right server, other database
        try:
            got = await reader.fetch("u4", ["i4"])
            assert not got.user_found and not got.item_found.any()
        finally:
            await reader.close()
    finally:
        srv.kill()


async def test_non_ascii_ids_and_fetch_after_close(server: RedisServer):
    rows = Rows(seed=5)
    rows.users["ü-1"] = np.arange(UDIM, dtype=np.float32)
    rows.items["é-2"] = np.arange(IDIM, dtype=np.float32)
    rows.write(server.client())
    reader = await reader_for(server.port)
    try:
        rows.check(await reader.fetch("ü-1", ["é-2", "i1", "é-2"]), "ü-1", ["é-2", "i1", "é-2"])
    finally:
        await reader.close()
    with pytest.raises(RuntimeError, match="before initialize"):
        await reader.fetch("u1", ["i1"])


@pytest.mark.parametrize("realtime", [False, True])
def test_evalsha_command_is_what_redis_py_packs(realtime: bool):
    """The pre-packed RESP command equals redis-py's encoding of the same EVALSHA call."""
    reader = make_reader(RedisStoreConfig(), PROJECT, UDIM, IDIM, realtime=realtime)
    enc_u, enc_i = EntityKeyEncoder(USER_JOIN_KEY), EntityKeyEncoder(ITEM_JOIN_KEY)
    packer = redis.connection.Connection()
    for user, items in (("u1", ["i1", "i22", "i333"]), ("ü", ["é", "x" * 3000, "i1"]), ("u", [])):
        keys = [enc_u.encode(user) + PROJECT.encode(), *(k + PROJECT.encode() for k in enc_i.encode_many(items))]
        want = b"".join(packer.pack_command("EVALSHA", SHA, len(keys), *keys, *reader.script_args))
        assert reader._evalsha(user, items) == want


async def test_redis_py_path_reads_the_same(server: RedisServer, rows: Rows):
    """The redis-py asyncio path (kept for TLS) returns what the lean connection returns."""
    lean = await reader_for(server.port)
    slow = make_reader(RedisStoreConfig(port=server.port), PROJECT, UDIM, IDIM)
    slow.use_redis_py = True
    await slow.initialize()
    try:
        for u, items in map(request, range(12)):
            a, b = await lean.fetch(u, items), await slow.fetch(u, items)
            rows.check(b, u, items)
            assert a.user_found == b.user_found
            np.testing.assert_array_equal(a.item_mat, b.item_mat)
            np.testing.assert_array_equal(a.item_found, b.item_found)
        server.kill()
        with pytest.raises(UnavailableError, match="Redis online store"):
            await slow.fetch("u1", ["i1"])
    finally:
        await lean.close()
        await slow.close()
