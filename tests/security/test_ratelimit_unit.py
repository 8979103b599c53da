"""Unit tests of the token bucket, the per-client limiter and the load shedder's quality factor."""

from __future__ import annotations

import pytest
from cascade_platform.ratelimit import Limit, RateLimitConfig, RateLimiter, TokenBucket
from cascade_platform.shedding import LoadShedder, SheddingConfig
from pydantic import ValidationError

pytestmark = pytest.mark.security


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_token_bucket_burst_then_refill_and_retry_after() -> None:
    b = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [b.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take(0.0) == pytest.approx(0.5)  # one token comes back every 1/rate seconds
    assert b.take(0.25) == pytest.approx(0.25)  # half refilled: half a period left
    assert b.take(0.5) == 0.0
    assert b.take(100.0) == 0.0  # refill is capped at the burst
    assert b.tokens == pytest.approx(2.0)
    assert b.take(50.0) == 0.0  # a clock going backwards never adds tokens
    assert b.tokens == pytest.approx(1.0)


def test_limiter_is_per_client_with_overrides() -> None:
    clock = Clock()
    cfg = RateLimitConfig(enabled=True, default=Limit(rate_per_s=1, burst=2),
                          clients={"big": Limit(rate_per_s=10, burst=5)})
    lim = RateLimiter(cfg, clock)
    assert [lim.check("a") for _ in range(2)] == [0.0, 0.0]
    assert lim.check("a") == pytest.approx(1.0)
    assert lim.check("b") == 0.0  # another client has its own bucket
    assert [lim.check("big") for _ in range(5)] == [0.0] * 5
    assert lim.check("big") == pytest.approx(0.1)
    clock.t += 1.0
    assert lim.check("a") == 0.0


def test_limiter_memory_is_bounded_lru() -> None:
    clock = Clock()
    lim = RateLimiter(RateLimitConfig(enabled=True, default=Limit(rate_per_s=1, burst=1), max_clients=3), clock)
    assert lim.check("hot") == 0.0
    for i in range(100):
        lim.check(f"c{i}")
        lim.check("hot")  # recently used: never evicted
        assert len(lim) <= 3
    assert lim.check("hot") > 0  # still the same (drained) bucket


def test_rate_limit_config_from_env_json(monkeypatch: pytest.MonkeyPatch) -> None:
    from cascade_router.settings import RouterSettings

    monkeypatch.setenv("CASCADE_RATE_LIMIT__ENABLED", "true")
    monkeypatch.setenv("CASCADE_RATE_LIMIT__DEFAULT__BURST", "7")
    monkeypatch.setenv("CASCADE_RATE_LIMIT__CLIENTS", '{"storefront": {"rate_per_s": 500, "burst": 1000}}')
    s = RouterSettings()
    assert s.rate_limit.enabled and s.rate_limit.default.burst == 7
    assert s.rate_limit.clients["storefront"].rate_per_s == 500
    assert s.auth.mode == "none" and not s.shedding.enabled


def test_quality_factor_shrinks_between_soft_and_hard_then_refuses() -> None:
    sh = LoadShedder(SheddingConfig(soft_limit=10, hard_limit=20, min_quality=0.2, min_candidates=20), "router")
    assert sh.quality(1) == sh.quality(10) == 1.0
    assert sh.quality(15) == pytest.approx(0.6)
    assert sh.quality(20) == pytest.approx(0.2)
    assert sh.quality(21) is None
    assert sh.shrink(200, 1.0) == 200
    assert sh.shrink(200, 0.6) == 120
    assert sh.shrink(200, 0.05) == 20  # never below min_candidates
    assert sh.shrink(10, 0.5) == 10  # ... nor above what was asked
    soft_only = LoadShedder(SheddingConfig(soft_limit=0, min_quality=0.5), "router")
    assert soft_only.quality(1) == 0.5 and soft_only.quality(10_000) == 0.5
    assert LoadShedder(SheddingConfig(hard_limit=0), "router").quality(1) is None
    with pytest.raises(ValidationError, match="hard_limit"):
        SheddingConfig(soft_limit=5, hard_limit=4)
