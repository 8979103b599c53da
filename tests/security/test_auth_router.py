"""A real router process with API-key authentication and per-client rate limits, and one with JWTs.

Downstreams are closed ports, so every accepted call is answered by the popularity fallback: these
tests are about who gets in, not about the list.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cascade.router.v1 import router_pb2_grpc
from cascade_platform.auth import hash_api_key, new_api_key
from cascade_platform.procs import ServiceProcess, free_port, health_status
from sec_procs import build_registry, call, metric_value, outcome, recommend_future, scrape, start_router, trailing

pytestmark = [pytest.mark.security, pytest.mark.integration]

BURST = 4


@pytest.fixture(scope="module")
def registry_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_registry(tmp_path_factory.mktemp("artifacts")).root


@pytest.fixture(scope="module")
def api_router(tmp_path_factory: pytest.TempPathFactory, registry_root: Path) -> Iterator[tuple[ServiceProcess, dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("api_router")
    keys = {c: new_api_key() for c in ("storefront", "mobile", "burst-a", "burst-b")}
    # The keys file holds hashes only (scrypt for some clients, sha256 for others).
    doc = {c: hash_api_key(k, "sha256" if c in ("mobile", "burst-b") else "scrypt") for c, k in keys.items()}
    (tmp / "keys.yaml").write_text(json.dumps({"clients": doc}))
    metrics_port = free_port()
    proc = start_router(
        tmp, registry_root,
        CASCADE_METRICS_PORT=str(metrics_port),
        CASCADE_AUTH__MODE="api_key",
        CASCADE_AUTH__API_KEYS_FILE=str(tmp / "keys.yaml"),
        CASCADE_RATE_LIMIT__ENABLED="true",
        CASCADE_RATE_LIMIT__DEFAULT__RATE_PER_S="1000",
        CASCADE_RATE_LIMIT__DEFAULT__BURST="1000",
        # burst-a: 4 calls at once, then one per 100 s (no refill during the test).
        CASCADE_RATE_LIMIT__CLIENTS=json.dumps({"burst-a": {"rate_per_s": 0.01, "burst": BURST}}),
    )
    proc.metrics_port = metrics_port  # type: ignore[attr-defined]
    try:
        yield proc, keys
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def api_stub(api_router) -> Iterator[router_pb2_grpc.RecommendationServiceStub]:
    with grpc.insecure_channel(api_router[0].target) as ch:
        yield router_pb2_grpc.RecommendationServiceStub(ch)


def test_health_needs_no_credential(api_router) -> None:
    assert health_status(api_router[0].target) == "SERVING"


@pytest.mark.parametrize(
    "md, msg",
    [
        ((), "missing credential"),
        ((("authorization", "Bearer cas_000000000000_not-a-real-key-at-all"),), "unknown API key"),
        ((("x-api-key", "some-random-string"),), "unknown API key"),
        ((("authorization", "Basic dXNlcjpwYXNz"),), "missing credential"),
    ],
)
def test_missing_or_wrong_key_is_unauthenticated(api_stub, md, msg: str) -> None:
    code, err = call(api_stub, md)
    assert code == grpc.StatusCode.UNAUTHENTICATED, err
    assert msg in err.details()


def test_valid_keys_are_accepted(api_router, api_stub) -> None:
    _, keys = api_router
    for md in ((("authorization", f"Bearer {keys['storefront']}"),), (("x-api-key", keys["mobile"]),)):
        code, resp = call(api_stub, md)
        assert code == grpc.StatusCode.OK, resp
        assert len(resp.items) == 3
    # A key of one client never authenticates as another: the keys file is per client.
    text = scrape(api_router[0].metrics_port)
    assert metric_value(text, "cascade_authenticated_requests_total", 'client="storefront",service="router"') >= 1
    assert metric_value(text, "cascade_authenticated_requests_total", 'client="mobile",service="router"') >= 1
    assert metric_value(text, "cascade_auth_failures_total", 'reason="missing",service="router"') >= 1


def test_burst_5x_over_limit_is_refused_while_another_client_is_unaffected(api_router, api_stub) -> None:
    """burst-a sends 5x its burst at once; burst-b sends as many at the same time."""
    _, keys = api_router
    a_md = (("x-api-key", keys["burst-a"]),)
    b_md = (("authorization", f"Bearer {keys['burst-b']}"),)
    t0 = time.monotonic()
    futs = []
    for _ in range(5 * BURST):  # interleaved: both clients' calls are in flight together
        futs.append(("a", recommend_future(api_stub, a_md)))
        futs.append(("b", recommend_future(api_stub, b_md)))
    results = [(who, *outcome(f)) for who, f in futs]
    elapsed = time.monotonic() - t0
    a = Counter(code for who, code, _ in results if who == "a")
    b = Counter(code for who, code, _ in results if who == "b")
    assert b == {grpc.StatusCode.OK: 5 * BURST}, b
    # Exactly the burst gets through (plus what 0.01/s may refill while the test runs).
    assert BURST <= a[grpc.StatusCode.OK] <= BURST + int(elapsed * 0.01) + 1, a
    assert a[grpc.StatusCode.RESOURCE_EXHAUSTED] == 5 * BURST - a[grpc.StatusCode.OK], a
    for who, code, err in results:
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            md = trailing(err)
            assert 0 < float(md["retry-after-s"]) <= 100.0, md
            assert int(md["retry-after"]) >= 1
            assert "rate limit exceeded for client 'burst-a'" in err.details()
            assert "retry in" in err.details()
    refused = a[grpc.StatusCode.RESOURCE_EXHAUSTED]
    text = scrape(api_router[0].metrics_port)
    assert metric_value(text, "cascade_rate_limited_total", 'client="burst-a"') == refused
    assert metric_value(text, "cascade_rate_limited_total", 'client="burst-b"') == 0


# -- JWT ------------------------------------------------------------------------------------------------------

ISS, AUD = "https://idp.example.test/", "cascade-recommend"


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory):
    from test_auth_unit import Idp  # noqa: PLC0415 - the same test identity provider

    return Idp(tmp_path_factory.mktemp("idp"))


@pytest.fixture(scope="module")
def jwt_stub(tmp_path_factory: pytest.TempPathFactory, registry_root: Path, idp) -> Iterator[router_pb2_grpc.RecommendationServiceStub]:
    tmp = tmp_path_factory.mktemp("jwt_router")
    proc = start_router(
        tmp, registry_root,
        CASCADE_AUTH__MODE="jwt",
        CASCADE_AUTH__JWT__JWKS_FILE=str(idp.jwks_file),
        CASCADE_AUTH__JWT__ISSUER=ISS,
        CASCADE_AUTH__JWT__AUDIENCE=AUD,
    )
    try:
        with grpc.insecure_channel(proc.target) as ch:
            yield router_pb2_grpc.RecommendationServiceStub(ch)
    finally:
        proc.stop()


def test_jwt_valid_is_accepted(jwt_stub, idp) -> None:
    code, resp = call(jwt_stub, (("authorization", f"Bearer {idp.token()}"),))
    assert code == grpc.StatusCode.OK, resp


@pytest.mark.parametrize(
    "claims, msg",
    [
        ({"exp": -60}, "JWT expired"),
        ({"aud": "someone-else"}, "wrong audience"),
        ({"iss": "https://evil.test/"}, "wrong issuer"),
    ],
)
def test_jwt_expired_or_wrong_audience_is_unauthenticated(jwt_stub, idp, claims: dict, msg: str) -> None:
    if "exp" in claims:
        claims = {"exp": int(time.time()) + claims["exp"], "iat": int(time.time()) - 600}
    code, err = call(jwt_stub, (("authorization", f"Bearer {idp.token(**claims)}"),))
    assert code == grpc.StatusCode.UNAUTHENTICATED, err
    assert msg in err.details()


def test_jwt_missing_or_forged_is_unauthenticated(jwt_stub, idp) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    code, err = call(jwt_stub)
    assert code == grpc.StatusCode.UNAUTHENTICATED and "missing credential" in err.details()
    forged = idp.token(key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    code, err = call(jwt_stub, (("authorization", f"Bearer {forged}"),))
    assert code == grpc.StatusCode.UNAUTHENTICATED and "signature does not verify" in err.details()
