"""Gateway pure parts: gRPC -> HTTP status mapping, 400 messages naming the field, proto <-> JSON."""

from __future__ import annotations

import grpc
import pytest
from cascade.router.v1 import router_pb2
from cascade_gateway.errors import format_validation_errors, from_rpc_error
from cascade_gateway.schemas import RecommendationRequest, RecommendationResponse
from pydantic import ValidationError


class _RpcError(grpc.aio.AioRpcError):
    """A real AioRpcError as grpc.aio raises it (constructed, not mocked)."""

    def __init__(self, code: grpc.StatusCode, details: str, trailing=()) -> None:
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailing), details=details)


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 400),
        (grpc.StatusCode.NOT_FOUND, 404),
        (grpc.StatusCode.UNAVAILABLE, 503),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 503),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
        (grpc.StatusCode.UNAUTHENTICATED, 401),
        (grpc.StatusCode.INTERNAL, 502),
        (grpc.StatusCode.UNKNOWN, 502),
    ],
)
def test_status_mapping(code: grpc.StatusCode, status: int) -> None:
    err = from_rpc_error(_RpcError(code, "why"), "router:50051")
    assert err.status == status
    assert err.code == code.name
    assert "why" in err.message


def test_invalid_argument_message_passes_through_unchanged() -> None:
    msg = "num_items: must be between 1 and 200 (0 means 10), got 500"
    err = from_rpc_error(_RpcError(grpc.StatusCode.INVALID_ARGUMENT, msg), "r")
    assert (err.status, err.message) == (400, msg)


def test_unavailable_names_the_router() -> None:
    err = from_rpc_error(_RpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"), "10.0.0.1:50051")
    assert (
        err.message
        == "recommendations unavailable: router 10.0.0.1:50051 DEADLINE_EXCEEDED: Deadline Exceeded"
    )


def test_retry_after_from_trailing_metadata() -> None:
    err = from_rpc_error(
        _RpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down", [("retry-after-s", "1.200")]), "r"
    )
    assert err.headers == {"Retry-After": "2"}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ('{"num_items": 3}', "user_id: Field required"),
        ('{"user_id": "1", "num_items": "10"}', "num_items: Input should be a valid integer"),
        ('{"user_id": "1", "num_items": 1.5}', "num_items: Input should be a valid integer"),
        ('{"user_id": true}', "user_id: Input should be a valid string"),
        ('{"user_id": "1", "exclude_item_ids": [1]}', "exclude_item_ids.0: Input should be a valid string"),
        (
            '{"user_id": "1", "num_items": 99999999999}',
            "num_items: Input should be less than or equal to 2147483647",
        ),
        ('{"user_id": "1", "user": "x"}', "user: unknown field"),
    ],
)
def test_json_type_errors_name_the_field(payload: str, message: str) -> None:
    with pytest.raises(ValidationError) as ei:
        RecommendationRequest.model_validate_json(payload)
    errors = [{**e, "loc": ("body", *e["loc"])} for e in ei.value.errors()]
    assert format_validation_errors(errors) == message


def test_invalid_json_message() -> None:
    errors = [
        {
            "type": "json_invalid",
            "loc": ("body", 15),
            "msg": "JSON decode error",
            "ctx": {"error": "Expecting value"},
        }
    ]
    assert format_validation_errors(errors) == "body: invalid JSON (Expecting value)"


def test_whole_body_problems() -> None:
    not_object = [
        {"type": "model_attributes_type", "loc": ("body",), "msg": "Input should be a valid dictionary"}
    ]
    assert format_validation_errors(not_object) == "body: must be a JSON object"
    assert format_validation_errors(not_object, "text/plain") == (
        "body: expected a JSON object with Content-Type: application/json, got 'text/plain'"
    )
    missing = [{"type": "missing", "loc": ("body",), "msg": "Field required"}]
    assert format_validation_errors(missing) == "body: required: a JSON object"


def test_request_and_response_conversion() -> None:
    req = RecommendationRequest.model_validate_json(
        '{"user_id": "7", "num_items": 3, "context": {"page": "home"}, '
        '"exclude_item_ids": ["a"], "request_id": "r"}'
    ).to_proto()
    assert req == router_pb2.RecommendRequest(
        user_id="7", num_items=3, context={"page": "home"}, exclude_item_ids=["a"], request_id="r"
    )
    resp = router_pb2.RecommendResponse(
        request_id="r",
        model_version="v1",
        variant="control",
        degraded=False,
        items=[router_pb2.RecommendedItem(item_id="a", score=0.5, rank=1, source="ann")],
    )
    assert RecommendationResponse.from_proto(resp).model_dump() == {
        "request_id": "r",
        "model_version": "v1",
        "variant": "control",
        "degraded": False,
        "items": [{"item_id": "a", "score": 0.5, "rank": 1, "source": "ann"}],
    }
