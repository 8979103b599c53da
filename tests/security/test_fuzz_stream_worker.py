"""Fuzzed messages through a real Tansu broker and a real stream worker process.

A few hundred messages from the in-process fuzz generators (``test_fuzz_events``: random bytes, random
JSON, near-valid events, oversized, deeply nested, lone surrogates, odd keys) plus valid events with
Unicode ids are produced to ``user-events``. Each message must land either in the online store (valid:
its user's features are exactly what the valid events give) or on ``user-events.dlq`` with the
``x-dlq-reason`` header -- never both, never neither -- and the worker must keep running.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from cascade_stream.decode import Rules, decode
from cascade_stream.events import REASON_FIELDS, InvalidEvent
from cascade_stream.producer import EventProducer
from fuzz_support import TALLY, bulk, choose
from streamtest import Lane, Worker, diff, expected, feast_store, read_online, ready, wait_until
from test_fuzz_events import VALUES, valid_event

pytestmark = [pytest.mark.security, pytest.mark.integration]

N_MESSAGES = 400
CATEGORIES = ("Action", "Comedy", "Drama")


@pytest.fixture(scope="module")
def fuzz_catalog(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    path = tmp_path_factory.mktemp("fuzz-catalog") / "items.parquet"
    cat = {str(i): CATEGORIES[i % 3] for i in range(1, 51)}
    pd.DataFrame({"item_id": list(cat), "category": list(cat.values()), "title": list(cat)}).to_parquet(path)
    return path, cat


@pytest.fixture
def fuzz_worker(fuzz_broker, fuzz_catalog, tmp_path: Path) -> Iterator[tuple[Lane, Worker]]:
    lane = Lane(fuzz_broker, tmp_path, fuzz_catalog[0])
    worker = Worker(lane.env(), tmp_path / "worker.log")
    try:
        yield lane, worker
    finally:
        worker.stop()


def _messages(now_ms: int) -> list[tuple[bytes | None, bytes | None, bool]]:
    """(value, key, valid?) -- valid? by the same rules the worker applies, at produce time."""
    out = []
    for seed, r in bulk(N_MESSAGES, "stream-worker"):
        if r.random() < 0.05:  # a valid event but for a lone surrogate (JSON "\udXXX") in one id
            doc = valid_event(r)
            doc["timestamp"] = now_ms - 1000
            doc[r.choice(["user_id", "item_id", "request_id"])] = "a" + chr(r.randint(0xD800, 0xDFFF))
            value = json.dumps(doc).encode()
        elif r.random() < 0.3:  # valid events, Unicode ids, some for catalog items
            doc = valid_event(r)
            doc["timestamp"] = now_ms - r.randint(0, 60_000)
            if r.random() < 0.5:
                doc["item_id"] = str(r.randint(1, 50))
            value = json.dumps(doc, ensure_ascii=r.random() < 0.5).encode()
        else:
            value = choose(r, VALUES)
            if value is not None and b'"timestamp"' in value and r.random() < 0.8:
                value = _retime(value, now_ms)
        user = _user_of(value)
        key = user.encode("utf-8", "surrogatepass") if user is not None and r.random() < 0.9 else r.randbytes(4)
        out.append((value, key, _valid(value, key, now_ms)))
    return out


def _retime(value: bytes, now_ms: int) -> bytes:
    try:
        doc = json.loads(value)
    except Exception:  # noqa: BLE001
        return value
    if isinstance(doc, dict) and isinstance(doc.get("timestamp"), int):
        doc["timestamp"] = now_ms - 1000
        return json.dumps(doc).encode()
    return value


def _user_of(value: bytes | None) -> str | None:
    try:
        doc = json.loads(value) if value else None
    except Exception:  # noqa: BLE001
        return None
    u = doc.get("user_id") if isinstance(doc, dict) else None
    return u if isinstance(u, str) else None


def _valid(value: bytes | None, key: bytes | None, now_ms: int) -> bool:
    try:
        decode(value, key, now_ms, Rules())
        return True
    except InvalidEvent:
        return False


def _dead_letters(lane: Lane, at_least: int, timeout_s: float) -> list:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**lane.kafka.consumer(None))
    try:
        tps = [TopicPartition(lane.topics.dlq, p) for p in sorted(consumer.partitions_for_topic(lane.topics.dlq))]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for recs in consumer.poll(timeout_ms=500).values():
                out.extend(recs)
            if len(out) >= at_least:
                # drain what else is there (a redelivered batch may have dead-lettered twice)
                for recs in consumer.poll(timeout_ms=1000).values():
                    out.extend(recs)
                break
        return out
    finally:
        consumer.close()


def test_fuzzed_messages_land_in_the_store_or_the_dlq(fuzz_worker, fuzz_catalog) -> None:
    lane, worker = fuzz_worker
    now = int(time.time() * 1000)
    msgs = _messages(now)
    n_valid = sum(v for *_, v in msgs)
    assert 50 <= n_valid <= N_MESSAGES - 50, n_valid  # both outcomes well represented

    offsets: dict[tuple[int, int], tuple[bytes | None, bytes | None, bool]] = {}
    with EventProducer(lane.kafka, lane.topics.events) as p:
        futures = [(p.send_raw(v, k), (v, k, ok)) for v, k, ok in msgs]
        p.flush()
        for fut, m in futures:
            md = fut.get(timeout=30)
            offsets[(md.partition, md.offset)] = m
    TALLY["kafka-events-broker"] += len(msgs)
    assert len(offsets) == len(msgs)

    t0 = time.monotonic()
    worker.start()
    wait_until(lambda: ready(worker), 240, "the worker to own all partitions", worker)
    t_ready = time.monotonic() - t0
    n_dlq = len(msgs) - n_valid
    letters = _dead_letters(lane, n_dlq, 180)
    t_dlq = time.monotonic() - t0
    # every dead letter: one produced message, with a reason and a bounded field
    dead = {}
    for rec in letters:
        h = dict(rec.headers)
        src = (int(h["x-source-partition"]), int(h["x-source-offset"]))
        assert src in offsets, src
        assert h["x-dlq-reason"].decode("utf-8").strip()
        assert h["x-dlq-field"].decode() in REASON_FIELDS
        assert (rec.value, rec.key) == offsets[src][:2]  # the original bytes
        dead[src] = h["x-dlq-reason"].decode()
    dead_set, valid_set = set(dead), {o for o, (_, _, ok) in offsets.items() if ok}
    assert not dead_set & valid_set, [dead[o] for o in dead_set & valid_set][:5]
    assert dead_set | valid_set == set(offsets), f"{len(set(offsets) - dead_set - valid_set)} messages lost"
    assert len(dead_set) + len(valid_set) == len(msgs)

    # the valid ones are in the online store, exactly
    good = [json.loads(v) for v, _, ok in msgs if ok]
    users = sorted({d["user_id"] for d in good})
    store = feast_store(lane)
    want = expected(good, "user", fuzz_catalog[1])
    wait_until(lambda: not diff(read_online(store, "user", users), want), 180, "the valid events' features",
               worker)
    want_items = expected(good, "item", fuzz_catalog[1])
    wait_until(lambda: not diff(read_online(store, "item", sorted(want_items)), want_items), 180,
               "the valid events' item features", worker)
    assert worker.alive(), worker.log()
    counted = sum(worker.counter("cascade_stream_events_total", pipeline="users", result=r)
                  for r in ("processed", "duplicate", "stale"))
    assert counted == len(valid_set)
    assert worker.counter("cascade_stream_events_total", pipeline="users", result="dlq") == len(dead_set)
    print(f"stream worker fuzz: {len(msgs)} produced, {len(valid_set)} valid, {len(dead_set)} dead letters; "
          f"worker ready after {t_ready:.0f}s, dead letters read after {t_dlq:.0f}s, "
          f"store checked after {time.monotonic() - t0:.0f}s")

