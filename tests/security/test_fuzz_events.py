"""Fuzzing the stream worker's decode/validate path in process (``cascade_stream.decode``/``events``).

Kafka messages on ``user-events`` -- random bytes, random JSON, near-valid events with wrong types,
lone surrogates, control characters, huge ints and floats, deep nesting, oversized payloads, odd keys
and broker timestamps -- and by-item messages on ``user-events.by-item``. Every input must either
decode to events that everything after the decode step can handle (feature state, the by-item
forward, the canonical JSON) or raise :class:`InvalidEvent` whose reason and field can go into the
dead-letter headers and the DLQ metric: encodable, bounded, the field from a fixed set. Any other
exception would escape the worker's decode step and stop the pipeline.

The producer/gateway validation (``cascade_stream.producer.prepare``) gets the same inputs as
batches: BatchRejected naming ``events[i].<field>`` or a list of valid events.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest
from cascade_stream.decode import Rules, decode_by_item, decode_record, encode_by_item, to_event
from cascade_stream.events import (
    EVENT_TYPES,
    MAX_REASON_CHARS,
    REASON_FIELDS,
    InvalidEvent,
    UserEvent,
    parse_event,
)
from cascade_stream.features import EntityState
from cascade_stream.producer import BatchRejected, prepare
from fuzz_support import TALLY, bulk, choose, fuzz_settings, pick, rand_text
from hypothesis import example, given
from kafka.partitioner.default import murmur2

pytestmark = pytest.mark.security

NOW_MS = 1_763_000_000_000  # fixed "now" (Nov 2025): the inputs do not depend on the clock
RULES = Rules()
N_HYPOTHESIS, N_BULK = 1000, 3500  # user-events messages
N_BY_ITEM_HYPOTHESIS, N_BY_ITEM_BULK = 200, 300  # by-item messages


@dataclass(frozen=True)
class Record:
    """A consumed Kafka record as the worker sees it (kafka-python's ConsumerRecord fields it reads)."""

    value: bytes | None
    key: bytes | None
    timestamp: int


# -- generators --------------------------------------------------------------------------------------
def _id(r: random.Random) -> str:
    """A valid id: any Unicode but control characters and lone surrogates, 1-64 characters."""
    s = rand_text(r, r.randint(1, 64), r.choice(["ascii", "bmp", "astral", "special"]))
    s = "".join(c for c in s if c >= " " and not 0x7F <= ord(c) <= 0x9F) or "x"
    return s if s.strip() else "x" + s


def valid_event(r: random.Random) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "event_id": str(uuid.UUID(int=r.getrandbits(128), version=4)),
        "event_type": r.choice(EVENT_TYPES),
        "user_id": _id(r),
        "item_id": _id(r),
        "timestamp": NOW_MS - r.randint(0, 3_000_000),
    }
    if r.random() < 0.3:
        doc["request_id"] = _id(r)
    if r.random() < 0.3:
        if r.random() < 0.8:
            doc["context"] = {_id(r): _id(r) for _ in range(r.randint(0, 4))}
        else:  # up to the 64-entry limit (one random value: cheap to build)
            doc["context"] = dict.fromkeys((f"k{i}" for i in range(r.randint(5, 64))), _id(r))
    return doc


def json_value(r: random.Random, depth: int = 0) -> Any:
    """Any JSON value (and Python's JSON extensions NaN/Infinity), lone surrogates included."""
    kinds = ["null", "bool", "int", "bigint", "float", "str", "surrogate"] + (["list", "dict"] if depth < 3 else [])
    k = r.choice(kinds)
    if k == "null":
        return None
    if k == "bool":
        return r.random() < 0.5
    if k == "int":
        return r.choice([0, -1, 1, 2**31, -(2**63), 2**64, NOW_MS, NOW_MS // 1000, r.randint(-(10**20), 10**20)])
    if k == "bigint":
        return int("9" * r.randint(20, 4300))  # (past 4300 digits: the raw-bytes generators below)
    if k == "float":
        return r.choice([0.5, -0.0, 1e308, float("inf"), float("-inf"), float("nan"), NOW_MS + 0.5, r.random()])
    if k == "str":
        return rand_text(r, r.randint(0, 80))
    if k == "surrogate":
        return _short_text(r) + chr(r.randint(0xD800, 0xDFFF)) + _short_text(r)
    if k == "list":
        return [json_value(r, depth + 1) for _ in range(r.randint(0, 4))]
    return {rand_text(r, r.randint(0, 12)): json_value(r, depth + 1) for _ in range(r.randint(0, 4))}


def _short_text(r: random.Random) -> str:
    return rand_text(r, r.randint(0, 8))


ODD_FIELD_VALUES = (
    json_value,
    lambda r: "",
    lambda r: " \t ",
    lambda r: _short_text(r) + r.choice(["\x00", "\n", "\x1f", "\x7f"]) + _short_text(r),
    lambda r: _short_text(r) + chr(r.randint(0xD800, 0xDFFF)) + _short_text(r),  # a lone surrogate
    lambda r: rand_text(r, r.randint(250, 5000)),
    lambda r: r.choice(["2024-05-01T12:00:00Z", "2024-13-01T12:00:00Z", "0001-01-01T00:00:00+23:59",
                        "9999-12-31T23:59:59-23:59", "2024-05-01T12:00:00", "2025-11-13T02:13:20.123456789Z",
                        "2025-11-13 02:13:20+00:00", "1763000000000"]),
    lambda r: r.choice([NOW_MS, NOW_MS + 10**9, NOW_MS - 10**10, 946_684_800_000, 4_102_444_800_000, 1, -1]),
    lambda r: {rand_text(r, 8): json_value(r) for _ in range(r.randint(0, 70))},
    lambda r: {str(i): "v" * r.choice([1, 1024, 1025]) for i in range(r.randint(60, 70))},
)


def near_valid(r: random.Random) -> dict[str, Any]:
    """A valid event with one to three fields replaced, removed or added."""
    doc = valid_event(r)
    for _ in range(r.randint(1, 3)):
        op = r.random()
        name = r.choice([*doc, "request_id", "context"])
        if op < 0.6:
            doc[name] = choose(r, ODD_FIELD_VALUES)
        elif op < 0.8:
            doc.pop(name, None)
        else:
            doc[r.choice([rand_text(r, r.randint(1, 30)), "x" * r.randint(100, 20_000), "\ud800",
                          "Event_ID", "userId"])] = json_value(r)
    return doc


def _dumps(doc: Any, r: random.Random) -> bytes:
    """JSON bytes: ASCII-escaped (lone surrogates as \\udXXX escapes) or raw UTF-8 (surrogates then
    become invalid UTF-8 bytes, as a broken producer would send them)."""
    if r.random() < 0.5:
        return json.dumps(doc).encode()
    return json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _bit_rot(b: bytes, r: random.Random) -> bytes:
    """A few random bytes overwritten (a corrupted message)."""
    out = bytearray(b)
    for _ in range(r.randint(1, 8)):
        out[r.randrange(len(out))] = r.randrange(256)
    return bytes(out)


VALUES = (
    lambda r: _dumps(valid_event(r), r),
    lambda r: _dumps(near_valid(r), r),
    lambda r: _dumps(near_valid(r), r),
    lambda r: _dumps(json_value(r), r),
    lambda r: r.randbytes(r.randint(0, 512)),
    lambda r: _dumps(valid_event(r), r) + b" " * r.randint(64 * 1024, 70_000),  # oversized
    lambda r: r.choice([b"[", b"{\"a\":", b"[{\"b\":"]) * r.randint(900, 30_000),  # deep nesting
    lambda r: b'{"event_id": ' + b"1" * r.randint(4000, 6000) + b"}",  # integer past the digit limit
    lambda r: _dumps(valid_event(r), r).replace(b'"timestamp": ', b'"timestamp": ' + b"1" * r.randint(4290, 9000)),
    lambda r: (lambda b: b[: r.randrange(len(b))])(_dumps(valid_event(r), r)),  # truncated
    lambda r: _bit_rot(_dumps(valid_event(r), r), r),
    lambda r: None,  # a tombstone / null value
    lambda r: r.choice([b"", b"null", b"0", b'""', b"[]", b"{}", b"NaN", b"\xef\xbb\xbf{}", b"\x00"]),
)


def gen_record(r: random.Random) -> Record:
    value = choose(r, VALUES)
    try:
        user = json.loads(value).get("user_id") if value else None
    except Exception:  # noqa: BLE001 - not JSON / not an object: any key
        user = None
    k = r.random()
    if isinstance(user, str) and k < 0.8:
        key = user.encode("utf-8", "surrogatepass")  # the producer keys by user_id
    elif k < 0.9:
        key = r.randbytes(r.randint(0, 40))
    else:
        key = None
    ts = r.choice([NOW_MS, NOW_MS, NOW_MS, -1, 0, NOW_MS + 10**8, NOW_MS - 10**10])
    return Record(value, key, ts)


records = pick(gen_record)


def gen_by_item(r: random.Random) -> bytes | None:
    rows = [[_id(r), r.randint(0, 4), _id(r), _id(r), NOW_MS, NOW_MS] for _ in range(r.randint(0, 5))]
    doc: Any = {"v": 1, "events": rows}
    op = r.random()
    if op < 0.3 and rows:
        rows[r.randrange(len(rows))][r.randrange(6)] = json_value(r)
    elif op < 0.45:
        rows.append([json_value(r) for _ in range(r.randint(0, 8))])
    elif op < 0.6:
        doc = json_value(r)
    elif op < 0.7:
        return r.randbytes(r.randint(0, 256))
    elif op < 0.75:
        return b'{"v":1,"events":' + b"[" * r.randint(900, 20_000)
    return _dumps(doc, r)


# -- checks ------------------------------------------------------------------------------------------
def check_rejection(e: InvalidEvent, where: str) -> None:
    """What the dead letter carries: x-dlq-reason/x-dlq-field headers and the DLQ metric's label."""
    assert e.reason.strip(), where
    assert len(e.reason) <= MAX_REASON_CHARS, where
    e.reason.encode("utf-8")  # a Kafka header value: must be encodable (no lone surrogates)
    assert e.field in REASON_FIELDS, f"{where}: unbounded DLQ field label {e.field!r}"
    assert e.reason.split(":", 1)[0], where


def check_valid(events: list, rec: Record, where: str) -> None:
    """Everything after the decode step handles an accepted event."""
    [(ev, ingest)] = events
    assert ingest == rec.timestamp
    ev.user_id.encode("utf-8"), ev.item_id.encode("utf-8")  # Redis/SQLite keys, Kafka keys
    assert rec.key == ev.user_id.encode(), where  # the partitioning contract was checked
    murmur2(ev.item_id.encode())  # the by-item forward partitioner
    st_ = EntityState("user")
    st_.add(ev, "unknown")
    st_.features()
    assert decode_by_item(encode_by_item([(ev, ingest)])) == [(ev, ingest)], where
    back = parse_event(UserEvent.model_validate(json.loads(rec.value)).to_json_bytes())  # canonical JSON
    assert to_event(back) == ev, where


def run_record(rec: Record, where: str, seen: Counter) -> None:
    TALLY["kafka-events"] += 1
    try:
        events = decode_record(rec, RULES, by_item=False)
    except InvalidEvent as e:
        seen[f"dlq:{e.field}"] += 1
        check_rejection(e, f"{where}: {rec.value[:120] if rec.value else rec.value!r}")
        return
    seen["valid"] += 1
    check_valid(events, rec, where)


# -- tests -------------------------------------------------------------------------------------------
def test_fuzzed_user_events_decode_or_dead_letter() -> None:
    seen: Counter[str] = Counter()

    @fuzz_settings(N_HYPOTHESIS)
    @given(rec=records)
    @example(rec=Record(b"[" * 50_000, b"u", NOW_MS))  # was RecursionError
    @example(rec=Record(b'{"event_id": ' + b"9" * 5000 + b"}", b"u", NOW_MS))  # was ValueError
    @example(rec=Record(json.dumps({"x" * 60_000: 1}).encode(), b"u", NOW_MS))  # was a 60 KB metric label
    @example(rec=Record(json.dumps({**valid_event(random.Random(1)), "user_id": "u", "item_id": "\ud800"})
                        .encode(), b"u", NOW_MS))  # was accepted: crashed the by-item forward
    def fuzz(rec: Record) -> None:
        run_record(rec, "hypothesis", seen)

    fuzz()
    for seed, r in bulk(N_BULK, "events"):
        run_record(gen_record(r), f"bulk seed {seed}", seen)
    assert seen["valid"] > 100 and sum(v for k, v in seen.items() if k.startswith("dlq:")) > 1000, seen
    print(f"user-events fuzz: {dict(seen)}")


def test_fuzzed_by_item_messages_decode_or_dead_letter() -> None:
    seen: Counter[str] = Counter()

    def run(value: bytes | None, where: str) -> None:
        TALLY["kafka-by-item"] += 1
        try:
            out = decode_by_item(value)
        except InvalidEvent as e:
            seen["dlq"] += 1
            check_rejection(e, where)
            return
        seen["valid"] += 1
        assert decode_by_item(encode_by_item(out)) == out, where

    @fuzz_settings(N_BY_ITEM_HYPOTHESIS)
    @given(value=pick(gen_by_item))
    @example(value=b"[" * 50_000)
    def fuzz(value: bytes | None) -> None:
        run(value, "hypothesis")

    fuzz()
    for seed, r in bulk(N_BY_ITEM_BULK, "by-item"):
        run(gen_by_item(r), f"bulk seed {seed}")
    assert seen["valid"] > 0 and seen["dlq"] > 0, seen


def test_fuzzed_event_batches_at_the_producer() -> None:
    """The producer SDK / ``POST /v1/events`` validation: all-or-nothing, the bad event named."""
    seen: Counter[str] = Counter()
    now = int(time.time() * 1000)
    for seed, r in bulk(300, "batches"):
        TALLY["event-batches"] += 1
        batch = []
        for _ in range(r.randint(1, 5)):
            doc = r.choice([valid_event, valid_event, near_valid, json_value])(r)
            if isinstance(doc, dict) and isinstance(doc.get("timestamp"), int) and r.random() < 0.9:
                doc["timestamp"] = now - r.randint(0, 60_000)  # prepare() checks against the clock
            batch.append(doc)
        try:
            out = prepare(batch)
        except BatchRejected as e:
            seen["rejected"] += 1
            assert str(e).startswith(f"events[{e.index}]."), f"seed {seed}: {e}"
            check_rejection(e.error, f"seed {seed}")
            str(e).encode("utf-8")  # the 400 body
            continue
        seen["accepted"] += 1
        assert len(out) == len(batch)
        for ev in out:
            ev.to_json_bytes().decode("utf-8")
    assert seen["accepted"] > 0 and seen["rejected"] > 0, seen
