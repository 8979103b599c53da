"""Rebuild a partition's window state after an assignment (start, restart, rebalance) without re-counting.

The worker commits offset ``c`` only after everything before ``c`` is in the online store. A new owner
of the partition re-reads the log *before* ``c`` — only as far back as can still matter — and folds
those events into fresh :class:`~cascade_stream.features.EntityState` s without writing anything; then it
resumes consuming at ``c``. Events after ``c`` that the previous owner had already written are processed
again, but the rebuilt state holds exactly the events before ``c``, so each is counted once and the
values written are the same absolute values.

How far back: an event can affect a future write only if it is inside the largest window of an
entity's latest event. Future events are ingested no earlier than ``resume`` (the timestamp of the
message at ``c``, or now), and event times lie within ``[ingest - max_lateness, ingest + max_future]``
of their ingestion (the worker dead-letters the rest). So events ingested before
``resume - MAX_WINDOW - max_lateness - 2 * max_future`` never matter; replay starts at the
``offsets_for_times`` answer for that time and skips older messages it still meets. An answer Kafka
cannot give (or Tansu answers approximately, see ``cascade_stream.broker``) starts at the beginning:
reading more than needed is safe.

Keeping state across a re-assignment (``resume``): a rebalance that hands a partition back to the same
process (a broker restart makes every member rejoin) does not need a replay when the process still
holds that partition's state. It is reused when the group's committed offset is the one this process
committed last (nobody else advanced it), and also when the group has *no* committed offset any more:
the broker lost its log and offsets (Tansu with ``memory://`` storage after a restart). On Apache
Kafka committed offsets do not expire while the group has members (KIP-211, Kafka >= 2.1), and the
state is only held by a live member, so there this case means the same: the broker lost the offsets.
(A log-end check instead — "the log is shorter than our offset" — races with the producers refilling
the recreated topic and was measured to lose events: `make chaos` broker phase, lost=55.) Then the
in-memory state is the only record of the lost log, and the worker consumes the new log from its
start; redelivered events are dropped by the per-entity ``event_id`` de-duplication. Replaying the
(empty) new log instead would overwrite every entity's counts with post-restart counts only.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Mapping

from cascade_features.stream_definitions import MAX_WINDOW_MS

from cascade_stream.decode import InvalidEvent, Rules, decode_record
from cascade_stream.features import UNKNOWN_CATEGORY, EntityState, Kind, entity_of
from cascade_stream.settings import KafkaConfig

log = logging.getLogger("cascade.stream.replay")


@dataclass
class PartitionRebuild:
    partition: int
    committed: int | None
    start: int | None
    states: dict[str, EntityState] = field(default_factory=dict)
    replayed: int = 0
    seconds: float = 0.0


def replay_from_ms(resume_ms: int, rules: Rules) -> int:
    return resume_ms - MAX_WINDOW_MS - rules.max_lateness_ms - 2 * rules.max_future_ms


def _resume_ms(consumer: object, tp: object, committed: int, deadline: float) -> int:
    """Broker timestamp of the message at ``committed`` (the first one to process), or now."""
    consumer.seek(tp, committed)  # type: ignore[attr-defined]
    while time.monotonic() < deadline:
        batch = consumer.poll(timeout_ms=200, max_records=1)  # type: ignore[attr-defined]
        for recs in batch.values():
            for r in recs:
                if r.offset >= committed:
                    return min(int(r.timestamp), int(time.time() * 1000))
        hw = consumer.highwater(tp)  # type: ignore[attr-defined]
        if hw is not None and hw <= committed:
            break
    return int(time.time() * 1000)


def rebuild(
    kafka: KafkaConfig,
    group_id: str,
    topic: str,
    partitions: list[int],
    kind: Kind,
    rules: Rules,
    by_item: bool = False,
    catalog: Mapping[str, str] | None = None,
    cancel: threading.Event | None = None,
    timeout_s: float = 600.0,
    resume: Mapping[int, tuple[dict[str, EntityState], int | None]] | None = None,
) -> list[PartitionRebuild]:
    """Window state of ``partitions`` as of the group's committed offsets (see module docstring).

    ``resume``: partition -> (state, offset this process committed last) held from before a revocation.
    """
    from kafka import KafkaConsumer, TopicPartition

    cat = catalog or {}
    out: list[PartitionRebuild] = []
    consumer = KafkaConsumer(**kafka.consumer(group_id, max_poll_records=5000))
    try:
        for p in partitions:
            t0 = time.perf_counter()
            tp = TopicPartition(topic, p)
            committed = consumer.committed(tp)
            held = (resume or {}).get(p)
            if held is not None and (committed is None or committed == held[1]):
                # same owner again (or the broker lost the group's offsets): keep what we hold
                out.append(PartitionRebuild(p, committed, committed, states=held[0]))
                if committed is None and held[1]:
                    log.warning(
                        "%s[%d]: the group's committed offset is gone (was %d): the broker lost its log; "
                        "keeping the in-memory state of %d entities and consuming the new log from its start",
                        topic, p, held[1], len(held[0]),
                    )
                continue
            res = PartitionRebuild(p, committed, None)
            out.append(res)
            if not committed:
                continue  # nothing processed yet: start from scratch
            deadline = time.monotonic() + timeout_s
            consumer.assign([tp])
            since = replay_from_ms(_resume_ms(consumer, tp, committed, deadline), rules)
            found = consumer.offsets_for_times({tp: since}).get(tp)
            start = found.offset if found is not None and found.timestamp >= 0 else None
            if start is None or start > committed:
                start = consumer.beginning_offsets([tp])[tp]
            res.start = start
            consumer.seek(tp, start)
            pos = start
            while pos < committed:
                if cancel is not None and cancel.is_set():
                    return out
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"rebuilding {topic}[{p}] took over {timeout_s}s (at {pos}/{committed})"
                    )
                for recs in consumer.poll(timeout_ms=500).values():
                    for r in recs:
                        if r.offset >= committed:
                            pos = committed
                            break
                        pos = r.offset + 1
                        if r.timestamp < since:
                            continue  # every event inside was ingested before `since`
                        try:
                            events = decode_record(r, rules, by_item)
                        except InvalidEvent:
                            continue  # dead-lettered by the previous owner
                        for e, ingest in events:
                            if ingest < since:
                                continue
                            ent = entity_of(e, kind)
                            st = res.states.get(ent)
                            if st is None:
                                st = res.states[ent] = EntityState(kind)
                            st.add(e, cat.get(e.item_id, UNKNOWN_CATEGORY))
                            res.replayed += 1
            res.seconds = time.perf_counter() - t0
            log.info(
                "rebuilt %s[%d]: offsets %s..%s, %d events, %d entities in %.2fs",
                topic,
                p,
                start,
                committed,
                res.replayed,
                len(res.states),
                res.seconds,
            )
        return out
    finally:
        consumer.close()
