"""The v1 event contract: accepted shapes, and the precise reason of every rejection."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from cascade_stream.decode import Rules, decode
from cascade_stream.events import (
    MAX_EVENT_BYTES,
    InvalidEvent,
    check_event_time,
    parse_event,
    validate_event,
)
from cascade_stream.producer import BatchRejected, prepare

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[3] / "services/stream/schemas/user-event.v1.json").read_text()
)
EID = "0b9a4c52-5f5e-4d59-9e3a-0f3f1e0c8a11"
TS = 1_714_564_800_000  # 2024-05-01T12:00:00Z


def good(**over) -> dict:
    ev = {"event_id": EID, "event_type": "click", "user_id": "7", "item_id": "42", "timestamp": TS}
    ev.update(over)
    return {k: v for k, v in ev.items() if v is not ...}


def reason(doc) -> str:
    with pytest.raises(InvalidEvent) as exc:
        if isinstance(doc, bytes):
            parse_event(doc)
        else:
            validate_event(doc)
    return exc.value.reason


def test_minimal_event_is_normalized():
    ev = validate_event(good(event_id=EID.upper()))
    assert ev.event_id == EID
    assert ev.timestamp == TS and ev.type_index == 2
    assert json.loads(ev.to_json_bytes()) == good()


@pytest.mark.parametrize(
    "ts,want",
    [
        ("2024-05-01T12:00:00Z", TS),
        ("2024-05-01T12:00:00.250Z", TS + 250),
        ("2024-05-01T14:00:00+02:00", TS),
        ("2024-05-01 12:00:00.5z", TS + 500),
        (float(TS), TS),
    ],
)
def test_timestamp_forms(ts, want):
    assert validate_event(good(timestamp=ts)).timestamp == want


@pytest.mark.parametrize(
    "doc,want",
    [
        (good(event_id=...), "event_id: required field missing"),
        (good(user_id=...), "user_id: required field missing"),
        (
            good(event_type="like"),
            "event_type: unknown event type 'like' (expected one of impression, view, click, "
            "add_to_cart, purchase)",
        ),
        (good(event_type=3), "event_type: must be a string, got int"),
        (good(event_id="abc"), "event_id: 'abc' is not a UUID (8-4-4-4-12 hex digits)"),
        (good(user_id=7), "user_id: must be a string, got int"),
        (good(item_id="  "), "item_id: must be a non-empty string"),
        (good(item_id="a\nb"), "item_id: contains control characters"),
        (good(item_id="x" * 300), "item_id: longer than 256 characters"),
        (
            good(timestamp=TS // 1000),
            f"timestamp: {TS // 1000} looks like epoch seconds; send epoch milliseconds",
        ),
        (good(timestamp=12), "timestamp: 12 is before 2000-01-01 (epoch milliseconds expected)"),
        (
            good(timestamp=True),
            "timestamp: must be epoch milliseconds (integer) or an RFC 3339 string, got a boolean",
        ),
        (
            good(timestamp=1.5e12 + 0.5),
            "timestamp: epoch milliseconds must be an integer, got 1500000000000.5",
        ),
        (
            good(timestamp="2024-05-01T12:00:00"),
            "timestamp: '2024-05-01T12:00:00' is not RFC 3339 (e.g. "
            "2024-05-01T12:00:00.123Z; a zone is required)",
        ),
        (
            good(timestamp="2024-13-01T12:00:00Z"),
            "timestamp: '2024-13-01T12:00:00Z' is not a valid date-time (month must be in 1..12)",
        ),
        (good(context={"page": 3}), "context: value of 'page' must be a string, got int"),
        (good(context=[1]), "context: must be an object of string values, got list"),
        (good(request_id=""), "request_id: must be a non-empty string"),
        (
            good(colour="red"),
            "colour: unknown field (the v1 contract has event_id, event_type, user_id, item_id, "
            "timestamp, request_id, context)",
        ),
        ([good()], "payload: must be a JSON object, got an array"),
        ("click", "payload: must be a JSON object, got a string"),
    ],
)
def test_rejection_reasons(doc, want):
    assert reason(doc) == want


def test_payload_reasons():
    assert (
        reason(b"{not json") == "payload: invalid JSON (Expecting property name enclosed in double quotes "
        "at line 1 column 2)"
    )
    assert reason(b'{"a": "\xff"}') == "payload: not UTF-8 (invalid start byte at byte 7)"
    big = json.dumps(good()).encode() + b" " * MAX_EVENT_BYTES  # valid JSON, too many bytes
    assert reason(big) == f"payload: {len(big)} bytes exceeds the {MAX_EVENT_BYTES}-byte limit"
    with pytest.raises(InvalidEvent, match="empty message"):
        parse_event(None)


def test_event_time_bounds_and_key():
    ev = validate_event(good())
    check_event_time(ev, TS + 3_600_000, 3_600_000, 300_000)  # exactly at the bound: accepted
    with pytest.raises(InvalidEvent, match=r"timestamp: .* 3601s before ingestion"):
        check_event_time(ev, TS + 3_601_000, 3_600_000, 300_000)
    with pytest.raises(InvalidEvent, match=r"timestamp: .* 301s after ingestion"):
        check_event_time(ev, TS - 301_000, 3_600_000, 300_000)
    raw = json.dumps(good()).encode()
    assert decode(raw, b"7", TS, Rules("user_id")).user_id == "7"
    assert decode(raw, b"42", TS, Rules("item_id")).item_id == "42"
    with pytest.raises(InvalidEvent) as exc:
        decode(raw, b"8", TS, Rules("user_id"))
    assert (
        exc.value.reason
        == "key: message key '8' must equal user_id '7' (the topic is partitioned by user_id)"
    )
    with pytest.raises(InvalidEvent, match="key: message key none"):
        decode(raw, None, TS, Rules("user_id"))


def test_batch_rejection_names_index_and_field():
    with pytest.raises(BatchRejected) as exc:
        prepare([good(), good(event_type="like")], now_ms=TS)
    assert exc.value.index == 1
    assert str(exc.value).startswith("events[1].event_type: unknown event type 'like'")
    with pytest.raises(BatchRejected, match=r"events\[0\]\.timestamp: .* before ingestion"):
        prepare([good()], now_ms=TS + 10 * 3_600_000)
    assert [e.user_id for e in prepare([good(), good(user_id="8")], now_ms=TS)] == ["7", "8"]


# The published JSON Schema and the pydantic model agree on these documents.
SCHEMA_CASES = [
    (good(), True),
    (good(timestamp="2024-05-01T12:00:00.123Z", request_id="r-1", context={"page": "home"}), True),
    (good(request_id=None, context=None), True),
    (good(event_id=...), False),
    (good(event_type="like"), False),
    (good(user_id=7), False),
    (good(user_id=" "), False),
    (good(item_id="a\tb"), False),
    (good(timestamp=TS // 1000), False),
    (good(timestamp="2024-05-01T12:00:00"), False),
    (good(context={"a": 1}), False),
    (good(extra=1), False),
    (good(event_id="not-a-uuid"), False),
]


@pytest.mark.parametrize("doc,ok", SCHEMA_CASES)
def test_schema_and_model_agree(doc, ok):
    schema_ok = jsonschema.Draft202012Validator(SCHEMA).is_valid(doc)
    try:
        validate_event(doc)
        model_ok = True
    except InvalidEvent:
        model_ok = False
    assert (schema_ok, model_ok) == (ok, ok)


def test_schema_is_valid_draft_2020_12():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_contract_event_types_match_the_feature_views():
    from cascade_features.stream_definitions import EVENT_TYPES as VIEW_TYPES
    from cascade_stream.events import EVENT_TYPES, EventType

    assert EVENT_TYPES == VIEW_TYPES == tuple(t.value for t in EventType)
    assert SCHEMA["properties"]["event_type"]["enum"] == list(EVENT_TYPES)


def test_producer_side_modules_do_not_need_the_worker_dependencies():
    """The gateway and CLI import the contract, SDK and settings without Feast or cascade-features."""
    import subprocess
    import sys

    code = (
        "import sys; import cascade_stream.producer, cascade_stream.settings, cascade_stream.events; "
        "bad = [m for m in ('cascade_features', 'feast', 'cascade_platform', 'pandas') if m in sys.modules]; "
        "sys.exit(f'imported {bad}' if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
