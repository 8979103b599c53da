"""The HTTP gateway forwards the storefront's credentials, so the router authenticates and rate-limits the
storefront client (not the gateway): real gateway process → real router process in ``api_key`` mode."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cascade_core.registry import Registry
from cascade_platform.auth import hash_api_key, new_api_key
from router_procs import HttpProcess, start_gateway, start_router

pytestmark = [pytest.mark.integration, pytest.mark.security]

BURST = 3


@pytest.fixture(scope="module")
def keys() -> dict[str, str]:
    return {c: new_api_key() for c in ("storefront", "greedy")}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, artifacts: Registry, keys: dict[str, str]) -> Iterator[HttpProcess]:
    tmp = tmp_path_factory.mktemp("gateway_auth")
    (tmp / "keys.json").write_text(json.dumps({"clients": {c: hash_api_key(k, "sha256") for c, k in keys.items()}}))
    router = start_router(
        tmp, Path(artifacts.root),
        CASCADE_AUTH__MODE="api_key",
        CASCADE_AUTH__API_KEYS_FILE=str(tmp / "keys.json"),
        CASCADE_RATE_LIMIT__ENABLED="true",
        CASCADE_RATE_LIMIT__DEFAULT__RATE_PER_S="1000",
        CASCADE_RATE_LIMIT__DEFAULT__BURST="1000",
        CASCADE_RATE_LIMIT__CLIENTS=json.dumps({"greedy": {"rate_per_s": 0.01, "burst": BURST}}),
    )
    gw = start_gateway(tmp, router.target)
    try:
        yield gw
    finally:
        gw.stop()
        router.stop()


def _post(gw: HttpProcess, headers: dict[str, str]) -> tuple[int, object, dict]:
    return gw.request("POST", "/v1/recommendations", {"user_id": "1", "num_items": 3}, headers=headers)


def test_no_credential_is_401_with_the_routers_reason(gateway: HttpProcess) -> None:
    status, body, headers = _post(gateway, {})
    assert status == 401, body
    assert {k.lower(): v for k, v in headers.items()}["www-authenticate"].startswith("Bearer"), headers
    assert body["error"]["code"] == "UNAUTHENTICATED" and "missing credential" in body["error"]["message"]


def test_wrong_key_is_401(gateway: HttpProcess) -> None:
    status, body, _ = _post(gateway, {"Authorization": "Bearer cas_000000000000_wrong"})
    assert status == 401 and "unknown API key" in body["error"]["message"], body


@pytest.mark.parametrize("header", ["authorization", "x-api-key"])
def test_valid_key_is_forwarded(gateway: HttpProcess, keys: dict[str, str], header: str) -> None:
    value = f"Bearer {keys['storefront']}" if header == "authorization" else keys["storefront"]
    status, body, _ = _post(gateway, {header: value})
    assert status == 200, body
    assert len(body["items"]) == 3


def test_client_over_its_limit_gets_429_with_retry_after_and_others_do_not(
    gateway: HttpProcess, keys: dict[str, str]
) -> None:
    greedy = [_post(gateway, {"x-api-key": keys["greedy"]}) for _ in range(BURST * 2)]
    statuses = [s for s, _, _ in greedy]
    assert statuses[:BURST] == [200] * BURST and statuses[BURST:] == [429] * BURST, statuses
    _, body, headers = greedy[-1]
    assert body["error"]["code"] == "RESOURCE_EXHAUSTED" and "greedy" in body["error"]["message"], body
    assert int(headers["retry-after"]) >= 1, headers
    # the rate limit is per client: the storefront is unaffected
    assert all(_post(gateway, {"x-api-key": keys["storefront"]})[0] == 200 for _ in range(BURST * 2))
