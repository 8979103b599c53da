"""One outbound gRPC method of a downstream service, opened in ``initialize()`` and closed in ``close()``.

Every downstream of the router is behind a fail-open stage, so any failure — transport errors and
also INVALID_ARGUMENT / NOT_FOUND answers, which mean a contract or config mismatch between services
rather than a caller mistake (the router validated the request) — becomes :class:`UnavailableError`
and is logged with the stage that falls back (rate-limited: one line per interval during an outage).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import grpc
from cascade_core.errors import CascadeError, UnavailableError
from cascade_platform.client import Caller, make_channel

log = logging.getLogger("cascade.router.downstream")
# During an outage every request falls back: log the first failure, then one summary per interval.
LOG_INTERVAL_S = 10.0


class Downstream:
    def __init__(
        self,
        *,
        target: str,
        target_name: str,
        stub_factory: Callable[[grpc.aio.Channel], Any],
        method: str,
        timeout_s: float,
        idempotent: bool = False,
    ) -> None:
        self.target = target
        self.target_name = target_name
        self._stub_factory = stub_factory
        self._method = method
        self.timeout_s = timeout_s
        self.idempotent = idempotent  # retried on UNAVAILABLE (cascade_platform.client.Caller)
        self._channel: grpc.aio.Channel | None = None
        self._caller: Caller | None = None
        self._last_log = float("-inf")
        self._suppressed = 0

    async def open(self) -> None:
        if self._channel is not None:
            return
        self._channel = make_channel(self.target)
        # Start connecting now (without waiting: the dependency may not be up yet) so the first
        # request does not pay for the TCP/HTTP2 handshake inside its deadline.
        self._channel.get_state(try_to_connect=True)
        stub = self._stub_factory(self._channel)
        self._caller = Caller(
            "router", self.target_name, getattr(stub, self._method), self.timeout_s, idempotent=self.idempotent
        )

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
        self._channel = None
        self._caller = None

    async def call(self, request: Any, *, stage: str, timeout_s: float | None = None) -> Any:
        if self._caller is None:
            raise RuntimeError(f"{self.target_name}: call before initialize()")
        try:
            return await self._caller(request, timeout_s)
        except UnavailableError as e:
            self._log(logging.WARNING, stage, e.message)
            raise
        except CascadeError as e:
            self._log(
                logging.ERROR, stage, f"{self.target_name} answered {e.message} (contract/config mismatch)"
            )
            raise UnavailableError(f"{self.target_name}: {e.message}") from None

    def bad_response(self, stage: str, problem: str) -> UnavailableError:
        """A malformed downstream answer: logged as an error, served by the stage's fallback."""
        msg = f"{self.target_name} returned a malformed response: {problem}"
        self._log(logging.ERROR, stage, msg)
        return UnavailableError(msg)

    def _log(self, level: int, stage: str, message: str) -> None:
        now = time.monotonic()
        if now - self._last_log < LOG_INTERVAL_S:
            self._suppressed += 1
            return
        more = (
            f" (+{self._suppressed} more fallbacks in the last {LOG_INTERVAL_S:g}s)"
            if self._suppressed
            else ""
        )
        log.log(
            level, "%s falls back: %s%s", stage, message, more, extra={"stage": stage, "event": "fallback"}
        )
        self._last_log, self._suppressed = now, 0
