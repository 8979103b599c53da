"""Crash-restart exactness and online/offline agreement, on a real Tansu broker and Feast SQLite store.

10,000 events (3 % of them producer re-sends of earlier events) are produced while the worker runs;
the worker is killed with SIGKILL mid-stream and restarted. Afterwards every user's and item's values
in the online store must equal the values computed directly from the produced events — exactly.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pytest
from cascade_features.stream_definitions import (
    ITEM_REALTIME_FEATURES,
    ITEM_REALTIME_VIEW,
    USER_REALTIME_FEATURES,
    USER_REALTIME_VIEW,
)
from cascade_stream.broker import committed_offsets, high_watermarks
from cascade_stream.producer import EventProducer
from streamtest import (
    MIN,
    Lane,
    Worker,
    diff,
    expected,
    feast_store,
    make_events,
    read_online,
    ready,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_EVENTS = 10_000
N_USERS = 120
N_ITEMS = 200
RATE = 800  # events/s: ~12 s of production, the kill lands in the middle
WORKER_ENV = {"CASCADE_MAX_LATENESS_S": "10800"}  # events span the last two hours


@dataclass
class CrashRun:
    lane: Lane
    events: list[dict[str, Any]]
    catalog: dict[str, str]
    store: Any
    processed_at_kill: float
    replayed_after_restart: float
    dlq: float


@pytest.fixture(scope="module")
def crash_run(broker, catalog, tmp_path_factory) -> CrashRun:
    root = tmp_path_factory.mktemp("crash")
    lane = Lane(broker, root, catalog[0])
    env = lane.env(**WORKER_ENV)
    now = int(time.time() * 1000)
    events = make_events(N_EVENTS, now, N_USERS, N_ITEMS, spread_ms=120 * MIN)

    first = Worker(env, root / "worker-1.log").start()
    second = Worker(env, root / "worker-2.log")
    try:
        wait_until(lambda: ready(first), 180, "the first worker to own all partitions", first)

        produced = threading.Event()
        errors: list[BaseException] = []

        def produce() -> None:
            try:
                with EventProducer(lane.kafka, lane.topics.events, max_lateness_s=None) as p:
                    t0 = time.perf_counter()
                    for k in range(0, N_EVENTS, 100):
                        p.send_all(events[k : k + 100])
                        ahead = (k + 100) / RATE - (time.perf_counter() - t0)
                        if ahead > 0:
                            time.sleep(ahead)
            except BaseException as e:  # surfaced by the main thread
                errors.append(e)
            finally:
                produced.set()

        producer = threading.Thread(target=produce, name="producer")
        producer.start()
        wait_until(
            lambda: first.counter("cascade_stream_events_total", pipeline="users") >= 3000,
            120,
            "the first worker to process 3,000 events",
            first,
            interval_s=0.1,
        )
        processed_at_kill = first.counter("cascade_stream_events_total", pipeline="users")
        first.kill9()
        second.start()
        producer.join(120)
        assert not errors, errors
        assert produced.is_set()
        wait_until(lambda: ready(second), 180, "the restarted worker to own all partitions", second)
        # everything produced is processed and committed by both pipelines
        ends = high_watermarks(lane.kafka, lane.topics.events)
        assert sum(ends.values()) == N_EVENTS
        wait_until(
            lambda: committed_offsets(lane.kafka, f"{lane.group}.users", lane.topics.events) == ends,
            180,
            "the users pipeline to commit every offset",
            second,
        )

        def items_caught_up() -> bool:
            by_item = high_watermarks(lane.kafka, lane.topics.by_item)
            return committed_offsets(lane.kafka, f"{lane.group}.items", lane.topics.by_item) == by_item

        wait_until(items_caught_up, 180, "the items pipeline to commit every offset", second)
        replayed = second.counter("cascade_stream_replayed_events_total")
        dlq = first.counter("cascade_stream_events_total", result="dlq") if first.alive() else 0.0
        dlq += second.counter("cascade_stream_events_total", result="dlq")
        return CrashRun(lane, events, catalog[1], feast_store(lane), processed_at_kill, replayed, dlq)
    finally:
        second.stop()
        first.stop()


def test_kill9_mid_stream_then_restart_gives_exact_counts(crash_run: CrashRun):
    run = crash_run
    assert 0 < run.processed_at_kill < N_EVENTS, "the kill must land while events are still flowing"
    assert run.replayed_after_restart > 0, "the restarted worker must rebuild state from the log"
    assert run.dlq == 0
    for kind, n in (("user", N_USERS), ("item", N_ITEMS)):
        want = expected(run.events, kind, run.catalog)
        assert len(want) > 0.9 * n
        got = read_online(run.store, kind, sorted(want))
        problems = diff(got, want)
        assert not problems, f"{kind} features differ from the produced events:\n" + "\n".join(problems)
        # the counts are really the event counts: the 24 h windows sum to the distinct events per entity
        distinct = {(e[f"{kind}_id"], e["event_id"]) for e in run.events}
        total = sum(v for f in got.values() for name, v in f.items() if name.endswith("_count_24h"))
        assert total == len(distinct)
    assert len({e["event_id"] for e in run.events}) < N_EVENTS  # re-sends were really in the stream


def test_offline_job_agrees_with_online_store(crash_run: CrashRun):
    """The offline tables (same event log, same code) give the online values in a point-in-time join."""
    run = crash_run
    lane = run.lane
    out = lane.data_dir / "feast" / "stream"
    env = lane.env(**WORKER_ENV)  # the worker's validation rules: the same events are left out
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "cascade_stream.offline",
            "--from-kafka",
            "--items",
            str(lane.items_path),
            "--out",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "rejected: 0" in r.stdout
    assert f"events: {N_EVENTS}" in r.stdout

    store = run.store
    for kind, view, names in (
        ("user", USER_REALTIME_VIEW, USER_REALTIME_FEATURES),
        ("item", ITEM_REALTIME_VIEW, ITEM_REALTIME_FEATURES),
    ):
        key = f"{kind}_id"
        want = expected(run.events, kind, run.catalog)
        ids = sorted(want)[:40]
        online = read_online(store, kind, ids)
        # the historical value at each entity's last event time, and one minute before it
        entity_df = pd.DataFrame(
            {
                key: ids,
                "event_timestamp": pd.to_datetime(
                    [online[i]["last_event_ms"] for i in ids], unit="ms", utc=True
                ),
            }
        )
        hist = store.get_historical_features(
            entity_df=entity_df, features=[f"{view}:{n}" for n in names]
        ).to_df()
        hist = hist.set_index(key)
        offline = {i: {n: _plain(hist.loc[i, n]) for n in names} for i in ids}
        problems = diff(offline, online)
        assert not problems, f"{kind}: offline != online\n" + "\n".join(problems)

        earlier = entity_df.assign(event_timestamp=entity_df["event_timestamp"] - pd.Timedelta(minutes=1))
        before = store.get_historical_features(
            entity_df=earlier, features=[f"{view}:{n}" for n in names]
        ).to_df()
        before = before.set_index(key)
        for i in ids:
            last = before.loc[i, "last_event_ms"]
            if pd.notna(last):  # point in time: never a value from after the requested time
                assert int(last) <= online[i]["last_event_ms"] - MIN


def _plain(v: Any) -> Any:
    if hasattr(v, "tolist"):
        return v.tolist()
    if isinstance(v, float) and v.is_integer():
        return v
    return v.item() if hasattr(v, "item") else v
