"""Event ingestion into the real broker: ``POST /v1/events`` (real uvicorn) and ``cascade events produce``."""

from __future__ import annotations

import argparse
import json
import time
import urllib.error
import urllib.request
import uuid

import pytest
from cascade_platform.procs import free_port
from streamtest import serve_events_app

pytestmark = pytest.mark.integration


def _event(user: str = "7", event_type: str = "click", **over) -> dict:
    ev = {
        "event_id": str(uuid.uuid4()),
        "event_type": event_type,
        "user_id": user,
        "item_id": "42",
        "timestamp": int(time.time() * 1000),
    }
    ev.update(over)
    return ev


def _read_topic(lane, topic: str, n: int, timeout_s: float = 20) -> list:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**lane.kafka.consumer(None))
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and len(out) < n:
            for recs in consumer.poll(timeout_ms=300).values():
                out.extend(recs)
        if len(out) >= n:  # and nothing more arrives
            for recs in consumer.poll(timeout_ms=1000).values():
                out.extend(recs)
        return out
    finally:
        consumer.close()


@pytest.fixture
def gateway(lane, monkeypatch):
    """An app with the events router and the gateway's error handlers, served by a real uvicorn."""
    yield from serve_events_app(monkeypatch, {
        "CASCADE_KAFKA__BOOTSTRAP_SERVERS": lane.broker.bootstrap,
        "CASCADE_TOPICS__EVENTS": lane.topics.events,
    })


def _post(url: str, body: bytes) -> tuple[int, dict, dict]:
    req = urllib.request.Request(
        url + "/v1/events", data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), dict(e.headers)


def test_http_batch_is_written_and_acknowledged(lane, gateway):
    url, _ = gateway
    batch = [
        _event("7"),
        _event("8", "view", request_id="req-1", context={"page": "home"}),
        _event("7", "purchase", timestamp="2030-01-01T00:00:00Z"),
    ]
    batch[2]["timestamp"] = batch[0]["timestamp"]
    status, body, _ = _post(url, json.dumps({"events": batch}).encode())
    assert status == 202, body
    assert body == {"accepted": 3, "event_ids": [e["event_id"] for e in batch]}
    recs = _read_topic(lane, lane.topics.events, 3)
    assert len(recs) == 3  # acknowledged before the 202: already readable
    assert sorted((r.key.decode(), json.loads(r.value)["event_id"]) for r in recs) == sorted(
        (e["user_id"], e["event_id"]) for e in batch
    )
    assert {json.loads(r.value).get("request_id") for r in recs} == {None, "req-1"}


def test_http_rejects_a_bad_batch_naming_index_and_field(lane, gateway):
    url, _ = gateway
    batch = [_event(), _event(event_type="like"), _event()]
    status, body, _ = _post(url, json.dumps({"events": batch}).encode())
    assert status == 400
    assert body["error"]["code"] == "INVALID_ARGUMENT"
    assert body["error"]["message"].startswith("events[1].event_type: unknown event type 'like'")
    status, body, _ = _post(url, json.dumps({"events": [_event(user_id=3)]}).encode())
    assert (status, body["error"]["message"]) == (400, "events[0].user_id: must be a string, got int")
    status, body, _ = _post(url, b"{nope")
    assert status == 400 and body["error"]["message"].startswith("body: invalid JSON")
    status, body, _ = _post(url, json.dumps({"events": []}).encode())
    assert (status, body["error"]["message"]) == (400, "events: must hold 1 to 500 events, got 0")
    assert _read_topic(lane, lane.topics.events, 1, timeout_s=3) == []  # nothing of a bad batch was sent


def test_http_answers_503_when_kafka_is_unreachable(lane, monkeypatch, gateway):
    url, _app = gateway
    monkeypatch.setenv("CASCADE_KAFKA__BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("CASCADE_KAFKA__BOOTSTRAP_TIMEOUT_MS", "2000")
    status, body, headers = _post(url, json.dumps({"events": [_event()]}).encode())
    assert status == 503
    assert body["error"]["code"] == "UNAVAILABLE" and "Kafka" in body["error"]["message"]
    assert headers.get("retry-after") == "1"


def _cli(args: list[str]) -> int:
    from cascade_cli import events

    parser = argparse.ArgumentParser(prog="cascade")
    events.register(parser.add_subparsers(dest="command", required=True))
    ns = parser.parse_args(args)
    return ns.func(ns)


def test_cli_produces_json_lines_at_a_rate(lane, tmp_path, capsys):
    evs = [_event(str(u)) for u in range(20)]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in evs) + "\n\n")
    t0 = time.perf_counter()
    rc = _cli(
        [
            "events",
            "produce",
            str(path),
            "--rate",
            "100",
            "--bootstrap",
            lane.broker.bootstrap,
            "--topic",
            lane.topics.events,
        ]
    )
    took = time.perf_counter() - t0
    assert rc == 0
    assert f"sent 20 events to {lane.topics.events}" in capsys.readouterr().out
    recs = _read_topic(lane, lane.topics.events, 20)
    assert sorted(json.loads(r.value)["event_id"] for r in recs) == sorted(e["event_id"] for e in evs)
    assert all(r.key.decode() == json.loads(r.value)["user_id"] for r in recs)
    print(f"20 events at --rate 100 took {took:.2f}s")


def test_cli_stops_at_an_invalid_line_or_skips_it(lane, tmp_path, capsys):
    path = tmp_path / "events.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps(_event()),
                json.dumps(_event()),
                json.dumps(_event(item_id="")),
                "not json",
                json.dumps(_event()),
            ]
        )
        + "\n"
    )
    base = [
        "events",
        "produce",
        str(path),
        "--bootstrap",
        lane.broker.bootstrap,
        "--topic",
        lane.topics.events,
    ]
    assert _cli(base) == 2
    err = capsys.readouterr().err
    assert "line 3: item_id: must be a non-empty string (nothing after it was sent; 2 sent before)" in err
    assert len(_read_topic(lane, lane.topics.events, 2)) == 2
    assert _cli(base + ["--skip-invalid"]) == 0
    out = capsys.readouterr()
    assert "line 4: skipped: payload: invalid JSON" in out.err
    assert "sent 3 events" in out.out and "(2 invalid lines skipped)" in out.out
    assert len(_read_topic(lane, lane.topics.events, 5)) == 5
