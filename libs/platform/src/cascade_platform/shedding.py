"""Global load shedding (``CASCADE_SHEDDING__*``): shrink the work before refusing it.

The router counts the calls it is handling. Up to ``soft_limit`` in flight every call gets full
quality (factor 1.0). Above it the *quality factor* falls linearly from 1.0 to ``min_quality`` at
``hard_limit``: the router asks retrieval for ``factor × num_candidates`` (never fewer than
``min_candidates``), skips shadow ranking and interleaving (one ranker instead of two), and marks the
response ``degraded=true`` (trailing metadata ``x-cascade-quality-factor`` says by how much). Above
``hard_limit`` calls are refused with RESOURCE_EXHAUSTED and ``retry-after`` metadata
(``retry_after_s``) before any work is done.

``soft_limit``/``hard_limit`` unset = that stage is off (the default: shedding is configured per
deployment by the chart; size it from the pod's measured concurrency at its latency SLO).
"""

from __future__ import annotations

import contextvars
import logging
import time

from cascade_core.errors import ResourceExhaustedError
from prometheus_client import Counter, Gauge
from pydantic import BaseModel, Field, model_validator

from cascade_platform.interceptors import MethodInterceptor


log = logging.getLogger("cascade.shedding")

# Quality factor of the current call (1.0 = full work); read by the handler.
quality_var: contextvars.ContextVar[float] = contextvars.ContextVar("cascade_quality_factor", default=1.0)

SHED = Counter(
    "cascade_load_shed_total",
    "Calls shed by the in-flight bound: shrunk (served with quality factor < 1) or refused.",
    ["service", "action"],
)
QUALITY = Gauge("cascade_quality_factor", "Quality factor given to the latest call (1 = full work).", ["service"])
INFLIGHT = Gauge("cascade_shedding_inflight", "Calls counted by the load shedder now.", ["service"])


class SheddingConfig(BaseModel):
    soft_limit: int | None = Field(None, ge=0, description="In-flight calls above which work shrinks.")
    hard_limit: int | None = Field(None, ge=0, description="In-flight calls above which calls are refused.")
    min_quality: float = Field(0.25, gt=0, le=1, description="Quality factor at the hard limit.")
    min_candidates: int = Field(20, ge=1, description="Retrieval candidates never shrink below this.")
    retry_after_s: float = Field(0.5, gt=0, le=60, description="Retry-after sent with refusals.")

    @model_validator(mode="after")
    def _order(self) -> "SheddingConfig":
        if self.soft_limit is not None and self.hard_limit is not None and self.hard_limit < self.soft_limit:
            raise ValueError("hard_limit must be >= soft_limit")
        return self

    @property
    def enabled(self) -> bool:
        return self.soft_limit is not None or self.hard_limit is not None


class LoadShedder:
    def __init__(self, cfg: SheddingConfig, service: str) -> None:
        self.cfg = cfg
        self.service = service
        self.in_flight = 0
        self._last_log = float("-inf")

    def quality(self, n: int) -> float | None:
        """Quality factor for the ``n``-th concurrent call (counting itself); None = refuse."""
        c = self.cfg
        if c.hard_limit is not None and n > c.hard_limit:
            return None
        if c.soft_limit is None or n <= c.soft_limit:
            return 1.0
        if c.hard_limit is None or c.hard_limit == c.soft_limit:
            return c.min_quality
        frac = (n - c.soft_limit) / (c.hard_limit - c.soft_limit)
        return max(c.min_quality, 1.0 - (1.0 - c.min_quality) * frac)

    def shrink(self, num_candidates: int, quality: float) -> int:
        if quality >= 1.0:
            return num_candidates
        return min(num_candidates, max(self.cfg.min_candidates, int(num_candidates * quality)))


class SheddingInterceptor(MethodInterceptor):
    def __init__(self, shedder: LoadShedder) -> None:
        self.shedder = shedder

    def wrap_unary(self, full_method: str, inner):
        sh = self.shedder
        service = sh.service
        gauge, quality_gauge = INFLIGHT.labels(service), QUALITY.labels(service)
        shrunk, refused = SHED.labels(service, "shrunk"), SHED.labels(service, "refused")

        async def wrapped(request, context):
            n = sh.in_flight + 1
            q = sh.quality(n)
            if q is None:
                refused.inc()
                now = time.monotonic()
                if now - sh._last_log > 10.0:
                    sh._last_log = now
                    log.warning("shedding: %d calls in flight > hard limit %s: refusing", n - 1,
                                sh.cfg.hard_limit, extra={"event": "load_shed"})
                raise ResourceExhaustedError(
                    f"{service} overloaded: {n - 1} calls in flight (hard limit {sh.cfg.hard_limit}); "
                    f"retry in {sh.cfg.retry_after_s:g}s",
                    retry_after_s=sh.cfg.retry_after_s,
                )
            sh.in_flight = n
            gauge.set(n)
            quality_gauge.set(q)
            tok = quality_var.set(q)
            if q < 1.0:
                shrunk.inc()
                context.set_trailing_metadata((("x-cascade-quality-factor", f"{q:.3f}"),))
            try:
                return await inner(request, context)
            finally:
                quality_var.reset(tok)
                sh.in_flight -= 1
                gauge.set(sh.in_flight)

        return wrapped
