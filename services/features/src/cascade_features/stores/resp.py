"""A lean asyncio Redis connection for the features hot path: pre-packed RESP in, hiredis replies out.

Why not ``redis.asyncio``: for the one hot command (an ``EVALSHA`` with ~100 keys) its per-call work
— packing every argument, a connection checkout, a timeout context per read, the stream reader —
cost the serving process several times the CPU of the raw synchronous call. Here:

* the caller hands over the command already encoded in RESP (the reader encodes the constant part once);
* one TCP connection carries every request in flight: requests are written in order and Redis answers
  in order, so replies resolve a FIFO of futures, parsed by ``hiredis.Reader`` straight from
  ``data_received``. A caller cancelled while waiting leaves its future in the FIFO: its reply is still
  consumed, then dropped, so the FIFO never shifts;
* one watchdog timer per connection (not one per call) enforces ``timeout_s``: when the oldest
  request in flight has waited that long the connection is dropped and every request on it fails with
  a :class:`redis.exceptions.TimeoutError` (a hung Redis cannot hold requests);
* the connection is opened on first use (one shared attempt for all concurrent callers, AUTH/SELECT
  included, bounded by ``timeout_s``) and reopened after it drops (server restart, timeout, protocol error).

Failures are redis-py's exception types (``ConnectionError``, ``TimeoutError``, ``ResponseError``,
all ``RedisError``) so callers classify them as before. Error replies come back as
:class:`hiredis.ReplyError` values (not raised): the caller decides (e.g. ``NOSCRIPT`` -> reload).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

ReplyError = hiredis.ReplyError


def pack_command(*args: bytes | str | int) -> bytes:
    """RESP encoding of one command (cold paths: AUTH, SELECT, SCRIPT LOAD)."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode("utf-8")
        out.append(b"$%d\r\n%b\r\n" % (len(b), b))
    return b"".join(out)


class _Protocol(asyncio.Protocol):
    """One connection: a FIFO of (future, deadline) answered in order by the hiredis parser."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout_s: float, where: str) -> None:
        self._loop = loop
        self._timeout_s = timeout_s
        self._where = where
        self._parser = hiredis.Reader()
        self._waiters: deque[asyncio.Future] = deque()
        self._deadlines: deque[float] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None
        self.lost: Exception | None = None  # set once the connection is unusable

    # -- asyncio callbacks -------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        parser, waiters, deadlines = self._parser, self._waiters, self._deadlines
        parser.feed(data)
        while True:
            try:
                reply = parser.gets()
            except hiredis.ProtocolError as e:
                self.abort(RedisConnectionError(f"Protocol error from {self._where}: {e}"))
                return
            if reply is False:
                return
            if not waiters:
                self.abort(RedisConnectionError(f"unexpected reply from {self._where}"))
                return
            fut = waiters.popleft()
            deadlines.popleft()
            if not fut.done():  # a cancelled caller's reply is consumed and dropped
                fut.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError(
            f"Connection to {self._where} lost" + (f": {exc}" if exc else " (closed by server)")))

    # -- requests ----------------------------------------------------------------------------------
    def request(self, payload: bytes, n_replies: int = 1) -> list[asyncio.Future]:
        """Write ``payload`` (``n_replies`` pipelined commands); one future per reply, in order."""
        if self.lost is not None:
            raise type(self.lost)(*self.lost.args)  # one instance per caller
        loop = self._loop
        deadline = loop.time() + self._timeout_s
        futs = [loop.create_future() for _ in range(n_replies)]
        self._waiters.extend(futs)
        self._deadlines.extend([deadline] * n_replies)
        self.transport.write(payload)  # type: ignore[union-attr]
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._watchdog)
        return futs

    async def call(self, payload: bytes) -> Any:
        """One command: its reply (a :class:`ReplyError` value for an error reply)."""
        (fut,) = self.request(payload)
        return await fut

    def _watchdog(self) -> None:
        self._timer = None
        if not self._deadlines or self.lost is not None:
            return
        head = self._deadlines[0]
        loop = self._loop
        if loop.time() + 0.001 >= head:
            self.abort(RedisTimeoutError(f"Timeout reading from {self._where} (no reply in {self._timeout_s}s)"))
        else:
            self._timer = loop.call_at(head, self._watchdog)

    # -- teardown ----------------------------------------------------------------------------------
    def abort(self, exc: Exception) -> None:
        """Drop the connection; every request in flight fails with ``exc``."""
        self._fail(exc)
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, exc: Exception) -> None:
        if self.lost is None:
            self.lost = exc
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiters = self._waiters
        self._waiters = deque()
        self._deadlines = deque()
        for fut in waiters:
            if not fut.done():
                fut.set_exception(type(exc)(*exc.args))  # one instance per caller: no shared traceback
                fut.exception()  # retrieved: no "never retrieved" warning for a reply nobody awaits any more


class RespConnection:
    """A self-healing pipelined connection to one Redis server (plain TCP; TLS is not handled here)."""

    def __init__(self, host: str, port: int, *, db: int = 0, password: str | None = None,
                 timeout_s: float = 0.5) -> None:
        self.host, self.port, self.db, self.password = host, port, db, password
        self.timeout_s = timeout_s
        self._where = f"{host}:{port}"
        self._proto: _Protocol | None = None
        self._connecting: asyncio.Task | None = None
        self._closed = False

    async def connection(self) -> tuple[_Protocol, bool]:
        """(an open connection, whether it was opened by this call) — connects when needed."""
        p = self._proto
        if p is not None and p.lost is None:
            return p, False
        if self._closed:
            raise RedisConnectionError(f"connection to {self._where} is closed")
        task = self._connecting
        if task is None:
            task = self._connecting = asyncio.get_running_loop().create_task(self._open())
            task.add_done_callback(self._opened)
        # shield: a cancelled caller does not cancel the attempt the other callers wait for
        return await asyncio.shield(task), True

    def _opened(self, task: asyncio.Task) -> None:
        if self._connecting is task:
            self._connecting = None
        if task.cancelled() or task.exception() is not None:
            return  # exception() marks it retrieved: every waiting caller got it already
        proto = task.result()
        if self._closed:
            proto.abort(RedisConnectionError(f"connection to {self._where} is closed"))
        else:
            self._proto = proto

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout_s):
                _, proto = await loop.create_connection(
                    lambda: _Protocol(loop, self.timeout_s, self._where), self.host, self.port)
                try:
                    setup = []
                    if self.password:
                        setup.append(pack_command("AUTH", self.password))
                    if self.db:
                        setup.append(pack_command("SELECT", self.db))
                    if setup:
                        for fut in proto.request(b"".join(setup), len(setup)):
                            reply = await fut
                            if isinstance(reply, ReplyError):
                                raise RedisConnectionError(f"{self._where}: connection setup failed: {reply}")
                except BaseException:
                    proto.abort(RedisConnectionError(f"connection to {self._where}: setup failed"))
                    raise
        except TimeoutError as e:
            raise RedisTimeoutError(f"Timeout connecting to {self._where}") from e
        except OSError as e:
            raise RedisConnectionError(f"Error connecting to {self._where}: {e}") from e
        return proto

    async def close(self) -> None:
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
        if self._proto is not None:
            self._proto.abort(RedisConnectionError(f"connection to {self._where} is closed"))
            self._proto = None
