"""Which ranker version serves a request: a default plus an optional weighted canary.

The routing lives in a small JSON file (``CASCADE_MODEL_ROUTING_FILE``)::

    {"default": "v1", "canary": "v2", "canary_weight": 10}

:class:`RoutingWatcher` polls it; a changed file is validated and handed to an ``apply`` callback
(which loads new versions *before* switching traffic). A file that fails to parse or to apply is
logged and ignored: the previous routing keeps serving.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import zlib
from pathlib import Path
from typing import Awaitable, Callable

from pydantic import BaseModel, Field, ValidationError, model_validator

from cascade_core.errors import CascadeError

log = logging.getLogger("cascade.ranking.routing")


class ModelRouting(BaseModel):
    model_config = {"extra": "forbid"}

    default: str = Field(min_length=1)
    canary: str | None = None
    canary_weight: int = Field(default=0, ge=0, le=100, description="Percent of requests sent to the canary.")

    @model_validator(mode="after")
    def _canary_needs_version(self) -> "ModelRouting":
        if self.canary_weight and not self.canary:
            raise ValueError("canary_weight > 0 needs a canary version")
        return self

    def versions(self) -> list[str]:
        return [self.default, *([self.canary] if self.canary else [])]

    def choose(self, request_id: str) -> str:
        """Deterministic per request id: the same request id always gets the same version."""
        if self.canary and self.canary_weight and zlib.crc32(request_id.encode()) % 100 < self.canary_weight:
            return self.canary
        return self.default


class RoutingWatcher:
    """Polls a routing file and applies each new valid content once.

    A file that does not parse or validate is rejected for good (the same bytes fail the same way) until
    its content changes. A valid file whose *apply* fails — a model version not in the registry yet, a
    download or load error — is retried with a doubling pause (``retry_s`` up to ``max_retry_s``): the
    version may arrive after the routing file that names it.
    """

    def __init__(
        self, path: Path, apply: Callable[[ModelRouting], Awaitable[None]], poll_s: float = 1.0, *,
        retry_s: float = 5.0, max_retry_s: float = 60.0, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.apply = apply
        self.poll_s = poll_s
        self.retry_s = retry_s
        self.max_retry_s = max_retry_s
        self._clock = clock
        self._seen: str | None = None  # digest of the last content tried (applied or rejected)
        self._retry_at: float | None = None  # set while the last content's apply failed: when to retry
        self._retry_pause = retry_s
        self._task: asyncio.Task | None = None

    async def check(self) -> bool:
        """Read the file; apply it if its content changed (or a failed apply is due for a retry).
        Returns True when a new routing was applied."""
        try:
            raw = self.path.read_bytes()
        except OSError as e:
            if self._seen != "missing":
                log.error("routing file %s unreadable (%s); keeping the current routing", self.path, e)
                self._seen = "missing"
                self._retry_at = None
            return False
        digest = hashlib.sha256(raw).hexdigest()
        retrying = False
        if digest == self._seen:
            if self._retry_at is None or self._clock() < self._retry_at:
                return False
            retrying = True
        else:
            self._seen = digest
            self._retry_at = None
            self._retry_pause = self.retry_s
        try:
            routing = ModelRouting.model_validate_json(raw)
        except (ValidationError, ValueError) as e:
            log.error("routing file %s rejected, keeping the current routing: %s", self.path, e,
                      extra={"event": "routing_rejected"})
            return False
        try:
            await self.apply(routing)
        except Exception as e:  # noqa: BLE001 - e.g. a version not in the registry yet: keep serving, retry
            pause = self._retry_pause
            self._retry_at = self._clock() + pause
            self._retry_pause = min(self.max_retry_s, pause * 2)
            level = logging.WARNING if retrying else logging.ERROR
            log.log(level, "routing file %s rejected, keeping the current routing (%s: %s); retrying in %.0fs",
                    self.path, type(e).__name__, e, pause, extra={"event": "routing_rejected"},
                    exc_info=not isinstance(e, (CascadeError, LookupError, OSError)))
            return False
        self._retry_at = None
        log.info("routing applied: %s", routing.model_dump_json(), extra={"event": "routing_applied"})
        return True

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            await self.check()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="routing-watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
