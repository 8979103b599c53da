"""Producer SDK: validated user events to Kafka, keyed by ``user_id``, acknowledged by all replicas.

    from cascade_stream.producer import EventProducer
    with EventProducer(KafkaConfig(bootstrap_servers="127.0.0.1:9092")) as p:
        p.send_all([{"event_id": "...", "event_type": "click", "user_id": "7", "item_id": "42",
                     "timestamp": 1714564800000}])       # returns after the broker acknowledged

Events are validated against the v1 contract before anything is sent (:class:`InvalidEvent` names the
field), including the event-time bounds the worker enforces, so a producer learns of a bad event at
once instead of from the dead-letter topic.

Recovery: kafka-python's (idempotent) producer can enter a *fatal* state it never leaves — after a
broker restart that lost its producer ids (Tansu ``memory://``) the epoch bump answers
``InitProducerIdResponse: [Error -1] UnknownError`` and every later batch is aborted. On such an
error (:func:`producer_is_broken`) :class:`EventProducer` closes its producer and opens a new one on
the next send, no sooner than an exponential backoff (``RECREATE_BACKOFF_S`` doubling up to
``RECREATE_MAX_BACKOFF_S``); sends in between fail at once with :class:`ProducerUnavailable` (a
``KafkaError``). A failed send is never reported as acknowledged: the caller re-sends with the same
``event_id`` s and the worker de-duplicates.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from kafka.errors import KafkaError

from cascade_stream.events import (
    MAX_EVENT_BYTES,
    InvalidEvent,
    UserEvent,
    check_event_time,
    validate_event,
)
from cascade_stream.settings import KafkaConfig

log = logging.getLogger("cascade.stream.producer")

RECREATE_BACKOFF_S = 0.5
RECREATE_MAX_BACKOFF_S = 5.0


class ProducerUnavailable(KafkaError):
    """No usable producer right now (being re-created after a fatal error): nothing was sent."""

    retriable = True


def producer_is_broken(producer: Any) -> bool:
    """Whether a kafka-python ``KafkaProducer`` can no longer send (fatal error, dead sender, closed):
    only closing it and opening a new one helps."""
    if producer is None or getattr(producer, "_closed", False):
        return True
    tm = getattr(producer, "_transaction_manager", None)
    try:
        if tm is not None and tm.has_fatal_error():
            return True
    except Exception:  # pragma: no cover - private API of kafka-python changed: assume usable
        pass
    sender = getattr(producer, "_sender", None)
    return sender is not None and hasattr(sender, "is_alive") and not sender.is_alive()


def close_quietly(producer: Any) -> None:
    """Close a (broken) producer without waiting for its unsendable batches."""
    try:
        producer.close(timeout=0)
    except Exception as e:  # noqa: BLE001 - best effort on a broken client
        log.debug("closing a broken producer: %s", e)


class BatchRejected(ValueError):
    """An event of a batch is invalid: nothing of the batch was sent."""

    def __init__(self, index: int, error: InvalidEvent) -> None:
        super().__init__(f"events[{index}].{error.reason}")
        self.index = index
        self.error = error


@dataclass(frozen=True, slots=True)
class Ack:
    partition: int
    offset: int


def prepare(
    events: Sequence[UserEvent | Mapping[str, Any]],
    max_event_bytes: int = MAX_EVENT_BYTES,
    max_lateness_s: float | None = 3600.0,
    max_future_s: float = 300.0,
    now_ms: int | None = None,
) -> list[UserEvent]:
    """Validate a batch (all or nothing); :class:`BatchRejected` names the first bad event and field."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    out = []
    for i, raw in enumerate(events):
        try:
            ev = (
                raw
                if isinstance(raw, UserEvent)
                else validate_event(dict(raw) if isinstance(raw, Mapping) else raw)
            )
            if max_lateness_s is not None:
                check_event_time(ev, now, int(max_lateness_s * 1000), int(max_future_s * 1000))
            size = len(ev.to_json_bytes())
            if size > max_event_bytes:
                raise InvalidEvent(f"payload: {size} bytes exceeds the {max_event_bytes}-byte limit")
        except InvalidEvent as e:
            raise BatchRejected(i, e) from None
        out.append(ev)
    return out


class EventProducer:
    """A kafka-python producer with the event contract applied (acks=all, key=user_id)."""

    def __init__(
        self,
        kafka: KafkaConfig | None = None,
        topic: str = "user-events",
        max_event_bytes: int = MAX_EVENT_BYTES,
        max_lateness_s: float | None = 3600.0,
        max_future_s: float = 300.0,
    ) -> None:
        from kafka import KafkaProducer

        self.kafka = kafka or KafkaConfig()
        self.topic = topic
        self.max_event_bytes = max_event_bytes
        self.max_lateness_s = max_lateness_s
        self.max_future_s = max_future_s
        self._factory = KafkaProducer
        self._lock = threading.Lock()
        self._closed = False
        self._backoff_s = RECREATE_BACKOFF_S
        self._retry_at = 0.0
        self.recreated = 0  # producers re-created after a fatal error (tests, logs)
        self._producer: Any = KafkaProducer(**self.kafka.producer())  # the first one: errors propagate

    # -- the underlying producer, re-created after a fatal error -------------------------------------
    def _current(self) -> Any:
        """The usable producer, opening a new one when the last one broke and the backoff has passed."""
        producer = self._producer
        if producer is not None:
            return producer
        with self._lock:
            if self._producer is not None:
                return self._producer
            if self._closed:
                raise ProducerUnavailable("producer closed")
            now = time.monotonic()
            if now < self._retry_at:
                raise ProducerUnavailable(
                    f"Kafka producer being re-created after a fatal error (next try in {self._retry_at - now:.1f}s)"
                )
            try:
                self._producer = self._factory(**self.kafka.producer())
            except Exception as e:
                wait_s = self._backoff_s
                self._retry_at = time.monotonic() + wait_s
                self._backoff_s = min(self._backoff_s * 2, RECREATE_MAX_BACKOFF_S)
                log.warning("re-creating the Kafka producer failed (next try in %.1fs): %s", wait_s, e)
                raise
            self.recreated += 1
            log.warning("Kafka producer re-created after a fatal error (%d so far)", self.recreated)
            return self._producer

    def _check(self, producer: Any) -> None:
        """After a failed send: drop ``producer`` if it is broken (once, whichever thread sees it first)."""
        if not producer_is_broken(producer):
            return
        with self._lock:
            if self._producer is not producer:
                return  # another thread already replaced it
            self._producer = None
            self._retry_at = time.monotonic() + self._backoff_s
            self._backoff_s = min(self._backoff_s * 2, RECREATE_MAX_BACKOFF_S)
        log.warning("Kafka producer in a fatal state: closing it, a new one is opened on the next send")
        close_quietly(producer)

    def _succeeded(self) -> None:
        self._backoff_s = RECREATE_BACKOFF_S

    # -- sending -------------------------------------------------------------------------------------
    def send_async(self, event: UserEvent) -> Any:
        """Queue one already-validated event; returns kafka-python's future."""
        return self._current().send(self.topic, key=event.user_id.encode(), value=event.to_json_bytes())

    def send_all(self, events: Iterable[UserEvent | Mapping[str, Any]]) -> list[Ack]:
        """Validate, send and wait for the broker's acknowledgement of every event (in order).

        Raises a ``KafkaError`` (or ``OSError``) when any event was not acknowledged; a producer left
        in a fatal state is replaced before the next send."""
        evs = prepare(list(events), self.max_event_bytes, self.max_lateness_s, self.max_future_s)
        producer = self._current()
        try:
            futures = [
                producer.send(self.topic, key=e.user_id.encode(), value=e.to_json_bytes()) for e in evs
            ]
            producer.flush(timeout=self.kafka.send_timeout_s)
            acks = []
            for f in futures:
                md = f.get(timeout=self.kafka.send_timeout_s)  # raises KafkaError when not acknowledged
                acks.append(Ack(md.partition, md.offset))
        except Exception:
            self._check(producer)
            raise
        self._succeeded()
        return acks

    def send_raw(self, value: bytes, key: bytes | None, topic: str | None = None) -> Any:
        """Send bytes as they are (tests and the simulator's malformed-event mode); returns the future."""
        return self._current().send(topic or self.topic, key=key, value=value)

    def flush(self, timeout_s: float | None = None) -> None:
        producer = self._current()
        try:
            producer.flush(timeout=timeout_s or self.kafka.send_timeout_s)
        except Exception:
            self._check(producer)
            raise

    def close(self) -> None:
        with self._lock:
            self._closed = True
            producer, self._producer = self._producer, None
        if producer is not None:
            producer.close(timeout=self.kafka.send_timeout_s)

    def __enter__(self) -> "EventProducer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
