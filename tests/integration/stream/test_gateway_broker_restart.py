"""The gateway's event ingestion recovers from a broker crash (kill -9 + restart on the same port).

After a Tansu ``memory://`` restart the broker has forgotten the idempotent producer's id: kafka-python
bumps the epoch, gets ``InitProducerIdResponse: [Error -1] UnknownError`` and enters a fatal state in
which it aborts every batch. The gateway must answer 503 meanwhile (never 202 for an unacknowledged
batch) and acknowledge again once its producer is re-created.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid

import pytest
from cascade_stream.broker import TansuBroker, create_topics
from streamtest import serve_events_app

pytestmark = pytest.mark.integration

TOPIC = "user-events"
DEADLINE_S = 90.0  # generous: a contended machine; the loop ends at the first 202


def _event(user: str = "7") -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "click",
        "user_id": user,
        "item_id": "42",
        "timestamp": int(time.time() * 1000),
    }


def _post(url: str, events: list[dict]) -> tuple[int, dict]:
    req = urllib.request.Request(
        url + "/v1/events",
        data=json.dumps({"events": events}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _event_ids_in_topic(broker: TansuBroker, want: set[str], timeout_s: float = 30.0) -> set[str]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**broker.kafka_config().consumer(None))
    try:
        tps = [TopicPartition(TOPIC, p) for p in sorted(consumer.partitions_for_topic(TOPIC) or ())]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        seen: set[str] = set()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not want <= seen:
            for recs in consumer.poll(timeout_ms=300).values():
                seen.update(json.loads(r.value)["event_id"] for r in recs)
        return seen
    finally:
        consumer.close()


@pytest.fixture
def broker(tmp_path):
    b = TansuBroker(log_path=tmp_path / "tansu.log").start()
    create_topics(b.kafka_config(), [TOPIC])
    yield b
    b.stop()


@pytest.fixture
def gateway(broker, monkeypatch):
    yield from serve_events_app(monkeypatch, {
        "CASCADE_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap,
        "CASCADE_TOPICS__EVENTS": TOPIC,
        "CASCADE_KAFKA__SEND_TIMEOUT_S": "5",
    })


def test_gateway_acknowledges_again_after_the_broker_is_killed_and_restarted(broker, gateway):
    url, app = gateway
    before = [_event("1"), _event("2")]
    status, body = _post(url, before)
    assert status == 202, body
    producer = app.state.event_producer

    broker.kill()
    broker.start()  # same port, memory:// storage: empty
    create_topics(broker.kafka_config(), [TOPIC])

    # the client's contract: re-send the same batch (same event_ids) until it is acknowledged
    batch = [_event("1"), _event("3")]
    answers: list[int] = []
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        status, body = _post(url, batch)
        answers.append(status)
        if status == 202:
            break
        assert status == 503, body  # not acknowledged: never a 202, never a 500
        assert body["error"]["code"] == "UNAVAILABLE"
        time.sleep(0.2)
    assert answers[-1] == 202, f"no 202 within {DEADLINE_S}s after the broker restart: {answers}"
    assert body["event_ids"] == [e["event_id"] for e in batch]
    assert app.state.event_producer is producer  # the same EventProducer, its client replaced inside

    # acknowledged means readable, and later batches keep being acknowledged
    status, body = _post(url, [_event("4")])
    assert status == 202, body
    want = {e["event_id"] for e in batch} | set(body["event_ids"])
    assert want <= _event_ids_in_topic(broker, want)
