"""Validation of a RecommendRequest into a pipeline :class:`~cascade_core.stages.Query`.

Every rejection is an :class:`InvalidArgumentError` whose message starts with the field to fix.
"""

from __future__ import annotations

import uuid

from cascade.router.v1 import router_pb2
from cascade_core.errors import InvalidArgumentError
from cascade_core.stages import Query

MAX_USER_ID_CHARS = 128
DEFAULT_NUM_ITEMS = 10
MAX_NUM_ITEMS = 200
MAX_EXCLUDE_ITEMS = 1000
MAX_ITEM_ID_CHARS = 128
MAX_CONTEXT_ENTRIES = 64
MAX_CONTEXT_KEY_CHARS = 128
MAX_CONTEXT_VALUE_CHARS = 1024
MAX_REQUEST_ID_CHARS = 128


def _check_user_id(user_id: str) -> None:
    if not user_id:
        raise InvalidArgumentError("user_id", "required, got an empty string")
    if not user_id.strip():
        raise InvalidArgumentError("user_id", "must not be only whitespace")
    if len(user_id) > MAX_USER_ID_CHARS:
        raise InvalidArgumentError(
            "user_id", f"must be at most {MAX_USER_ID_CHARS} characters, got {len(user_id)}"
        )


def _num_items(n: int) -> int:
    if n == 0:
        return DEFAULT_NUM_ITEMS
    if not 1 <= n <= MAX_NUM_ITEMS:
        raise InvalidArgumentError(
            "num_items", f"must be between 1 and {MAX_NUM_ITEMS} (0 means {DEFAULT_NUM_ITEMS}), got {n}"
        )
    return n


def _exclude(ids: list[str]) -> frozenset[str]:
    if len(ids) > MAX_EXCLUDE_ITEMS:
        raise InvalidArgumentError(
            "exclude_item_ids", f"at most {MAX_EXCLUDE_ITEMS} ids allowed, got {len(ids)}"
        )
    for i, item_id in enumerate(ids):
        if not item_id or len(item_id) > MAX_ITEM_ID_CHARS:
            raise InvalidArgumentError(
                "exclude_item_ids",
                f"entry {i} must be 1-{MAX_ITEM_ID_CHARS} characters, got {len(item_id)}",
            )
    return frozenset(ids)


def _context(ctx: dict[str, str]) -> dict[str, str]:
    if len(ctx) > MAX_CONTEXT_ENTRIES:
        raise InvalidArgumentError(
            "context", f"at most {MAX_CONTEXT_ENTRIES} entries allowed, got {len(ctx)}"
        )
    for k, v in ctx.items():
        if not k or len(k) > MAX_CONTEXT_KEY_CHARS:
            raise InvalidArgumentError(
                "context", f"keys must be 1-{MAX_CONTEXT_KEY_CHARS} characters, got one of {len(k)}"
            )
        if len(v) > MAX_CONTEXT_VALUE_CHARS:
            raise InvalidArgumentError(
                "context",
                f"value of {k!r} must be at most {MAX_CONTEXT_VALUE_CHARS} characters, got {len(v)}",
            )
    return dict(ctx)


def _request_id(rid: str, fallback: str) -> str:
    if len(rid) > MAX_REQUEST_ID_CHARS:
        raise InvalidArgumentError(
            "request_id", f"must be at most {MAX_REQUEST_ID_CHARS} characters, got {len(rid)}"
        )
    if rid and not rid.isprintable():
        raise InvalidArgumentError("request_id", "must contain printable characters only")
    if not rid.isascii():  # it travels on as the x-request-id header: gRPC metadata values are ASCII
        raise InvalidArgumentError("request_id", "must be ASCII (it is propagated as the x-request-id header)")
    return rid or fallback or uuid.uuid4().hex


def to_query(
    req: router_pb2.RecommendRequest, *, deadline: float | None = None, generated_request_id: str = ""
) -> Query:
    """Validate ``req``; ``generated_request_id`` is used when the request carries none."""
    _check_user_id(req.user_id)
    return Query(
        user_id=req.user_id,
        num_items=_num_items(req.num_items),
        request_id=_request_id(req.request_id, generated_request_id),
        exclude_item_ids=_exclude(list(req.exclude_item_ids)),
        context=_context(dict(req.context)),
        deadline=deadline,
    )
