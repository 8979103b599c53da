"""One stream pipeline: a consumer group turning events into one real-time feature view.

Two pipelines make up the worker, because the event topic is partitioned by user while item features
need every event of an item in one place (the Kafka Streams "repartition" pattern):

``users``  consumes ``user-events`` (keyed by user_id), writes ``user_realtime``, dead-letters malformed
           events, and forwards valid events to ``user-events.by-item``, to the partition their item_id
           hashes to (one message per batch and partition, :mod:`cascade_stream.decode`);
``items``  consumes ``user-events.by-item``, writes ``item_realtime``.

Each micro-batch (whatever one ``poll`` returns, waiting at most ``poll_timeout_ms``) runs these steps:

1. ``decode``     validate every message (:mod:`cascade_stream.decode`); invalid ones become dead letters;
2. ``aggregate``  fold valid events into their entity's window state (idempotent per event_id);
3. ``publish``    queue dead letters (original bytes + ``x-dlq-reason``) and forwarded events;
4. ``write``      write the touched entities' absolute feature values to the online store;
5. ``flush``      wait until the broker acknowledged everything queued in step 3;
6. ``commit``     commit the batch's offsets — only now, so a crash anywhere above redelivers the batch.

A failing write or flush is retried (the partitions are paused meanwhile so the group membership
stays alive) and nothing is committed until it succeeds. Assigned partitions first rebuild their state
(:mod:`cascade_stream.replay`, in a background thread) and are paused until it is ready.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from kafka import ConsumerRebalanceListener
from kafka.errors import CommitFailedError, KafkaError
from kafka.partitioner.default import murmur2
from redis.exceptions import RedisError

from cascade_stream import metrics as m
from cascade_stream.decode import (
    BY_ITEM_FORMAT,
    FORMAT_HEADER,
    InvalidEvent,
    Rules,
    decode_record,
    encode_by_item,
)
from cascade_stream.features import UNKNOWN_CATEGORY, EntityState, Event, Kind, entity_of
from cascade_stream.producer import close_quietly, producer_is_broken
from cascade_stream.replay import PartitionRebuild, rebuild
from cascade_stream.settings import KafkaConfig, TopicConfig
from cascade_stream.writer import FeatureRow, FeatureWriter

log = logging.getLogger("cascade.stream.pipeline")

# Outages worth waiting out; anything else (a bug, a missing feature view) stops the worker, uncommitted.
RETRYABLE: tuple[type[BaseException], ...] = (KafkaError, OSError, sqlite3.OperationalError, RedisError)

DLQ_REASON = "x-dlq-reason"
DLQ_FIELD = "x-dlq-field"
DLQ_SOURCE_TOPIC = "x-source-topic"
DLQ_SOURCE_PARTITION = "x-source-partition"
DLQ_SOURCE_OFFSET = "x-source-offset"
DLQ_SOURCE_TIMESTAMP = "x-source-timestamp"
DLQ_PIPELINE = "x-dlq-pipeline"


@dataclass(frozen=True)
class Role:
    """What distinguishes the two pipelines."""

    name: str
    kind: Kind
    key_field: str | None  # the message key must equal this event field (None: internal format)
    topic: str
    forward_topic: str | None
    by_item: bool  # input in the internal by-item format (cascade_stream.decode)

    @classmethod
    def users(cls, topics: TopicConfig) -> "Role":
        return cls("users", "user", "user_id", topics.events, topics.by_item, False)

    @classmethod
    def items(cls, topics: TopicConfig) -> "Role":
        return cls("items", "item", None, topics.by_item, None, True)


@dataclass
class Batch:
    """One micro-batch as it moves through the steps."""

    records: list[Any]
    valid: list[tuple[int, Event, int]] = field(default_factory=list)  # (partition, event, ingest ms)
    rejected: list[tuple[Any, InvalidEvent]] = field(default_factory=list)
    forward: list[tuple[Event, int]] = field(default_factory=list)
    dirty: dict[tuple[int, str], EntityState] = field(default_factory=dict)
    fresh: list[Event] = field(default_factory=list)  # events whose effect this batch writes
    futures: list[Any] = field(default_factory=list)
    unsent: bool = False  # publishing failed part-way: _flush re-publishes everything
    offsets: dict[int, int] = field(default_factory=dict)  # partition -> next offset
    outcomes: dict[str, int] = field(default_factory=dict)  # result -> events, counted once committed


class StreamPipeline:
    """Consume ``role.topic`` in group ``group_id`` and keep ``role.kind``'s view fresh."""

    def __init__(
        self,
        role: Role,
        kafka: KafkaConfig,
        group_id: str,
        dlq_topic: str,
        rules: Rules,
        writer_factory: Callable[[], FeatureWriter],
        catalog: Mapping[str, str] | None = None,
        poll_timeout_ms: int = 50,
        write_retry_s: float = 1.0,
    ) -> None:
        self.role = role
        self.kafka = kafka
        self.group_id = group_id
        self.dlq_topic = dlq_topic
        self.rules = rules
        self.catalog = catalog or {}
        self.poll_timeout_ms = poll_timeout_ms
        self.write_retry_s = write_retry_s
        self._writer_factory = writer_factory
        self.writer: FeatureWriter | None = None
        self.states: dict[int, dict[str, EntityState]] = {}  # partition -> entity -> state (ready ones)
        self.next_offsets: dict[int, int] = {}
        self._rebuilding: dict[int, int] = {}  # partition -> generation of the rebuild in flight
        # partition -> (state, offset we committed last), kept from a revocation in case it comes back
        self._held: dict[int, tuple[dict[str, EntityState], int | None]] = {}
        self._generation = 0
        self._rebuilds: list[tuple[int, Future]] = []
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"rebuild-{role.name}")
        self._cancel = threading.Event()
        self.stop_event = threading.Event()
        self.consumer: Any = None
        self.producer: Any = None
        self._forward_partitions: list[int] = []

    # -- lifecycle -----------------------------------------------------------------------------------
    def open(self) -> None:
        from kafka import KafkaConsumer, KafkaProducer

        self.writer = self._writer_factory()
        self.producer = KafkaProducer(**self.kafka.producer())
        if self.role.forward_topic:
            # items are spread over the by-item partitions exactly as keyed messages would be
            parts = self.producer.partitions_for(self.role.forward_topic)
            if not parts:
                raise RuntimeError(f"topic {self.role.forward_topic} has no partitions (does it exist?)")
            self._forward_partitions = sorted(parts)
        self.consumer = KafkaConsumer(**self.kafka.consumer(self.group_id))
        self.consumer.subscribe([self.role.topic], listener=_Listener(self))

    def close(self) -> None:
        self._cancel.set()
        self._executor.shutdown(wait=True, cancel_futures=True)
        if self.consumer is not None:
            self.consumer.close()
        if self.producer is not None:
            self.producer.close(timeout=self.kafka.send_timeout_s)

    def run(self) -> None:
        """Process micro-batches until :attr:`stop_event` is set."""
        self.open()
        log.info("pipeline %s consuming %s as group %s", self.role.name, self.role.topic, self.group_id)
        try:
            while not self.stop_event.is_set():
                self.step()
        finally:
            self.close()

    def step(self) -> int:
        """Poll once and process what came back; returns the number of records."""
        polled = self.consumer.poll(timeout_ms=self.poll_timeout_ms)
        self._update_lag()  # what is still to process as of this fetch (this batch included)
        self._install_rebuilds()
        records = [r for recs in polled.values() for r in recs]
        if records:
            self.process(records)
        return len(records)

    # -- assignment ----------------------------------------------------------------------------------
    def on_revoked(self, partitions: list[int]) -> None:
        for p in partitions:
            st = self.states.pop(p, None)
            committed = self.next_offsets.pop(p, None)
            if st is not None:
                self._held[p] = (st, committed)
            self._rebuilding.pop(p, None)
            m.LAG.labels(self.role.name, str(p)).set(0)
        self._publish_assignment()

    def on_assigned(self, partitions: list[int]) -> None:
        from kafka import TopicPartition

        todo = [p for p in partitions if p not in self.states and p not in self._rebuilding]
        if not todo:
            return
        self.consumer.pause(*[TopicPartition(self.role.topic, p) for p in todo])
        self._generation += 1
        gen = self._generation
        for p in todo:
            self._rebuilding[p] = gen
        held = {p: self._held.pop(p) for p in todo if p in self._held}
        self._held.clear()  # partitions not handed back: another member owns them now
        fut = self._executor.submit(
            rebuild,
            self.kafka,
            self.group_id,
            self.role.topic,
            todo,
            self.role.kind,
            self.rules,
            self.role.by_item,
            self.catalog,
            self._cancel,
            resume=held,
        )
        self._rebuilds.append((gen, fut))
        self._publish_assignment()
        log.info("pipeline %s assigned %s: rebuilding state", self.role.name, todo)

    def _install_rebuilds(self) -> None:
        from kafka import TopicPartition

        pending = []
        for gen, fut in self._rebuilds:
            if not fut.done():
                pending.append((gen, fut))
                continue
            results: list[PartitionRebuild] = fut.result()  # a failed rebuild stops the worker (restart)
            ready = []
            for res in results:
                if self._rebuilding.get(res.partition) != gen:
                    continue  # revoked (or reassigned) meanwhile: stale
                del self._rebuilding[res.partition]
                self.states[res.partition] = res.states
                m.REPLAYED.labels(self.role.name).inc(res.replayed)
                tp = TopicPartition(self.role.topic, res.partition)
                # the state holds exactly the events before the committed offset: continue there
                if res.committed:
                    self.consumer.seek(tp, res.committed)
                else:
                    self.consumer.seek_to_beginning(tp)
                ready.append(tp)
            if ready:
                self.consumer.resume(*ready)
                log.info("pipeline %s ready on partitions %s", self.role.name, [tp.partition for tp in ready])
        self._rebuilds = pending
        self._publish_assignment()

    def _publish_assignment(self) -> None:
        m.ASSIGNED.labels(self.role.name, "ready").set(len(self.states))
        m.ASSIGNED.labels(self.role.name, "rebuilding").set(len(self._rebuilding))
        m.ENTITIES.labels(self.role.name).set(sum(len(s) for s in self.states.values()))

    @property
    def ready_partitions(self) -> list[int]:
        return sorted(self.states)

    # -- the micro-batch steps ---------------------------------------------------------------------
    def process(self, records: list[Any]) -> None:
        batch = Batch(records)
        name = self.role.name
        m.BATCH_EVENTS.labels(name).observe(len(records))
        for step, fn in (
            ("decode", self._decode),
            ("aggregate", self._aggregate),
            ("publish", self._publish_step),
            ("write", self._write),
            ("flush", self._flush),
            ("commit", self._commit),
        ):
            t0 = time.perf_counter()
            fn(batch)
            m.STEP_SECONDS.labels(name, step).observe(time.perf_counter() - t0)

    def _decode(self, batch: Batch) -> None:
        for r in batch.records:
            if r.partition not in self.states:
                # not ours any more / not rebuilt yet: never committed here, redelivered to its owner
                log.debug("skipping %s[%d]@%d: partition not ready", r.topic, r.partition, r.offset)
                continue
            batch.offsets[r.partition] = max(batch.offsets.get(r.partition, 0), r.offset + 1)
            try:
                events = decode_record(r, self.rules, self.role.by_item)
            except InvalidEvent as e:
                batch.rejected.append((r, e))
                continue
            batch.valid.extend((r.partition, e, ingest) for e, ingest in events)

    def _aggregate(self, batch: Batch) -> None:
        kind = self.role.kind
        processed = duplicates = stale = 0
        for partition, e, ingest in batch.valid:
            states = self.states[partition]
            ent = entity_of(e, kind)
            st = states.get(ent)
            if st is None:
                st = states[ent] = EntityState(kind)
            if e.event_id in st.ids:
                duplicates += 1
                continue
            if st.add(e, self.catalog.get(e.item_id, UNKNOWN_CATEGORY)):
                processed += 1
                batch.dirty[(partition, ent)] = st
                batch.fresh.append(e)
            else:
                stale += 1
            batch.forward.append((e, ingest))
        batch.outcomes = {
            "processed": processed,
            "duplicate": duplicates,
            "stale": stale,
            "dlq": len(batch.rejected),
        }

    def _publish_step(self, batch: Batch) -> None:
        try:
            self._publish(batch)
        except RETRYABLE as e:  # the producer is broken or the broker gone: _flush retries it all
            log.warning("pipeline %s publish failed, retried before the commit: %s", self.role.name, e)
            batch.unsent = True

    def _renew_producer(self) -> None:
        """Replace a producer kafka-python left in a fatal state (e.g. ``InitProducerIdResponse:
        UnknownError`` after a broker restart lost its producer ids): it never sends again."""
        from kafka import KafkaProducer

        old = self.producer
        if not producer_is_broken(old):
            return
        log.warning("pipeline %s: Kafka producer in a fatal state, re-creating it", self.role.name)
        close_quietly(old)
        self.producer = KafkaProducer(**self.kafka.producer())  # KafkaError when no broker: retried

    def _publish(self, batch: Batch) -> None:
        for r, err in batch.rejected:
            headers = [
                (DLQ_REASON, err.reason.encode()),
                (DLQ_FIELD, err.field.encode()),
                (DLQ_PIPELINE, self.role.name.encode()),
                (DLQ_SOURCE_TOPIC, r.topic.encode()),
                (DLQ_SOURCE_PARTITION, str(r.partition).encode()),
                (DLQ_SOURCE_OFFSET, str(r.offset).encode()),
                (DLQ_SOURCE_TIMESTAMP, str(r.timestamp).encode()),
            ]
            headers += [(k, v) for k, v in (r.headers or []) if not k.startswith("x-dlq-")]
            batch.futures.append(
                self.producer.send(self.dlq_topic, key=r.key, value=r.value, headers=headers)
            )
            m.DLQ.labels(self.role.name, err.field).inc()
            log.warning("dead-lettered %s[%d]@%d: %s", r.topic, r.partition, r.offset, err.reason)
        if self.role.forward_topic and batch.forward:
            groups: dict[int, list[tuple[Event, int]]] = {}
            n = len(self._forward_partitions)
            for e, ingest in batch.forward:
                p = self._forward_partitions[(murmur2(e.item_id.encode()) & 0x7FFFFFFF) % n]
                groups.setdefault(p, []).append((e, ingest))
            for p, evs in groups.items():
                batch.futures.append(
                    self.producer.send(
                        self.role.forward_topic,
                        partition=p,
                        value=encode_by_item(evs),
                        timestamp_ms=max(ingest for _, ingest in evs),
                        headers=[(FORMAT_HEADER, BY_ITEM_FORMAT.encode())],
                    )
                )

    def _rows(self, batch: Batch) -> list[FeatureRow]:
        """Absolute values of the touched entities of partitions still owned (a rebalance during a
        retry hands the others to a new owner, which rewrites them)."""
        return [
            FeatureRow(ent, st.last_ms, st.features())
            for (p, ent), st in batch.dirty.items()
            if p in self.states
        ]

    def _write(self, batch: Batch) -> None:
        if not batch.dirty:
            return
        writer = self.writer
        assert writer is not None
        view = writer.view
        written = 0

        def write() -> None:
            nonlocal written
            rows = self._rows(batch)
            writer.write(rows)
            written = len(rows)

        self._retry(
            write, f"write {len(batch.dirty)} rows to {view}", lambda: m.WRITE_FAILURES.labels(view).inc()
        )
        done = time.time()
        m.ROWS_WRITTEN.labels(view).inc(written)
        hist = m.FRESHNESS.labels(view)
        for e in batch.fresh:
            hist.observe(max(0.0, done - e.ts / 1000))

    def _flush(self, batch: Batch) -> None:
        if not batch.futures and not batch.unsent:
            return

        def wait() -> None:
            if batch.unsent:
                # unacknowledged sends are re-queued: dead letters and forwards may then appear
                # twice, which the item pipeline's event_id de-duplication absorbs
                self._renew_producer()
                batch.futures = []
                self._publish(batch)
                batch.unsent = False
            self.producer.flush(timeout=self.kafka.send_timeout_s)
            for f in batch.futures:
                f.get(timeout=self.kafka.send_timeout_s)

        def resend() -> None:
            batch.unsent = True

        self._retry(wait, "publish dead letters / forwarded events", resend)

    def _commit(self, batch: Batch) -> None:
        from kafka import TopicPartition
        from kafka.structs import OffsetAndMetadata

        offsets = {
            TopicPartition(self.role.topic, p): OffsetAndMetadata(o, "", -1)
            for p, o in batch.offsets.items()
            if p in self.states
        }
        if not offsets:
            return
        try:
            self.consumer.commit(offsets=offsets)
        except CommitFailedError as e:
            # the group rebalanced under us: the new owner redelivers the batch (idempotent)
            log.warning("pipeline %s commit failed, batch will be redelivered: %s", self.role.name, e)
            return
        for tp in offsets:
            self.next_offsets[tp.partition] = batch.offsets[tp.partition]
        for result, n in batch.outcomes.items():
            m.EVENTS.labels(self.role.name, result).inc(n)

    def _retry(self, fn: Callable[[], None], what: str, on_failure: Callable[[], None]) -> None:
        """Run ``fn`` until it succeeds, keeping the group membership alive with paused polls."""
        attempt = 0
        while True:
            try:
                fn()
                if attempt:
                    self.consumer.resume(
                        *[tp for tp in self.consumer.assignment() if tp.partition in self.states]
                    )
                return
            except RETRYABLE as e:  # store/broker outage: retry; the batch stays uncommitted
                if self.stop_event.is_set():
                    raise
                attempt += 1
                log.error(
                    "%s failed (attempt %d), retrying in %.1fs: %s", what, attempt, self.write_retry_s, e
                )
                on_failure()
                self.consumer.pause(*self.consumer.assignment())
                deadline = time.monotonic() + self.write_retry_s
                while time.monotonic() < deadline:
                    self.consumer.poll(timeout_ms=100)  # paused: returns nothing, keeps us in the group

    def _update_lag(self) -> None:
        from kafka import TopicPartition

        for p, nxt in self.next_offsets.items():
            hw = self.consumer.highwater(TopicPartition(self.role.topic, p))
            if hw is not None:
                m.LAG.labels(self.role.name, str(p)).set(max(0, hw - nxt))


class _Listener(ConsumerRebalanceListener):
    """kafka-python rebalance callbacks -> the pipeline (runs inside ``poll``)."""

    def __init__(self, pipeline: StreamPipeline) -> None:
        self.pipeline = pipeline

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.pipeline.on_revoked([tp.partition for tp in revoked])

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.pipeline.on_assigned([tp.partition for tp in assigned])
