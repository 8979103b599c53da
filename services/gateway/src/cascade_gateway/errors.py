"""Error mapping: gRPC status codes of the router -> HTTP statuses, and JSON-body problems -> 400.

Every error body is ``{"error": {"code": <gRPC-style code>, "message": <what to fix>}}``; messages of
invalid arguments start with the field to fix (``"num_items: must be between 1 and 200 ..."``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import grpc
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 503,
    grpc.StatusCode.CANCELLED: 503,
}
# Anything else (INTERNAL, UNKNOWN, UNIMPLEMENTED, ...) is the router's fault: 502 Bad Gateway.
DEFAULT_UPSTREAM_STATUS = 502


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class ApiError(Exception):
    """An error answered as JSON with ``status``; ``headers`` e.g. Retry-After."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def from_rpc_error(e: grpc.aio.AioRpcError, target: str) -> ApiError:
    code = e.code()
    status = HTTP_STATUS.get(code, DEFAULT_UPSTREAM_STATUS)
    detail = e.details() or code.name
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
        detail = f"recommendations unavailable: router {target} {code.name}: {detail}"
    headers: dict[str, str] = {}
    if code == grpc.StatusCode.UNAUTHENTICATED:
        headers["WWW-Authenticate"] = 'Bearer realm="cascade"'  # RFC 9110: a 401 names its scheme
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        for k, v in e.trailing_metadata() or ():
            if k == "retry-after-s":
                try:
                    headers["Retry-After"] = str(max(1, math.ceil(float(v))))
                except ValueError:
                    pass
    return ApiError(status, code.name, detail, headers)


def format_validation_errors(errors: Sequence[Any], content_type: str = "application/json") -> str:
    """Pydantic/FastAPI errors as ``"<field>: <problem>"`` joined by ``"; "``.

    ``body`` names the whole body (not JSON, not an object, missing).
    """
    parts = []
    for err in errors:
        loc = [str(x) for x in err.get("loc", ()) if x != "body"]
        kind = err.get("type")
        if kind == "json_invalid":
            parts.append(f"body: invalid JSON ({err.get('ctx', {}).get('error', 'parse error')})")
            continue
        field = ".".join(loc) or "body"
        msg = err.get("msg", "invalid value")
        if kind == "extra_forbidden":
            msg = "unknown field"
        elif field == "body" and kind in ("missing", "model_attributes_type", "dict_type"):
            if "json" not in content_type.lower():
                got = content_type or "none"
                msg = f"expected a JSON object with Content-Type: application/json, got {got!r}"
            else:
                msg = "must be a JSON object" if kind != "missing" else "required: a JSON object"
        parts.append(f"{field}: {msg}")
    return "; ".join(parts) or "body: invalid request"


MAX_MESSAGE_CHARS = 2000


def error_response(err: ApiError) -> JSONResponse:
    # Messages may quote the request (an unknown field's name): JSON bodies may carry lone surrogates
    # (json.loads accepts them), which no UTF-8 response can hold; and a quote must stay bounded.
    message = err.message.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 3] + "..."
    body = ErrorBody(error=ErrorDetail(code=err.code, message=message))
    return JSONResponse(body.model_dump(), status_code=err.status, headers=err.headers)


async def api_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    message = format_validation_errors(exc.errors(), request.headers.get("content-type", ""))
    return error_response(ApiError(400, "INVALID_ARGUMENT", message))


# Starlette/FastAPI's own HTTP errors (a body FastAPI cannot parse, unknown path, wrong method) in the
# same error body as every other answer.
_HTTP_ERROR_CODES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                     405: "UNIMPLEMENTED", 413: "INVALID_ARGUMENT", 415: "INVALID_ARGUMENT",
                     429: "RESOURCE_EXHAUSTED"}
_UNPARSEABLE = "There was an error parsing the body"  # FastAPI: json.loads raised other than JSONDecodeError


async def http_error_handler(request: Request, exc: Exception) -> JSONResponse:
    from starlette.exceptions import HTTPException

    assert isinstance(exc, HTTPException)
    message = str(exc.detail)
    if exc.status_code == 400 and message == _UNPARSEABLE:
        message = "body: invalid JSON (nested too deeply, or a number past the 4300-digit limit)"
    code = _HTTP_ERROR_CODES.get(exc.status_code, "INTERNAL" if exc.status_code >= 500 else "FAILED_PRECONDITION")
    return error_response(ApiError(exc.status_code, code, message, dict(exc.headers or {})))
