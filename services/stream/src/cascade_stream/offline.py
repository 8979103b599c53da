"""The offline side of the real-time features: the same values, computed from the event log.

    python -m cascade_stream.offline --from-kafka [--items PATH] [--out DIR]
    python -m cascade_stream.offline --events-file events.jsonl ...

Reads every event of ``user-events`` (validated by the worker's own rules, so dead letters are left
out exactly as the worker leaves them out) or a JSON-lines file, computes the features with
:func:`cascade_stream.features.compute_features` — the implementation the worker runs — and writes the
batch sources of the stream views (``<data>/feast/stream/{user,item}_realtime.parquet``: one row per
entity and event time, the value as of that time) plus the validated event log
(``user_events.parquet``). Training then point-in-time joins them with ``get_historical_features``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd
from cascade_features.definitions import CREATED_COLUMN, TIMESTAMP_COLUMN
from cascade_features.stream_definitions import (
    EVENT_LOG_FILE,
    ITEM_REALTIME_VIEW,
    USER_REALTIME_VIEW,
    offline_table_path,
    stream_offline_dir,
)

from cascade_stream.decode import InvalidEvent, Rules, decode
from cascade_stream.events import UserEvent, validate_event
from cascade_stream.features import EVENT_COLUMNS, compute_features
from cascade_stream.settings import KafkaConfig, KafkaSettings

log = logging.getLogger("cascade.stream.offline")


@dataclass(frozen=True)
class EventLog:
    events: pd.DataFrame  # EVENT_COLUMNS (+ request_id), log order
    rejected: int


def events_frame(events: Iterable[UserEvent]) -> pd.DataFrame:
    rows = [(e.event_id, e.event_type.value, e.user_id, e.item_id, e.timestamp, e.request_id) for e in events]
    return pd.DataFrame(rows, columns=[*EVENT_COLUMNS, "request_id"]).astype({"timestamp": "int64"})


def read_topic(kafka: KafkaConfig, topic: str, rules: Rules, timeout_s: float = 600.0) -> EventLog:
    """Every message of ``topic`` up to its current end, validated; partition by partition, in order."""
    from kafka import KafkaConsumer, TopicPartition

    from cascade_stream.broker import high_watermarks

    ends = high_watermarks(kafka, topic)
    consumer = KafkaConsumer(**kafka.consumer(None, max_poll_records=5000))
    valid: list[UserEvent] = []
    rejected = 0
    try:
        deadline = time.monotonic() + timeout_s
        for p, end in sorted(ends.items()):
            tp = TopicPartition(topic, p)
            consumer.assign([tp])
            consumer.seek_to_beginning(tp)
            pos = 0
            while pos < end:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"reading {topic}[{p}] took over {timeout_s}s ({pos}/{end})")
                for recs in consumer.poll(timeout_ms=500).values():
                    for r in recs:
                        if r.offset >= end:
                            pos = end
                            break
                        pos = r.offset + 1
                        try:
                            valid.append(decode(r.value, r.key, r.timestamp, rules))
                        except InvalidEvent:
                            rejected += 1
    finally:
        consumer.close()
    return EventLog(events_frame(valid), rejected)


def read_jsonl(path: Path | str) -> EventLog:
    """A JSON-lines file of events (no broker timestamps: the time-bound checks do not apply)."""
    valid: list[UserEvent] = []
    rejected = 0
    with open(path, "rb") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                valid.append(validate_event(json.loads(line)))
            except (InvalidEvent, json.JSONDecodeError):
                rejected += 1
    return EventLog(events_frame(valid), rejected)


def _with_times(df: pd.DataFrame) -> pd.DataFrame:
    ts = pd.to_datetime(df["as_of_ms"], unit="ms", utc=True)
    out = df.drop(columns=["as_of_ms"])
    out.insert(1, TIMESTAMP_COLUMN, ts)
    out.insert(2, CREATED_COLUMN, ts)
    return out


@dataclass(frozen=True)
class OfflineReport:
    events: int
    rejected: int
    user_rows: int
    item_rows: int
    out_dir: str
    seconds: float


def write_offline(
    log_: EventLog, catalog: Mapping[str, str] | None, out_dir: Path | str | None = None
) -> OfflineReport:
    """Compute and write the two views' offline tables and the event log under ``out_dir``."""
    t0 = time.perf_counter()
    out = Path(out_dir or stream_offline_dir()).resolve()
    out.mkdir(parents=True, exist_ok=True)
    tables = compute_features(log_.events, catalog)
    users, items = _with_times(tables.users), _with_times(tables.items)
    users.to_parquet(offline_table_path(USER_REALTIME_VIEW, out), index=False)
    items.to_parquet(offline_table_path(ITEM_REALTIME_VIEW, out), index=False)
    ev = log_.events.copy()
    ev.insert(0, TIMESTAMP_COLUMN, pd.to_datetime(ev["timestamp"], unit="ms", utc=True))
    ev.to_parquet(out / EVENT_LOG_FILE, index=False)
    return OfflineReport(
        len(log_.events), log_.rejected, len(users), len(items), str(out), round(time.perf_counter() - t0, 3)
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cascade_stream.offline", description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--from-kafka", action="store_true", help="read the events topic (CASCADE_KAFKA__*)")
    src.add_argument("--events-file", type=Path, help="JSON lines of events instead")
    p.add_argument("--items", type=Path, default=None, help="catalog parquet (default: registry version)")
    p.add_argument("--artifacts-dir", default=None)
    p.add_argument("--model-version", default="latest")
    p.add_argument("--out", type=Path, default=None, help="output dir (default <data>/feast/stream)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    from cascade_core.errors import CascadeError

    from cascade_stream.catalog import catalog_path, load_catalog

    try:
        catalog = load_catalog(catalog_path(a.artifacts_dir, a.model_version, a.items))
        if a.from_kafka:
            s = KafkaSettings()
            rules = Rules.from_settings(s, "user_id")
            log_ = read_topic(s.kafka, s.topics.events, rules)
        else:
            log_ = read_jsonl(a.events_file)
        report = write_offline(log_, catalog, a.out)
    except (CascadeError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for k, v in report.__dict__.items():
        print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
