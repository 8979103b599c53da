"""Request validation: every rejection names the field to fix."""

from __future__ import annotations

import re

import pytest
from cascade.router.v1 import router_pb2
from cascade_core.errors import InvalidArgumentError
from cascade_router.validation import to_query


def _req(**kw) -> router_pb2.RecommendRequest:
    kw.setdefault("user_id", "42")
    return router_pb2.RecommendRequest(**kw)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"user_id": ""}, "user_id: required, got an empty string"),
        ({"user_id": "   \t"}, "user_id: must not be only whitespace"),
        ({"user_id": "u" * 129}, "user_id: must be at most 128 characters, got 129"),
        ({"num_items": 500}, "num_items: must be between 1 and 200 (0 means 10), got 500"),
        ({"num_items": -1}, "num_items: must be between 1 and 200 (0 means 10), got -1"),
        (
            {"exclude_item_ids": [str(i) for i in range(1001)]},
            "exclude_item_ids: at most 1000 ids allowed, got 1001",
        ),
        ({"exclude_item_ids": ["ok", ""]}, "exclude_item_ids: entry 1 must be 1-128 characters, got 0"),
        ({"context": {f"k{i}": "v" for i in range(65)}}, "context: at most 64 entries allowed, got 65"),
        ({"context": {"k" * 129: "v"}}, "context: keys must be 1-128 characters, got one of 129"),
        (
            {"context": {"page": "x" * 1025}},
            "context: value of 'page' must be at most 1024 characters, got 1025",
        ),
        ({"request_id": "r" * 129}, "request_id: must be at most 128 characters, got 129"),
        ({"request_id": "bad\nid"}, "request_id: must contain printable characters only"),
    ],
)
def test_rejections_name_the_field(kwargs: dict, expected: str) -> None:
    with pytest.raises(InvalidArgumentError) as ei:
        to_query(_req(**kwargs))
    assert str(ei.value) == expected
    assert ei.value.field == expected.split(":", 1)[0]


def test_defaults_and_limits_accepted() -> None:
    q = to_query(_req(num_items=0, exclude_item_ids=[str(i) for i in range(1000)], context={"page": "home"}))
    assert q.num_items == 10
    assert len(q.exclude_item_ids) == 1000
    assert q.context == {"page": "home"}
    assert to_query(_req(num_items=200)).num_items == 200
    assert to_query(_req(user_id="u" * 128)).user_id == "u" * 128


def test_request_id_kept_or_generated() -> None:
    assert to_query(_req(request_id="abc-1")).request_id == "abc-1"
    assert to_query(_req(), generated_request_id="from-metadata").request_id == "from-metadata"
    generated = to_query(_req()).request_id
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    assert generated != to_query(_req()).request_id
