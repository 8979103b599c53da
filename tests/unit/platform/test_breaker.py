"""Circuit breaker state machine (injected clock, no sleeps) and the Caller's breaker/retry wiring."""

from __future__ import annotations

import time

import grpc
import pytest
from cascade_core.errors import CircuitOpenError, InvalidArgumentError, UnavailableError
from cascade_platform import breaker as cb
from cascade_platform.breaker import BreakerConfig, CircuitBreaker, RetryConfig, State
from cascade_platform.client import Caller
from cascade_platform.context import deadline_var
from prometheus_client import REGISTRY


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


def make(clock: Clock, rand: float = 0.5, **cfg) -> CircuitBreaker:
    base = dict(failure_threshold=3, failure_ratio=0.5, window_s=10, min_calls=10, open_s=1.0,
                max_open_s=4.0, jitter=0.2)
    base.update(cfg)
    return CircuitBreaker("unit", f"t{id(clock)}", BreakerConfig(**base), clock=clock, rand=lambda: rand)


def fail(b: CircuitBreaker, n: int = 1) -> None:
    for _ in range(n):
        b.on_failure(b.before_call())


def ok(b: CircuitBreaker, n: int = 1) -> None:
    for _ in range(n):
        b.on_success(b.before_call())


def gauge(b: CircuitBreaker) -> float:
    return REGISTRY.get_sample_value("cascade_circuit_state", {"service": b.service, "target": b.target})


def transitions(b: CircuitBreaker, frm: str, to: str) -> float:
    return REGISTRY.get_sample_value(
        "cascade_circuit_transitions_total", {"service": b.service, "target": b.target, "from": frm, "to": to}
    ) or 0.0


def test_opens_after_consecutive_failures_and_fails_fast():
    clock = Clock()
    b = make(clock)
    fail(b, 2)
    ok(b)  # a success resets the consecutive count
    fail(b, 2)
    assert b.state is State.CLOSED
    fail(b)
    assert b.state is State.OPEN and gauge(b) == 2
    assert transitions(b, "closed", "open") == 1
    with pytest.raises(CircuitOpenError) as ei:
        b.before_call()
    assert isinstance(ei.value, UnavailableError)  # fail-open stages serve their fallback
    assert "circuit open" in ei.value.message


def test_opens_on_failure_ratio_in_window_but_not_below_min_calls():
    clock = Clock()
    b = make(clock, failure_threshold=100, min_calls=10, failure_ratio=0.5)
    for _ in range(4):  # alternate: never 2 consecutive failures
        fail(b)
        ok(b)
    assert b.state is State.CLOSED  # 8 calls < min_calls
    fail(b)
    assert b.state is State.CLOSED  # 9 calls
    ok(b)
    assert b.state is State.CLOSED  # 10 calls, 5 failures: ratio reached only on a failure
    fail(b)
    assert b.state is State.OPEN


def test_window_forgets_old_calls():
    clock = Clock()
    b = make(clock, failure_threshold=100, min_calls=4, failure_ratio=0.75, window_s=10)
    fail(b, 2)
    clock.advance(11)  # those two fall out of the window
    ok(b)
    fail(b, 2)
    assert b.state is State.CLOSED  # 2 of 3 in the window
    fail(b)
    assert b.state is State.OPEN  # 3 of 4


def test_half_open_after_jittered_cooldown_one_probe_then_closes():
    clock = Clock()
    b = make(clock, rand=1.0, open_s=1.0, jitter=0.2)  # cool-down 1.0 * (1 - 0.2 + 0.4 * 1.0) = 1.2
    fail(b, 3)
    clock.advance(1.19)
    with pytest.raises(CircuitOpenError):
        b.before_call()
    clock.advance(0.02)
    probe = b.before_call()
    assert probe is True and b.state is State.HALF_OPEN and gauge(b) == 1
    with pytest.raises(CircuitOpenError, match="probe call is in flight"):
        b.before_call()  # one probe at a time
    b.on_success(probe)
    assert b.state is State.CLOSED and gauge(b) == 0
    assert transitions(b, "half_open", "closed") == 1
    assert b.before_call() is False


def test_failed_probe_reopens_with_doubled_capped_cooldown():
    clock = Clock()
    b = make(clock, rand=0.5, open_s=1.0, max_open_s=3.0, jitter=0.2)  # rand 0.5: no jitter
    fail(b, 3)
    assert b.open_until == pytest.approx(clock.t + 1.0)
    for expected in (2.0, 3.0, 3.0):  # doubles, capped at max_open_s
        clock.t = b.open_until
        fail(b)  # the probe fails
        assert b.state is State.OPEN
        assert b.open_until - clock.t == pytest.approx(expected)
    clock.t = b.open_until
    ok(b)
    assert b.state is State.CLOSED
    fail(b, 3)
    assert b.open_until - clock.t == pytest.approx(1.0)  # back to open_s after closing


def test_jitter_bounds():
    clock = Clock()
    lo = make(clock, rand=0.0, open_s=2.0, max_open_s=2.0, jitter=0.25)
    hi = make(Clock(), rand=0.999999, open_s=2.0, max_open_s=2.0, jitter=0.25)
    fail(lo, 3)
    fail(hi, 3)
    assert lo.open_until - lo._clock() == pytest.approx(1.5)
    assert hi.open_until - hi._clock() == pytest.approx(2.5, abs=1e-5)


def test_late_outcomes_of_calls_admitted_before_opening_are_ignored():
    clock = Clock()
    b = make(clock)
    early = [b.before_call() for _ in range(2)]  # two calls in flight while closed
    fail(b, 3)
    assert b.state is State.OPEN
    b.on_failure(early[0])
    b.on_success(early[1])  # neither closes nor extends the open circuit
    assert b.state is State.OPEN
    clock.t = b.open_until
    probe = b.before_call()
    b.on_ignored(probe)  # a cancelled probe frees the slot without deciding
    assert b.state is State.HALF_OPEN
    b.on_success(b.before_call())
    assert b.state is State.CLOSED


def test_disabled_breaker_never_opens():
    clock = Clock()
    b = make(clock, enabled=False)
    fail(b, 50)
    assert b.state is State.CLOSED and b.before_call() is False


def test_config_from_environment(monkeypatch):
    monkeypatch.setattr(cb, "_settings", None)
    monkeypatch.setenv("CASCADE_BREAKER__FAILURE_THRESHOLD", "7")
    monkeypatch.setenv("CASCADE_RETRY__MAX_ATTEMPTS", "1")
    try:
        assert cb.settings().breaker.failure_threshold == 7
        assert cb.settings().retry.max_attempts == 1
        assert CircuitBreaker("unit", "env").config.failure_threshold == 7
    finally:
        monkeypatch.setattr(cb, "_settings", None)


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="max_open_s"):
        BreakerConfig(open_s=5, max_open_s=1)


def test_full_jitter_backoff_is_bounded():
    cfg = RetryConfig(backoff_s=0.01, max_backoff_s=0.03)
    assert cb.backoff_s(1, cfg, lambda: 1.0) == pytest.approx(0.01)
    assert cb.backoff_s(2, cfg, lambda: 1.0) == pytest.approx(0.02)
    assert cb.backoff_s(5, cfg, lambda: 1.0) == pytest.approx(0.03)
    assert cb.backoff_s(5, cfg, lambda: 0.0) == 0.0


# -- Caller: breaker + retries -------------------------------------------------------------------
def rpc_error(code: grpc.StatusCode, details: str = "x") -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


class Script:
    """A stub method answering from a script of status codes (OK returns the request)."""

    def __init__(self, *codes: grpc.StatusCode) -> None:
        self.codes = list(codes)
        self.timeouts: list[float] = []

    async def __call__(self, request, timeout, metadata):
        self.timeouts.append(timeout)
        code = self.codes.pop(0) if self.codes else grpc.StatusCode.OK
        if code != grpc.StatusCode.OK:
            raise rpc_error(code)
        return request


def caller(method, *, idempotent: bool, clock: Clock | None = None, **cfg) -> Caller:
    b = make(clock or Clock(), **cfg)
    retry = RetryConfig(max_attempts=3, backoff_s=0.0, max_backoff_s=0.0, min_attempt_s=0.0)
    return Caller("unit", b.target, method, 5.0, idempotent=idempotent, breaker=b, retry=retry)


async def test_idempotent_call_retries_unavailable_then_succeeds():
    m = Script(grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE)
    c = caller(m, idempotent=True)
    assert await c("req") == "req"
    assert len(m.timeouts) == 3


async def test_retries_are_bounded_and_non_idempotent_calls_are_not_retried():
    m = Script(*[grpc.StatusCode.UNAVAILABLE] * 5)
    with pytest.raises(UnavailableError):
        await caller(m, idempotent=True, failure_threshold=100)("req")
    assert len(m.timeouts) == 3  # max_attempts
    m2 = Script(grpc.StatusCode.UNAVAILABLE)
    with pytest.raises(UnavailableError):
        await caller(m2, idempotent=False)("req")
    assert len(m2.timeouts) == 1


async def test_only_unavailable_is_retried():
    codes = (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT)
    for code in codes:
        m = Script(code)
        with pytest.raises((UnavailableError, InvalidArgumentError)):
            await caller(m, idempotent=True)("req")
        assert len(m.timeouts) == 1, code


async def test_retries_never_run_past_the_propagated_deadline():
    m = Script(*[grpc.StatusCode.UNAVAILABLE] * 5)
    b = make(Clock(), failure_threshold=100)
    retry = RetryConfig(max_attempts=5, backoff_s=10.0, max_backoff_s=10.0, min_attempt_s=0.0)
    c = Caller("unit", b.target, m, 5.0, idempotent=True, breaker=b, retry=retry)
    deadline = time.monotonic() + 0.5  # 0.5 s left, backoff pauses up to 10 s
    tok = deadline_var.set(deadline)
    try:
        with pytest.raises(UnavailableError):
            await c("req")
    finally:
        deadline_var.reset(tok)
    assert 1 <= len(m.timeouts) <= 5
    assert all(0 < t <= 0.5 for t in m.timeouts)


async def test_open_breaker_fails_fast_without_calling_and_stops_retries():
    clock = Clock()
    m = Script(*[grpc.StatusCode.UNAVAILABLE] * 10)
    c = caller(m, idempotent=True, clock=clock, failure_threshold=2)
    with pytest.raises(CircuitOpenError):
        await c("req")  # attempt 1 fails, attempt 2 fails and opens, attempt 3 refused by the breaker
    assert len(m.timeouts) == 2
    with pytest.raises(CircuitOpenError):
        await c("req")
    assert len(m.timeouts) == 2  # no RPC while open
    clock.t = c.breaker.open_until
    m.codes.clear()
    assert await c("req") == "req"  # the half-open probe succeeds
    assert c.breaker.state is State.CLOSED


async def test_answers_from_a_healthy_target_do_not_open_the_breaker():
    m = Script(*[grpc.StatusCode.INVALID_ARGUMENT] * 10)
    c = caller(m, idempotent=True, failure_threshold=2)
    for _ in range(5):
        with pytest.raises(InvalidArgumentError):
            await c("req")
    assert c.breaker.state is State.CLOSED


async def test_no_time_left_is_not_a_breaker_failure():
    m = Script()
    c = caller(m, idempotent=True, failure_threshold=1)
    tok = deadline_var.set(0.0)  # long past
    try:
        with pytest.raises(UnavailableError, match="no time left"):
            await c("req")
    finally:
        deadline_var.reset(tok)
    assert c.breaker.state is State.CLOSED and m.timeouts == []


async def test_deadline_the_caller_cut_short_does_not_open_the_breaker():
    """A client sending tiny deadlines makes every downstream call time out: not the target's fault."""
    import time as _time

    m = Script(*[grpc.StatusCode.DEADLINE_EXCEEDED] * 5)
    c = caller(m, idempotent=False, failure_threshold=1)  # default timeout 5 s
    tok = deadline_var.set(_time.monotonic() + 0.5)  # 0.5 s left: cut below half of 5 s
    try:
        for _ in range(5):
            with pytest.raises(UnavailableError):
                await c("req")
    finally:
        deadline_var.reset(tok)
    assert c.breaker.state is State.CLOSED


async def test_deadline_exceeded_with_the_full_timeout_counts_against_the_target():
    m = Script(grpc.StatusCode.DEADLINE_EXCEEDED)
    c = caller(m, idempotent=False, failure_threshold=1)
    with pytest.raises(UnavailableError):
        await c("req")  # no propagated deadline: the call had its own 5 s
    assert c.breaker.state is State.OPEN
