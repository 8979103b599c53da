"""Exposure events to Kafka, off the request path.

An exposure records what one response showed: ``request_id``, ``user_id``, ``experiment``,
``variant``, the ``items`` with their ``positions``, and for interleaved lists the contributing arm of
each item (``teams``). The analysis (``cascade experiments report``) joins them with the user events
(``user-events``, same ``request_id``) to compute per-variant click-through, add-to-cart and
conversion rates. Schema: ``docs/experiments.md`` ("Exposure events").

:meth:`ExposureLogger.offer` only appends to a bounded in-memory queue (``put_nowait``): when the
queue is full the event is dropped and counted (``cascade_exposures_total{outcome="dropped"}``); a
request never waits for Kafka. One background thread owns the kafka-python producer, serializes the
events and sends them keyed by ``user_id``; while the broker is unreachable it retries the connection
with backoff and the queue absorbs (then drops) the backlog. With no bootstrap servers configured no
logger exists at all.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from typing import Any

from cascade_router import metrics

log = logging.getLogger("cascade.router.exposures")
SCHEMA = "cascade.exposure.v1"
_STOP = object()


class ExposureLogger:
    def __init__(
        self,
        bootstrap_servers: str,
        topic: str = "exposures",
        *,
        queue_size: int = 10_000,
        client_kwargs: dict[str, Any] | None = None,
        connect_backoff_s: tuple[float, float] = (0.5, 10.0),
    ) -> None:
        if not bootstrap_servers.strip():
            raise ValueError("ExposureLogger needs bootstrap servers (leave exposures off instead)")
        # kafka-python logs every connection attempt (several lines per second during an outage); the
        # logger reports outages and failed sends itself, rate-limited.
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self._q: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._client_kwargs = dict(client_kwargs or {})
        self._backoff = connect_backoff_s
        self._stop = threading.Event()
        self._last_error_log = float("-inf")
        self._errors_suppressed = 0
        self._thread: threading.Thread | None = None
        self._producer: Any = None
        self._queued = metrics.EXPOSURES.labels("queued")
        self._dropped = metrics.EXPOSURES.labels("dropped")
        self._sent = metrics.EXPOSURES.labels("sent")
        self._failed = metrics.EXPOSURES.labels("failed")

    # -- request path ----------------------------------------------------------------------
    def offer(self, event: dict[str, Any]) -> bool:
        """Queue one event without blocking; False (and counted) when the queue is full."""
        try:
            self._q.put_nowait(event)
        except queue.Full:
            self._dropped.inc()
            return False
        self._queued.inc()
        return True

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="exposure-logger", daemon=True)
            self._thread.start()

    def close(self, timeout_s: float = 5.0) -> None:
        """Send what is queued (up to ``timeout_s``), then stop the thread and the producer."""
        if self._thread is None:
            return
        if self._producer is None:  # not connected: do not wait for a broker that is not there
            self._stop.set()
        try:
            self._q.put(_STOP, timeout=1.0)
        except queue.Full:
            self._stop.set()
        self._thread.join(timeout_s)
        self._stop.set()
        self._thread.join(timeout_s)
        self._thread = None

    # -- background thread -----------------------------------------------------------------
    def _connect(self) -> Any:
        from kafka import KafkaProducer

        delay = self._backoff[0]
        while not self._stop.is_set():
            try:
                producer = KafkaProducer(
                    bootstrap_servers=self.bootstrap_servers.split(","),
                    client_id="cascade-router-exposures",
                    acks=1,
                    linger_ms=50,
                    retries=3,
                    max_block_ms=5000,
                    # bounded connection attempts, so a stop request is seen within seconds
                    bootstrap_timeout_ms=3000,
                    reconnect_backoff_max_ms=2000,
                    **self._client_kwargs,
                )
                log.info("exposure logging to %s topic %s", self.bootstrap_servers, self.topic,
                         extra={"event": "exposures_connected"})
                return producer
            except Exception as e:  # kafka-python raises NoBrokersAvailable, KafkaError, OSError...
                log.warning("exposure logger cannot reach Kafka at %s (%s); retrying in %.1fs",
                            self.bootstrap_servers, e, delay, extra={"event": "exposures_unreachable"})
                self._stop.wait(delay)
                delay = min(delay * 2, self._backoff[1])
        return None

    def _on_error(self, exc: Exception) -> None:
        self._failed.inc()
        now = time.monotonic()
        if now - self._last_error_log < 10.0:
            self._errors_suppressed += 1
            return
        more = f" (+{self._errors_suppressed} more in the last 10s)" if self._errors_suppressed else ""
        self._last_error_log, self._errors_suppressed = now, 0
        log.warning("exposure send failed: %s%s", exc, more, extra={"event": "exposure_send_failed"})

    def _send(self, event: dict[str, Any]) -> None:
        if self._producer is None:
            self._producer = self._connect()
            if self._producer is None:
                self._failed.inc()
                return
        value = json.dumps(event, separators=(",", ":")).encode()
        key = str(event.get("user_id", "")).encode()
        try:
            fut = self._producer.send(self.topic, key=key, value=value)
        except Exception as e:  # buffer full for max_block_ms, serialization, closed producer
            self._on_error(e)
            return
        fut.add_callback(lambda _md: self._sent.inc())
        fut.add_errback(self._on_error)

    def _run(self) -> None:
        try:
            self._producer = self._connect()  # eagerly: the first exposure should not wait for it
            while True:
                try:
                    item = self._q.get(timeout=0.2)
                except queue.Empty:
                    if self._stop.is_set():
                        break
                    continue
                metrics.EXPOSURE_QUEUE.set(self._q.qsize())
                if item is _STOP:
                    break
                if self._producer is None and self._stop.is_set():
                    self._failed.inc()  # stopping without a connection: cannot be sent
                    continue
                self._send(item)
        finally:
            if self._producer is not None:
                try:
                    self._producer.flush(timeout=5)
                    self._producer.close(timeout=5)
                except Exception as e:  # shutting down: report, never raise from the thread
                    log.warning("exposure producer close failed: %s", e)


def exposure_event(
    *,
    request_id: str,
    user_id: str,
    experiment: str,
    variant: str,
    kind: str,
    forced: bool,
    traffic: float | None,
    model_version: str,
    degraded: bool,
    items: list[str],
    sources: list[str],
    teams: list[str] | None = None,
    arms: dict[str, str] | None = None,
    ts_ms: int | None = None,
) -> dict[str, Any]:
    """One exposure event (the ``exposures`` topic's v1 schema)."""
    ev: dict[str, Any] = {
        "schema": SCHEMA,
        "request_id": request_id,
        "user_id": user_id,
        "ts": int(time.time() * 1000) if ts_ms is None else ts_ms,
        "experiment": experiment,
        "variant": variant,
        "kind": kind,
        "forced": forced,
        "traffic": traffic,
        "model_version": model_version,
        "degraded": degraded,
        "items": items,
        "positions": list(range(1, len(items) + 1)),
        "sources": sources,
    }
    if teams is not None:
        ev["teams"] = teams
        ev["arms"] = arms or {}
    return ev
