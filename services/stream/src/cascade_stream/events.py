"""The user-event contract (v1): the pydantic model, its validator, and time-bound checks.

One JSON object per Kafka message on ``user-events``, keyed by ``user_id``; the published JSON Schema is
``services/stream/schemas/user-event.v1.json`` (documented in ``docs/events.md``). Every rejection
carries a precise reason ``"<field>: <problem>"`` (``payload`` for the message as a whole); the worker
puts it in the ``x-dlq-reason`` header of the dead letter, the HTTP endpoint in its 400 body.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# Kept equal to cascade_features.stream_definitions.EVENT_TYPES (a unit test checks): this module stays
# importable without the worker's dependencies (the gateway and CLI use it).
EVENT_TYPES: tuple[str, ...] = ("impression", "view", "click", "add_to_cart", "purchase")
SCHEMA_ID = "https://cascade.dev/schemas/user-event.v1.json"
MAX_EVENT_BYTES = 64 * 1024
MAX_ID_LEN = 256
MAX_CONTEXT_ENTRIES = 64
MAX_CONTEXT_VALUE_LEN = 1024
# Epoch-millisecond bounds: 2000-01-01 .. 2100-01-01. Smaller values are almost always epoch seconds.
MIN_TS_MS = 946_684_800_000
MAX_TS_MS = 4_102_444_800_000
_CONTROL_RE = re.compile(r"[\x00-\x1f]")
_PLAIN_NAME_RE = re.compile(r"[A-Za-z0-9_.\-]{1,80}")
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
RFC3339_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")


class EventType(str, Enum):
    impression = "impression"
    view = "view"
    click = "click"
    add_to_cart = "add_to_cart"
    purchase = "purchase"


assert tuple(t.value for t in EventType) == EVENT_TYPES, "event types must match the feature contract"
TYPE_INDEX: dict[str, int] = {t: i for i, t in enumerate(EVENT_TYPES)}


MAX_REASON_CHARS = 1000
# The fields a rejection may name (DLQ header x-dlq-field, metric label): a bounded set, whatever the input.
REASON_FIELDS = frozenset(
    {"payload", "key", "event_id", "event_type", "user_id", "item_id", "timestamp", "request_id", "context"}
)


def _clean_text(s: str) -> str:
    """``s`` as valid UTF-8 text (lone surrogates escaped), at most ``MAX_REASON_CHARS``."""
    s = s.encode("utf-8", "backslashreplace").decode("utf-8")
    return s if len(s) <= MAX_REASON_CHARS else s[: MAX_REASON_CHARS - 3] + "..."


class InvalidEvent(ValueError):
    """An event that breaks the contract; ``reason`` is ``"<field>: <problem>"``.

    ``reason`` is always encodable UTF-8 of bounded length and ``field`` one of
    :data:`REASON_FIELDS`: both go into Kafka headers and ``field`` into a metric label, so input
    bytes (an unknown 60 KiB key, a lone surrogate) must never reach them verbatim.
    """

    def __init__(self, reason: str, field: str = "payload") -> None:
        reason = _clean_text(reason)
        super().__init__(reason)
        self.reason = reason
        self.field = field if field in REASON_FIELDS else "payload"


def _is_unicode(s: str) -> bool:
    """False for strings with lone surrogates (JSON ``"\\ud800"``): not Unicode text, not UTF-8-encodable."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_id(v: Any, field: str) -> str:
    if not isinstance(v, str):
        raise ValueError(f"must be a string, got {type(v).__name__}")
    if not v or not v.strip():
        raise ValueError("must be a non-empty string")
    if len(v) > MAX_ID_LEN:
        raise ValueError(f"longer than {MAX_ID_LEN} characters")
    if _CONTROL_RE.search(v):
        raise ValueError("contains control characters")
    if not _is_unicode(v):
        raise ValueError("contains a lone surrogate (not valid Unicode text)")
    return v


def parse_timestamp(v: Any) -> int:
    """Epoch milliseconds (integer) or an RFC 3339 string with a zone -> epoch milliseconds."""
    if isinstance(v, bool):
        raise ValueError("must be epoch milliseconds (integer) or an RFC 3339 string, got a boolean")
    if isinstance(v, float):
        if not v.is_integer():
            raise ValueError(f"epoch milliseconds must be an integer, got {v!r}")
        v = int(v)
    if isinstance(v, int):
        if v < MIN_TS_MS:
            if MIN_TS_MS // 1000 <= v < MAX_TS_MS // 1000:
                raise ValueError(f"{v} looks like epoch seconds; send epoch milliseconds")
            raise ValueError(f"{v} is before 2000-01-01 (epoch milliseconds expected)")
        if v >= MAX_TS_MS:
            raise ValueError(f"{v} is after 2100-01-01 (epoch milliseconds expected)")
        return v
    if isinstance(v, str):
        if not RFC3339_RE.match(v):
            raise ValueError(f"{v!r} is not RFC 3339 (e.g. 2024-05-01T12:00:00.123Z; a zone is required)")
        try:
            dt = datetime.fromisoformat(v.replace("z", "Z").replace("t", "T"))
        except ValueError as e:
            raise ValueError(f"{v!r} is not a valid date-time ({e})") from None
        return parse_timestamp(int(dt.timestamp() * 1000 // 1))
    raise ValueError(f"must be epoch milliseconds (integer) or an RFC 3339 string, got {type(v).__name__}")


class UserEvent(BaseModel):
    """One storefront event. ``timestamp`` is normalized to epoch milliseconds (UTC)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: str = Field(description="UUID; the de-duplication key (producers resend the same id).")
    event_type: EventType
    user_id: str
    item_id: str
    timestamp: int = Field(description="When it happened: epoch ms, or RFC 3339 on input.")
    request_id: str | None = Field(None, description="Recommend request_id this event is attributed to.")
    context: dict[str, str] | None = None

    @field_validator("event_id", mode="before")
    @classmethod
    def _event_id(cls, v: Any) -> str:
        if not isinstance(v, str):
            raise ValueError(f"must be a UUID string, got {type(v).__name__}")
        if not UUID_RE.match(v):
            raise ValueError(f"{v[:80]!r} is not a UUID (8-4-4-4-12 hex digits)")
        return v.lower()

    @field_validator("event_type", mode="before")
    @classmethod
    def _event_type(cls, v: Any) -> Any:
        if not isinstance(v, str):
            raise ValueError(f"must be a string, got {type(v).__name__}")
        if v not in TYPE_INDEX:
            raise ValueError(f"unknown event type {v[:80]!r} (expected one of {', '.join(EVENT_TYPES)})")
        return v

    @field_validator("user_id", "item_id", mode="before")
    @classmethod
    def _ids(cls, v: Any, info: Any) -> str:
        return _check_id(v, info.field_name)

    @field_validator("request_id", mode="before")
    @classmethod
    def _request_id(cls, v: Any) -> Any:
        return None if v is None else _check_id(v, "request_id")

    @field_validator("timestamp", mode="before")
    @classmethod
    def _timestamp(cls, v: Any) -> int:
        return parse_timestamp(v)

    @field_validator("context", mode="before")
    @classmethod
    def _context(cls, v: Any) -> Any:
        if v is None:
            return None
        if not isinstance(v, dict):
            raise ValueError(f"must be an object of string values, got {type(v).__name__}")
        if len(v) > MAX_CONTEXT_ENTRIES:
            raise ValueError(f"has {len(v)} entries, at most {MAX_CONTEXT_ENTRIES} allowed")
        for k, val in v.items():
            if not isinstance(val, str):
                raise ValueError(f"value of {k[:80]!r} must be a string, got {type(val).__name__}")
            if len(val) > MAX_CONTEXT_VALUE_LEN:
                raise ValueError(f"value of {k[:80]!r} is longer than {MAX_CONTEXT_VALUE_LEN} characters")
            if not (_is_unicode(k) and _is_unicode(val)):
                raise ValueError(f"entry {k[:80]!r} contains a lone surrogate (not valid Unicode text)")
        return v

    @property
    def type_index(self) -> int:
        return TYPE_INDEX[self.event_type.value]

    def to_json_bytes(self) -> bytes:
        """Canonical JSON (timestamp as epoch ms, absent optionals omitted)."""
        return json.dumps(self.model_dump(mode="json", exclude_none=True), separators=(",", ":")).encode()


def _reason(e: ValidationError) -> InvalidEvent:
    err = e.errors(include_url=False)[0]
    loc = [str(x) for x in err.get("loc", ())]
    field = loc[0] if loc else "payload"
    kind = err.get("type", "")
    if kind == "missing":
        msg = "required field missing"
    elif kind == "extra_forbidden":
        msg = (
            "unknown field (the v1 contract has event_id, event_type, user_id, item_id, timestamp, "
            "request_id, context)"
        )
    else:
        msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    if len(loc) > 1:
        field = ".".join(loc)
    if field not in REASON_FIELDS:  # an unknown key or a context entry: input text, shown bounded
        field = field if _PLAIN_NAME_RE.fullmatch(field) else repr(field[:80])
    return InvalidEvent(f"{field}: {msg}", loc[0] if loc else "payload")


def validate_event(doc: Any) -> UserEvent:
    """Validate a decoded JSON value against the contract; raise :class:`InvalidEvent` with the reason."""
    if not isinstance(doc, dict):
        raise InvalidEvent(f"payload: must be a JSON object, got {_json_kind(doc)}")
    try:
        return UserEvent.model_validate(doc)
    except ValidationError as e:
        raise _reason(e) from None


def parse_event(raw: bytes | None, max_bytes: int = MAX_EVENT_BYTES) -> UserEvent:
    """Decode and validate one message value; raise :class:`InvalidEvent` with a precise reason."""
    if raw is None:
        raise InvalidEvent("payload: empty message (null value)")
    if len(raw) > max_bytes:
        raise InvalidEvent(f"payload: {len(raw)} bytes exceeds the {max_bytes}-byte limit")
    return validate_event(loads_json(raw, "payload"))


def loads_json(raw: bytes | str, field: str) -> Any:
    """``json.loads`` whose every failure is an :class:`InvalidEvent` naming ``field``: also nesting
    deeper than the recursion limit and integers past Python's digit limit, which ``json`` reports
    with ``RecursionError`` and a plain ``ValueError``."""
    try:
        return json.loads(raw)
    except UnicodeDecodeError as e:
        raise InvalidEvent(f"{field}: not UTF-8 ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise InvalidEvent(f"{field}: invalid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except RecursionError:
        raise InvalidEvent(f"{field}: invalid JSON (nested too deeply)") from None
    except ValueError as e:  # e.g. "Exceeds the limit (4300 digits) for integer string conversion"
        raise InvalidEvent(f"{field}: invalid JSON ({e})") from None


def check_event_time(event: UserEvent, ingest_ms: int, max_lateness_ms: int, max_future_ms: int) -> None:
    """Reject events too far before or after their ingestion time (the broker timestamp).

    Bounding lateness bounds the state a restarted worker must rebuild (see ``cascade_stream.replay``).
    """
    if event.timestamp < ingest_ms - max_lateness_ms:
        raise InvalidEvent(
            f"timestamp: {event.timestamp} is {(ingest_ms - event.timestamp) / 1000:.0f}s before ingestion "
            f"({ingest_ms}); at most {max_lateness_ms / 1000:.0f}s of lateness accepted",
            "timestamp",
        )
    if event.timestamp > ingest_ms + max_future_ms:
        raise InvalidEvent(
            f"timestamp: {event.timestamp} is {(event.timestamp - ingest_ms) / 1000:.0f}s after ingestion "
            f"({ingest_ms}); at most {max_future_ms / 1000:.0f}s of clock skew accepted",
            "timestamp",
        )


def check_key(event: UserEvent, key: bytes | None, key_field: str) -> None:
    """The topic is partitioned by ``key_field``: the message key must equal that field."""
    want = getattr(event, key_field)
    if key is None or key.decode("utf-8", "replace") != want:
        got = "none" if key is None else repr(key[:80].decode("utf-8", "replace"))
        raise InvalidEvent(
            f"key: message key {got} must equal {key_field} {want!r} "
            f"(the topic is partitioned by {key_field})",
            "key",
        )


def _json_kind(v: Any) -> str:
    if isinstance(v, list):
        return "an array"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    if v is None:
        return "null"
    return type(v).__name__


def new_event_id() -> str:
    return str(uuid.uuid4())
