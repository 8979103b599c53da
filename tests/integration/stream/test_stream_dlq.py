"""Malformed events of every kind go to the dead-letter topic with a reason; the worker keeps going."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from cascade_stream.broker import high_watermarks
from cascade_stream.producer import EventProducer
from streamtest import MIN, diff, expected, feast_store, read_online, ready, wait_until

pytestmark = pytest.mark.integration


def _event(user: str, item: str, event_type: str, ts: int) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": event_type,
        "user_id": user,
        "item_id": item,
        "timestamp": ts,
    }


def _dead_letters(lane, n: int) -> list:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**lane.kafka.consumer(None))
    try:
        tps = [
            TopicPartition(lane.topics.dlq, p) for p in sorted(consumer.partitions_for_topic(lane.topics.dlq))
        ]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list = []
        deadline = time.monotonic() + 30
        while len(out) < n and time.monotonic() < deadline:
            for recs in consumer.poll(timeout_ms=500).values():
                out.extend(recs)
        return out
    finally:
        consumer.close()


def test_malformed_events_are_dead_lettered_and_valid_ones_processed(lane, catalog, workers, tmp_path):
    now = int(time.time() * 1000)
    user = "dlq-user"
    good = [
        _event(user, "1", "click", now - 3000),
        _event(user, "2", "view", now - 2000),
        _event(user, "3", "purchase", now - 1000),
    ]
    raw_good = [json.dumps(e).encode() for e in good]
    oversized = json.dumps(_event(user, "4", "click", now)).encode() + b" " * (64 * 1024)
    bad: list[tuple[bytes | None, bytes, str, str]] = [
        # (value, key, reason prefix, field)
        (b"{oops", user.encode(), "payload: invalid JSON", "payload"),
        (
            json.dumps({k: v for k, v in _event(user, "5", "click", now).items() if k != "item_id"}).encode(),
            user.encode(),
            "item_id: required field missing",
            "item_id",
        ),
        (
            json.dumps(_event(user, "6", "like", now)).encode(),
            user.encode(),
            "event_type: unknown event type 'like'",
            "event_type",
        ),
        (
            oversized,
            user.encode(),
            f"payload: {len(oversized)} bytes exceeds the 65536-byte limit",
            "payload",
        ),
        (
            json.dumps({**_event(user, "7", "click", now), "event_id": "nope"}).encode(),
            user.encode(),
            "event_id: 'nope' is not a UUID",
            "event_id",
        ),
        (
            json.dumps(_event(user, "8", "click", now - 3 * 60 * MIN)).encode(),
            user.encode(),
            "timestamp: ",
            "timestamp",
        ),
        (
            json.dumps(_event(user, "9", "click", now)).encode(),
            b"someone-else",
            "key: message key 'someone-else' must equal user_id 'dlq-user'",
            "key",
        ),
        (None, user.encode(), "payload: empty message", "payload"),
        (b"[1, 2]", user.encode(), "payload: must be a JSON object, got an array", "payload"),
    ]
    # interleave: good, bad, bad, bad, good, bad..., good
    sequence = (
        [(raw_good[0], user.encode())]
        + [(v, k) for v, k, _, _ in bad[:4]]
        + [(raw_good[1], user.encode())]
        + [(v, k) for v, k, _, _ in bad[4:]]
        + [(raw_good[2], user.encode())]
    )
    with EventProducer(lane.kafka, lane.topics.events) as p:
        for value, key in sequence:
            p.send_raw(value, key)
        p.flush()

    worker = workers(lane.env(), tmp_path / "worker.log").start()
    wait_until(lambda: ready(worker), 180, "the worker to own all partitions", worker)
    letters = wait_until(
        lambda: (lambda ls: ls if len(ls) >= len(bad) else None)(_dead_letters(lane, len(bad))),
        120,
        "all dead letters",
        worker,
    )
    assert len(letters) == len(bad)
    # every dead letter: original bytes and key, the reason and field, where it came from
    by_value = {(r.value, r.key): r for r in letters}
    for value, key, reason, field in bad:
        r = by_value[(value, key)]
        headers = dict(r.headers)
        assert headers["x-dlq-reason"].decode().startswith(reason), headers["x-dlq-reason"]
        assert headers["x-dlq-field"].decode() == field
        assert headers["x-source-topic"].decode() == lane.topics.events
        assert int(headers["x-source-offset"]) >= 0
    late_reason = dict(by_value[(bad[5][0], bad[5][1])].headers)["x-dlq-reason"].decode()
    assert "before ingestion" in late_reason and "at most 3600s of lateness accepted" in late_reason

    # the valid events around them were processed, and nothing else
    store = feast_store(lane)
    cat = catalog[1]
    want_user = expected(good, "user", cat)
    want_items = expected(good, "item", cat)
    wait_until(
        lambda: (
            not diff(read_online(store, "user", [user]), want_user)
            and not diff(read_online(store, "item", sorted(want_items)), want_items)
        ),
        120,
        "the valid events' features",
        worker,
    )
    got = read_online(store, "user", [user])[user]
    assert (got["click_count_5m"], got["view_count_5m"], got["purchase_count_5m"]) == (1, 1, 1)
    assert got["last_item_ids"] == ["3", "2", "1"]
    assert got["last_categories"] == [cat["3"], cat["2"], cat["1"]]
    assert worker.alive()
    assert worker.counter("cascade_stream_events_total", pipeline="users", result="dlq") == len(bad)
    assert worker.counter("cascade_stream_dlq_total", field="payload") == 4
    # nothing was lost: every source message is either processed or dead-lettered
    assert sum(high_watermarks(lane.kafka, lane.topics.events).values()) == len(good) + len(bad)
    assert worker.counter("cascade_stream_events_total", pipeline="users", result="processed") == len(good)
