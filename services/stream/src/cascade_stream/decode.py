"""Kafka message -> validated events: the one rule set used live, in replay and offline.

Two message formats:

``user-events`` (the public contract)
    one JSON event per message, keyed by ``user_id``; validated by :mod:`cascade_stream.events` plus
    the key and event-time checks of :class:`Rules`.
``user-events.by-item`` (internal, written by the ``users`` pipeline only)
    one message per (micro-batch, target partition) holding the batch's already-validated events of
    the items that hash to that partition::

        {"v": 1, "events": [[event_id, type_index, user_id, item_id, ts_ms, ingest_ms], ...]}

    Batching the forward keeps the per-event cost of the repartition hop small (kafka-python spends
    ~100 us per produced message); the broker timestamp of such a message is the newest ``ingest_ms``
    inside it, so replay's "skip what is too old" test stays conservative.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

from cascade_stream.events import (
    EVENT_TYPES,
    InvalidEvent,
    UserEvent,
    check_event_time,
    check_key,
    parse_event,
)
from cascade_stream.features import Event

BY_ITEM_FORMAT = "by-item-batch.v1"
FORMAT_HEADER = "x-cascade-format"


@dataclass(frozen=True)
class Rules:
    """What a message must satisfy; ``key_field`` None skips the key check (event files)."""

    key_field: str | None = "user_id"
    max_event_bytes: int = 64 * 1024
    max_lateness_ms: int = 3_600_000
    max_future_ms: int = 300_000

    @classmethod
    def from_settings(cls, s: Any, key_field: str | None) -> "Rules":
        """From ``KafkaSettings`` or ``WorkerSettings`` (event size and time bounds)."""
        return cls(
            key_field, int(s.max_event_bytes), int(s.max_lateness_s * 1000), int(s.max_future_s * 1000)
        )


def decode(value: bytes | None, key: bytes | None, log_ts_ms: int | None, rules: Rules) -> UserEvent:
    """Validate one ``user-events`` message; :class:`InvalidEvent` carries the dead-letter reason."""
    ev = parse_event(value, rules.max_event_bytes)
    if rules.key_field is not None:
        check_key(ev, key, rules.key_field)
    if log_ts_ms is not None and log_ts_ms >= 0:
        check_event_time(ev, log_ts_ms, rules.max_lateness_ms, rules.max_future_ms)
    return ev


def to_event(ev: UserEvent) -> Event:
    return Event(ev.event_id, ev.type_index, ev.user_id, ev.item_id, ev.timestamp)


# -- the internal by-item format ----------------------------------------------------------------------
def encode_by_item(events: Iterable[tuple[Event, int]]) -> bytes:
    """One by-item message from ``(event, ingest_ms)`` pairs."""
    rows = [[e.event_id, e.type_index, e.user_id, e.item_id, e.ts, ingest] for e, ingest in events]
    return json.dumps({"v": 1, "events": rows}, separators=(",", ":")).encode()


def decode_by_item(value: bytes | None) -> list[tuple[Event, int]]:
    """``(event, ingest_ms)`` pairs of one by-item message; :class:`InvalidEvent` if it is not one."""
    try:
        doc = json.loads(value) if value is not None else None
        if not isinstance(doc, dict) or doc.get("v") != 1 or not isinstance(doc.get("events"), list):
            raise ValueError('expected {"v": 1, "events": [...]}')
        out = []
        n_types = len(EVENT_TYPES)
        for row in doc["events"]:
            eid, t, user, item, ts, ingest = row
            if not (
                isinstance(eid, str)
                and isinstance(t, int)
                and 0 <= t < n_types
                and isinstance(user, str)
                and isinstance(item, str)
                and isinstance(ts, int)
                and isinstance(ingest, int)
            ):
                raise ValueError(f"bad event row {row!r:.200}")
            out.append((Event(eid, t, user, item, ts), ingest))
        return out
    except (ValueError, TypeError) as e:
        raise InvalidEvent(f"payload: not a {BY_ITEM_FORMAT} message ({e})") from None
    except RecursionError:
        raise InvalidEvent(f"payload: not a {BY_ITEM_FORMAT} message (JSON nested too deeply)") from None


def decode_record(record: Any, rules: Rules, by_item: bool) -> list[tuple[Event, int]]:
    """The events of one consumed record (``by_item``: the internal format) with their ingest times."""
    if by_item:
        return decode_by_item(record.value)
    ev = decode(record.value, record.key, record.timestamp, rules)
    return [(to_event(ev), int(record.timestamp))]


__all__ = ["Rules", "decode", "decode_record", "to_event", "encode_by_item", "decode_by_item", "InvalidEvent"]
