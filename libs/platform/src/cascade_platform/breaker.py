"""Circuit breakers and bounded, jittered retries for outbound calls (one breaker per downstream target).

State machine of :class:`CircuitBreaker`::

    CLOSED ──(failure_threshold consecutive failures, or failure_ratio of ≥ min_calls in window_s)──▶ OPEN
    OPEN ──(cool-down elapsed: open_s × 2^(failed probes) capped at max_open_s, ± jitter)──▶ HALF_OPEN
    HALF_OPEN ──(probe succeeds)──▶ CLOSED        HALF_OPEN ──(probe fails)──▶ OPEN (longer cool-down)

While OPEN (and for every caller but the ``half_open_probes`` admitted probes while HALF_OPEN) a call
fails at once with :class:`~cascade_core.errors.CircuitOpenError`, an ``UnavailableError``: fail-open
stages serve their fallback right away instead of waiting for a deadline while the dependency is down.

What counts: a *failure* is an outcome that says the target is unhealthy (gRPC UNAVAILABLE,
DEADLINE_EXCEEDED, INTERNAL, UNKNOWN, RESOURCE_EXHAUSTED, ...; the caller classifies). Any answer that
proves the target is up — including INVALID_ARGUMENT / NOT_FOUND — is a *success*. A call never made
(no time left in the request deadline) or cancelled by the caller is neither.

Retries (:class:`RetryConfig`, used by :class:`cascade_platform.client.Caller` and the Triton backend):
only for calls declared idempotent, only on UNAVAILABLE (connection refused/reset: the request did not
run), at most ``max_attempts`` in all, with full-jitter backoff ``uniform(0, min(max_backoff_s,
backoff_s × 2^n))``, never past the propagated deadline, and each attempt asks the breaker first (an
opening breaker stops the retries).

Configuration, read once per process from the environment (``CASCADE_BREAKER__*``,
``CASCADE_RETRY__*``, e.g. ``CASCADE_BREAKER__OPEN_S=2``), or set with :func:`configure` (tests).
Metrics: ``cascade_circuit_state{service,target}`` (0 closed, 1 half-open, 2 open),
``cascade_circuit_transitions_total{service,target,from,to}``, ``cascade_circuit_rejected_total``
(calls failed fast) and ``cascade_client_retries_total``. See docs/resilience.md.
"""

from __future__ import annotations

import enum
import logging
import random
import time
from collections import deque
from typing import Callable

from prometheus_client import Counter, Gauge
from pydantic import BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cascade_core.errors import CircuitOpenError

log = logging.getLogger("cascade.breaker")

CIRCUIT_STATE = Gauge(
    "cascade_circuit_state", "Circuit breaker state per downstream target (0 closed, 1 half-open, 2 open).",
    ["service", "target"],
)
CIRCUIT_TRANSITIONS = Counter(
    "cascade_circuit_transitions_total", "Circuit breaker state changes.", ["service", "target", "from", "to"]
)
CIRCUIT_REJECTED = Counter(
    "cascade_circuit_rejected_total", "Calls failed fast by an open circuit breaker.", ["service", "target"]
)
CLIENT_RETRIES = Counter(
    "cascade_client_retries_total", "Retried attempts of idempotent outbound calls.", ["service", "target"]
)


class State(enum.IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class BreakerConfig(BaseModel):
    """``CASCADE_BREAKER__*``."""

    enabled: bool = Field(True, description="false: every call goes through (metrics still report CLOSED).")
    failure_threshold: int = Field(5, ge=1, description="Consecutive failures that open the circuit.")
    failure_ratio: float = Field(0.5, gt=0, le=1, description="Failure share in the window that opens it.")
    window_s: float = Field(10.0, gt=0, description="Sliding window of the failure ratio.")
    min_calls: int = Field(20, ge=1, description="Calls in the window before the ratio is considered.")
    open_s: float = Field(1.0, gt=0, description="Cool-down before the first half-open probe.")
    max_open_s: float = Field(5.0, gt=0, description="Cap of the cool-down (doubles per failed probe).")
    jitter: float = Field(0.2, ge=0, lt=1, description="Cool-down multiplied by uniform(1-j, 1+j).")
    half_open_probes: int = Field(1, ge=1, description="Calls let through at once while half-open.")

    @model_validator(mode="after")
    def _check(self) -> "BreakerConfig":
        if self.max_open_s < self.open_s:
            raise ValueError("max_open_s must be at least open_s")
        return self


class RetryConfig(BaseModel):
    """``CASCADE_RETRY__*`` (idempotent calls only, UNAVAILABLE only)."""

    max_attempts: int = Field(3, ge=1, le=10, description="Attempts in all (1 = no retries).")
    backoff_s: float = Field(0.01, ge=0, description="Full-jitter backoff base.")
    max_backoff_s: float = Field(0.1, ge=0, description="Cap of one backoff pause.")
    min_attempt_s: float = Field(
        0.005, ge=0, description="No retry starts with less than this left before the deadline."
    )


class ResilienceSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CASCADE_", env_nested_delimiter="__", extra="ignore", validate_default=True
    )

    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    retry: RetryConfig = Field(default_factory=RetryConfig)


_settings: ResilienceSettings | None = None


def settings() -> ResilienceSettings:
    """The process's breaker/retry settings (from the environment on first use; exits naming a bad var)."""
    global _settings
    if _settings is None:
        from cascade_platform.settings import load_settings

        _settings = load_settings(ResilienceSettings)
    return _settings


def configure(breaker: BreakerConfig | None = None, retry: RetryConfig | None = None) -> None:
    """Override the defaults of breakers and retry policies created from now on (tests, embedding)."""
    global _settings
    cur = settings()
    _settings = ResilienceSettings(breaker=breaker or cur.breaker, retry=retry or cur.retry)


def backoff_s(attempt: int, cfg: RetryConfig, rand: Callable[[], float] = random.random) -> float:
    """Full jitter: the pause before retry number ``attempt`` (1-based)."""
    cap = min(cfg.max_backoff_s, cfg.backoff_s * 2 ** (attempt - 1))
    return cap * rand()


class CircuitBreaker:
    """One downstream target's breaker. Not thread-safe: use it from one event loop.

    Protocol per call: ``probe = b.before_call()`` (raises :class:`CircuitOpenError` when the call
    must not be made), then exactly one of ``b.on_success(probe)``, ``b.on_failure(probe)`` or
    ``b.on_ignored(probe)``. ``clock`` and ``rand`` are injectable (tests drive time by hand).
    """

    def __init__(
        self,
        service: str,
        target: str,
        config: BreakerConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.service = service
        self.target = target
        self.config = config if config is not None else settings().breaker
        self._clock = clock
        self._rand = rand
        self._state = State.CLOSED
        self._consecutive = 0
        self._window: deque[tuple[float, bool]] = deque()  # (time, failed)
        self._window_failures = 0
        self._open_until = 0.0
        self._failed_probes = 0  # probes failed since the circuit last closed: grows the cool-down
        self._probes_in_flight = 0
        self._gauge = CIRCUIT_STATE.labels(service, target)
        self._rejected = CIRCUIT_REJECTED.labels(service, target)
        self._gauge.set(State.CLOSED)

    # -- inspection ------------------------------------------------------------------------------
    @property
    def state(self) -> State:
        """The state now (an OPEN circuit whose cool-down elapsed reads HALF_OPEN only after a call)."""
        return self._state

    @property
    def open_until(self) -> float:
        return self._open_until

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.service}->{self.target}, {self._state.name})"

    # -- protocol --------------------------------------------------------------------------------
    def before_call(self) -> bool:
        """Admit a call (True when it is a half-open probe) or raise :class:`CircuitOpenError`."""
        if not self.config.enabled:
            return False
        if self._state is State.CLOSED:
            return False
        now = self._clock()
        if self._state is State.OPEN:
            if now < self._open_until:
                self._rejected.inc()
                raise CircuitOpenError(
                    f"{self.target}: circuit open (dependency failing), next probe in "
                    f"{self._open_until - now:.2f}s"
                )
            self._transition(State.HALF_OPEN)
        if self._probes_in_flight >= self.config.half_open_probes:
            self._rejected.inc()
            raise CircuitOpenError(f"{self.target}: circuit half-open, a probe call is in flight")
        self._probes_in_flight += 1
        return True

    def on_success(self, probe: bool = False) -> None:
        if not self.config.enabled:
            return
        if probe:
            self._probes_in_flight = max(0, self._probes_in_flight - 1)
            if self._state is State.HALF_OPEN:
                self._failed_probes = 0
                self._reset_counts()
                self._transition(State.CLOSED)
            return
        if self._state is State.CLOSED:
            self._consecutive = 0
            self._record(False)

    def on_failure(self, probe: bool = False) -> None:
        if not self.config.enabled:
            return
        if probe:
            self._probes_in_flight = max(0, self._probes_in_flight - 1)
            if self._state is State.HALF_OPEN:
                self._failed_probes += 1
                self._open()
            return
        if self._state is not State.CLOSED:
            return  # a call admitted before the circuit opened: already accounted for
        self._consecutive += 1
        self._record(True)
        cfg = self.config
        n = len(self._window)
        if self._consecutive >= cfg.failure_threshold or (
            n >= cfg.min_calls and self._window_failures >= cfg.failure_ratio * n
        ):
            self._open()

    def on_ignored(self, probe: bool = False) -> None:
        """The call ended without telling anything about the target (cancelled by the caller)."""
        if probe:
            self._probes_in_flight = max(0, self._probes_in_flight - 1)

    # -- internals -------------------------------------------------------------------------------
    def _record(self, failed: bool) -> None:
        now = self._clock()
        self._window.append((now, failed))
        self._window_failures += failed
        horizon = now - self.config.window_s
        while self._window and self._window[0][0] <= horizon:
            _, f = self._window.popleft()
            self._window_failures -= f

    def _reset_counts(self) -> None:
        self._consecutive = 0
        self._window.clear()
        self._window_failures = 0

    def _open(self) -> None:
        cfg = self.config
        base = min(cfg.max_open_s, cfg.open_s * 2 ** self._failed_probes)
        cool = base * (1 - cfg.jitter + 2 * cfg.jitter * self._rand())
        self._open_until = self._clock() + cool
        self._reset_counts()
        self._transition(State.OPEN)

    def _transition(self, to: State) -> None:
        frm = self._state
        if frm is to:
            return
        self._state = to
        self._gauge.set(to)
        CIRCUIT_TRANSITIONS.labels(self.service, self.target, frm.name.lower(), to.name.lower()).inc()
        if to is State.OPEN:
            log.warning(
                "circuit %s -> %s OPEN (was %s); next probe in %.2fs",
                self.service, self.target, frm.name, self._open_until - self._clock(),
                extra={"event": "circuit_open", "target": self.target},
            )
        elif to is State.CLOSED:
            log.info(
                "circuit %s -> %s CLOSED (dependency answers again)", self.service, self.target,
                extra={"event": "circuit_closed", "target": self.target},
            )
