"""The HTTP gateway as a real uvicorn process in front of a real router process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cascade_core.registry import Registry
from cascade_platform.procs import ServiceProcess
from router_fixture_registry import VERSION, popular_ids
from router_procs import HttpProcess, closed_target, metric_value, start_gateway

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, router_all_down: ServiceProcess
) -> Iterator[HttpProcess]:
    gw = start_gateway(tmp_path_factory.mktemp("gateway"), router_all_down.target)
    try:
        yield gw
    finally:
        gw.stop()


def test_post_recommendations(gateway: HttpProcess, artifacts: Registry):
    popular = popular_ids(artifacts)
    status, body, _ = gateway.request(
        "POST",
        "/v1/recommendations",
        {
            "user_id": "1",
            "num_items": 3,
            "exclude_item_ids": [popular[0]],
            "context": {"page": "home"},
            "request_id": "gw-1",
        },
    )
    assert status == 200, body
    assert body["request_id"] == "gw-1"
    assert body["variant"] == "control"
    assert body["model_version"] == f"{VERSION}+retrieval-order"
    assert body["degraded"] is True
    assert [i["item_id"] for i in body["items"]] == popular[1:4]
    assert [i["rank"] for i in body["items"]] == [1, 2, 3]
    assert set(body["items"][0]) == {"item_id", "score", "rank", "source"}
    assert {i["source"] for i in body["items"]} == {"popular"}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"user_id": "1", "num_items": 500}, "num_items: must be between 1 and 200 (0 means 10), got 500"),
        ({"user_id": ""}, "user_id: required, got an empty string"),
        ({"user_id": "1", "num_items": "ten"}, "num_items: Input should be a valid integer"),
        ({"user_id": 5}, "user_id: Input should be a valid string"),
        ({"num_items": 3}, "user_id: Field required"),
        ({"user_id": "1", "context": {"page": 3}}, "context.page: Input should be a valid string"),
        ({"user_id": "1", "numItems": 3}, "numItems: unknown field"),
        (["not", "an", "object"], "body: must be a JSON object"),
    ],
)
def test_bad_requests_are_400_naming_the_field(gateway: HttpProcess, payload, message):
    status, body, _ = gateway.request("POST", "/v1/recommendations", payload)
    assert status == 400, body
    assert body["error"]["code"] == "INVALID_ARGUMENT"
    assert body["error"]["message"].startswith(message), body


def test_invalid_json_is_400(gateway: HttpProcess):
    status, body, _ = gateway.request("POST", "/v1/recommendations", raw=b'{"user_id": "1",')
    assert status == 400
    assert body["error"]["message"].startswith("body: invalid JSON")


def test_body_without_json_content_type_is_400(gateway: HttpProcess):
    status, body, _ = gateway.request(
        "POST",
        "/v1/recommendations",
        raw=b'{"user_id": "1"}',
        content_type="application/x-www-form-urlencoded",
    )
    assert status == 400
    assert body["error"]["message"] == (
        "body: expected a JSON object with Content-Type: application/json, "
        "got 'application/x-www-form-urlencoded'"
    )
    status, body, _ = gateway.request("POST", "/v1/recommendations", raw=b"")
    assert status == 400
    assert body["error"]["message"] == "body: required: a JSON object"


def test_docs_health_and_metrics(gateway: HttpProcess):
    status, html, _ = gateway.request("GET", "/docs")
    assert status == 200 and "swagger" in html.lower()
    status, spec, _ = gateway.request("GET", "/openapi.json")
    assert status == 200 and "/v1/recommendations" in spec["paths"]
    assert gateway.request("GET", "/healthz")[:2] == (200, {"status": "ok", "router": "SERVING"})
    gateway.request("POST", "/v1/recommendations", {"user_id": "m"})
    status, text, _ = gateway.request("GET", "/metrics")
    assert status == 200
    labels = 'method="POST",route="/v1/recommendations",status="200"'
    assert metric_value(text, "cascade_gateway_http_requests_total", labels) >= 1


def test_router_down_is_503(tmp_path: Path):
    gw = start_gateway(tmp_path, closed_target())
    try:
        status, body, _ = gw.request("POST", "/v1/recommendations", {"user_id": "1"})
        assert status == 503, body
        assert body["error"]["code"] == "UNAVAILABLE"
        assert "router" in body["error"]["message"]
        status, body, _ = gw.request("GET", "/healthz")
        assert (status, body) == (503, {"status": "unavailable", "router": "UNREACHABLE"})
    finally:
        gw.stop()
