"""Per-client rate limiting: one token bucket per authenticated client id (``CASCADE_RATE_LIMIT__*``).

A bucket holds at most ``burst`` tokens and refills at ``rate_per_s``; each call takes one. A call
that finds the bucket empty is refused with RESOURCE_EXHAUSTED and the time until a token is back
(``retry-after`` / ``retry-after-s`` trailing metadata, and in the message). Limits: ``default`` for
every client, ``clients`` overrides by client id (JSON in the environment:
``CASCADE_RATE_LIMIT__CLIENTS='{"storefront": {"rate_per_s": 500, "burst": 1000}}'``).

Unauthenticated deployments (``CASCADE_AUTH__MODE=none``) see every caller as the single client
``anonymous``: one shared bucket (peers are not used as keys: behind the gateway and load balancers
they are the proxies, not the callers). Give it its own limit under ``clients.anonymous``.

Memory is bounded: at most ``max_clients`` buckets, least recently used evicted (an evicted client
starts again with a full bucket). Off by default (``enabled=false``); the chart turns it on.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from cascade_core.errors import ResourceExhaustedError
from prometheus_client import Counter
from pydantic import BaseModel, Field

from cascade_platform.auth import ANONYMOUS, ClientLabels
from cascade_platform.context import client_id_var
from cascade_platform.interceptors import MethodInterceptor

RATE_LIMITED = Counter(
    "cascade_rate_limited_total",
    "Calls refused by the per-client rate limit (RESOURCE_EXHAUSTED), by client id "
    "(bounded: clients past the label limit count as 'other').",
    ["client"],
)


class Limit(BaseModel):
    rate_per_s: float = Field(100.0, gt=0, description="Sustained calls per second.")
    burst: int = Field(200, ge=1, description="Calls allowed at once from a full bucket.")


class RateLimitConfig(BaseModel):
    enabled: bool = False
    default: Limit = Field(default_factory=Limit)
    clients: dict[str, Limit] = Field(default_factory=dict, description="Per-client overrides by client id.")
    max_clients: int = Field(10_000, ge=1, le=10_000_000, description="Buckets kept (LRU).")
    max_client_labels: int = Field(100, ge=1, le=10_000, description="Distinct client label values.")


class TokenBucket:
    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float, n: float = 1.0) -> float:
        """Take ``n`` tokens: 0.0 when granted, else the seconds until ``n`` tokens will be there."""
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        if self.tokens >= n:
            self.tokens -= n
            return 0.0
        return (n - self.tokens) / self.rate


class RateLimiter:
    def __init__(self, cfg: RateLimitConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._lock = threading.Lock()
        self.labels = ClientLabels(cfg.max_client_labels, [ANONYMOUS, *cfg.clients])

    def limit(self, client: str) -> Limit:
        return self.cfg.clients.get(client, self.cfg.default)

    def check(self, client: str) -> float:
        """0.0 = allowed (a token was taken); otherwise seconds until the client may retry."""
        now = self.clock()
        with self._lock:
            b = self._buckets.get(client)
            if b is None:
                lim = self.limit(client)
                b = self._buckets[client] = TokenBucket(lim.rate_per_s, lim.burst, now)
                if len(self._buckets) > self.cfg.max_clients:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(client)
            return b.take(now)

    def __len__(self) -> int:
        return len(self._buckets)


class RateLimitInterceptor(MethodInterceptor):
    """Refuses calls of clients over their limit. Install after the auth interceptor (needs the
    client id) and after the platform interceptor (maps the error, counts it)."""

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter

    def wrap_unary(self, full_method: str, inner):
        limiter = self.limiter

        async def wrapped(request, context):
            client = client_id_var.get() or ANONYMOUS
            wait = limiter.check(client)
            if wait > 0:
                RATE_LIMITED.labels(limiter.labels.label(client)).inc()
                lim = limiter.limit(client)
                raise ResourceExhaustedError(
                    f"rate limit exceeded for client {client!r} ({lim.rate_per_s:g}/s, burst {lim.burst}): "
                    f"retry in {wait:.3f}s",
                    retry_after_s=wait,
                )
            return await inner(request, context)

        return wrapped
