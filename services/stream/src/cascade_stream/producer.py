"""Producer SDK: validated user events to Kafka, keyed by ``user_id``, acknowledged by all replicas.

    from cascade_stream.producer import EventProducer
    with EventProducer(KafkaConfig(bootstrap_servers="127.0.0.1:9092")) as p:
        p.send_all([{"event_id": "...", "event_type": "click", "user_id": "7", "item_id": "42",
                     "timestamp": 1714564800000}])       # returns after the broker acknowledged

Events are validated against the v1 contract before anything is sent (:class:`InvalidEvent` names the
field), including the event-time bounds the worker enforces, so a producer learns of a bad event at
once instead of from the dead-letter topic.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from cascade_stream.events import (
    MAX_EVENT_BYTES,
    InvalidEvent,
    UserEvent,
    check_event_time,
    validate_event,
)
from cascade_stream.settings import KafkaConfig


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
        self._producer = KafkaProducer(**self.kafka.producer())

    def send_async(self, event: UserEvent) -> Any:
        """Queue one already-validated event; returns kafka-python's future."""
        return self._producer.send(self.topic, key=event.user_id.encode(), value=event.to_json_bytes())

    def send_all(self, events: Iterable[UserEvent | Mapping[str, Any]]) -> list[Ack]:
        """Validate, send and wait for the broker's acknowledgement of every event (in order)."""
        evs = prepare(list(events), self.max_event_bytes, self.max_lateness_s, self.max_future_s)
        futures = [self.send_async(e) for e in evs]
        self._producer.flush(timeout=self.kafka.send_timeout_s)
        acks = []
        for f in futures:
            md = f.get(timeout=self.kafka.send_timeout_s)  # raises KafkaError when not acknowledged
            acks.append(Ack(md.partition, md.offset))
        return acks

    def send_raw(self, value: bytes, key: bytes | None, topic: str | None = None) -> Any:
        """Send bytes as they are (tests and the simulator's malformed-event mode); returns the future."""
        return self._producer.send(topic or self.topic, key=key, value=value)

    def flush(self, timeout_s: float | None = None) -> None:
        self._producer.flush(timeout=timeout_s or self.kafka.send_timeout_s)

    def close(self) -> None:
        self._producer.close(timeout=self.kafka.send_timeout_s)

    def __enter__(self) -> "EventProducer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
