"""``POST /v1/events``: batch ingestion of storefront user events into Kafka (topic ``user-events``).

Body: ``{"events": [<event>, ...]}`` — 1 to ``MAX_BATCH`` events of the v1 contract
(``services/stream/schemas/user-event.v1.json``, ``docs/events.md``). The whole batch is validated
first; one bad event rejects the batch with 400 and a message naming the event index and field
(``"events[3].event_type: unknown event type 'like' ..."``), nothing sent. A valid batch is written
with acks=all, keyed by ``user_id``, and answered **202 only after the broker acknowledged every
event**; a broker that does not acknowledge in time answers 503 (retry with the same ``event_id`` s:
the stream worker de-duplicates).

Kafka settings come from the environment (``CASCADE_KAFKA__BOOTSTRAP_SERVERS`` ...,
``cascade_stream.settings.KafkaSettings``). The producer is opened on the first request (or by
:func:`open_producer` in the app's lifespan) and closed by :func:`close_producer`. A producer that
kafka-python leaves in a fatal state (e.g. ``InitProducerIdResponse: UnknownError`` after a broker
restart) is closed and re-created inside :class:`~cascade_stream.producer.EventProducer` with backoff;
the batches that failed meanwhile are answered 503 (``ProducerUnavailable`` is a ``KafkaError``), never
202, and their re-sends are de-duplicated by the worker's ``event_id`` check.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from cascade_stream.producer import BatchRejected, EventProducer, prepare
from cascade_stream.settings import KafkaSettings
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from kafka.errors import KafkaError
from pydantic import ValidationError

from cascade_gateway.errors import ApiError

log = logging.getLogger("cascade.gateway.events")

MAX_BATCH = 500
MAX_BODY_BYTES = 4 * 1024 * 1024
STATE_ATTR = "event_producer"

router = APIRouter(tags=["events"])


def _producer_from_env() -> tuple[EventProducer, KafkaSettings]:
    s = KafkaSettings()
    return EventProducer(s.kafka, s.topics.events, s.max_event_bytes, s.max_lateness_s, s.max_future_s), s


async def open_producer(app: FastAPI) -> EventProducer:
    """The app's producer, created on first use (connecting blocks: done in a thread)."""
    lock = getattr(app.state, "event_producer_lock", None)
    if lock is None:
        lock = app.state.event_producer_lock = asyncio.Lock()
    async with lock:
        producer = getattr(app.state, STATE_ATTR, None)
        if producer is None:
            try:
                producer, settings = await asyncio.to_thread(_producer_from_env)
            except ValidationError as e:  # CASCADE_KAFKA__* misconfigured: the operator must fix it
                raise ApiError(500, "INTERNAL", f"event ingestion misconfigured: {e}") from None
            except (KafkaError, OSError) as e:  # NoBrokersAvailable and friends
                raise ApiError(
                    503, "UNAVAILABLE", f"event ingestion unavailable: Kafka: {e}", {"Retry-After": "1"}
                ) from None
            app.state.event_settings = settings
            setattr(app.state, STATE_ATTR, producer)
        assert isinstance(producer, EventProducer)
        return producer


async def close_producer(app: FastAPI) -> None:
    producer = getattr(app.state, STATE_ATTR, None)
    if producer is not None:
        setattr(app.state, STATE_ATTR, None)
        await asyncio.to_thread(producer.close)


def _parse_body(raw: bytes) -> list[Any]:
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, "INVALID_ARGUMENT", f"body: {len(raw)} bytes exceeds {MAX_BODY_BYTES}")
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ApiError(400, "INVALID_ARGUMENT", f"body: invalid JSON ({e})") from None
    except RecursionError:
        raise ApiError(400, "INVALID_ARGUMENT", "body: invalid JSON (nested too deeply)") from None
    except ValueError as e:  # integers past Python's digit limit
        raise ApiError(400, "INVALID_ARGUMENT", f"body: invalid JSON ({e})") from None
    if not isinstance(doc, dict) or "events" not in doc:
        raise ApiError(400, "INVALID_ARGUMENT", 'body: expected a JSON object {"events": [...]}')
    extra = sorted(set(doc) - {"events"})
    if extra:
        raise ApiError(400, "INVALID_ARGUMENT", f"{extra[0]}: unknown field")
    events = doc["events"]
    if not isinstance(events, list):
        raise ApiError(400, "INVALID_ARGUMENT", "events: must be an array of events")
    if not 1 <= len(events) <= MAX_BATCH:
        raise ApiError(
            400, "INVALID_ARGUMENT", f"events: must hold 1 to {MAX_BATCH} events, got {len(events)}"
        )
    return events


@router.post("/v1/events", status_code=202)
async def ingest_events(request: Request) -> JSONResponse:
    """Validate a batch of events and write it to Kafka; 202 once the broker acknowledged all of it."""
    events = _parse_body(await request.body())
    producer = await open_producer(request.app)
    s: KafkaSettings = request.app.state.event_settings
    try:
        valid = prepare(events, s.max_event_bytes, s.max_lateness_s, s.max_future_s)
    except BatchRejected as e:
        raise ApiError(400, "INVALID_ARGUMENT", str(e)) from None
    try:
        acks = await asyncio.to_thread(producer.send_all, valid)
    except (KafkaError, OSError) as e:  # KafkaTimeoutError, NotEnoughReplicas...: not acknowledged
        log.warning("event batch of %d not acknowledged: %s", len(valid), e)
        raise ApiError(
            503, "UNAVAILABLE", f"events not acknowledged by Kafka: {e}", {"Retry-After": "1"}
        ) from None
    return JSONResponse({"accepted": len(acks), "event_ids": [e.event_id for e in valid]}, status_code=202)
