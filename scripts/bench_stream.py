#!/usr/bin/env python
"""Stream feature worker: sustained events/s and feature freshness at a fixed rate.

For each (online store, writer) configuration the script starts a real Tansu broker, the worker
(``python -m cascade_stream.worker``, its own process) on fresh topics and a fresh Feast project, then:

1. **sustained** — produces a backlog of ``--backlog`` synthetic events as fast as possible and
   measures how fast the worker drains it (events/s until every event is in the online store, per
   pipeline: ``users`` writes ``user_realtime``, ``items`` writes ``item_realtime`` one Kafka hop later);
2. **freshness** — produces ``--rate`` events/s (default 2,000) for ``--duration`` seconds, events
   stamped at send time, and reads ``cascade_feature_freshness_seconds`` (event time -> the write that
   makes it visible in the online store returned) for that phase only; quantiles are interpolated
   within the histogram's buckets (10-50 ms wide below 300 ms).

Prints one table. Numbers depend on machine load (the producer runs in this process, on the same
cores): compare rows of one run.

    .venv/bin/python scripts/bench_stream.py [--stores redis,sqlite] [--processes 1,2]
        [--writers online_store,write_to_online_store,push] [--rate 2000] [--duration 30] [--backlog 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import redis
from cascade_platform.procs import free_port
from cascade_stream import simulator
from cascade_stream.broker import TansuBroker, ensure_topics
from cascade_stream.producer import EventProducer
from cascade_stream.settings import TopicConfig
from prometheus_client.parser import text_string_to_metric_families

CATEGORIES = (
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
VIEWS = ("user_realtime", "item_realtime")


def scrape(ports: list[int]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Metrics of every worker process, summed by name and labels."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for port in ports:
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
        except OSError:
            return {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                key = (s.name, tuple(sorted(s.labels.items())))
                out[key] = out.get(key, 0.0) + s.value
    return out


def total(m: dict, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in m.items() if n == name and want <= set(ls))


def buckets(m: dict, view: str) -> list[tuple[float, float]]:
    out = []
    for (n, ls), v in m.items():
        d = dict(ls)
        if n == "cascade_feature_freshness_seconds_bucket" and d.get("view") == view:
            out.append((float("inf") if d["le"] == "+Inf" else float(d["le"]), v))
    return sorted(out)


def quantile(before: list[tuple[float, float]], after: list[tuple[float, float]], q: float) -> float:
    """Quantile of the observations between two cumulative-bucket snapshots (linear within a bucket)."""
    prev = dict(before)
    cum = [(le, c - prev.get(le, 0.0)) for le, c in after]
    n = cum[-1][1] if cum else 0
    if n <= 0:
        return float("nan")
    target = q * n
    lo_edge, lo_count = 0.0, 0.0
    for le, c in cum:
        if c >= target:
            if le == float("inf"):
                return lo_edge
            return lo_edge + (le - lo_edge) * ((target - lo_count) / max(c - lo_count, 1e-9))
        lo_edge, lo_count = le, c
    return cum[-1][0]


@dataclass
class Row:
    store: str
    writer: str
    procs: int
    users_eps: float
    items_eps: float
    rate_sent: float
    p50: dict[str, float]
    p99: dict[str, float]
    max_lag: float
    dlq: float


class LagWatcher(threading.Thread):
    """Largest total consumer lag seen while the rate phase runs (sampled every 0.25 s)."""

    def __init__(self, ports: list[int]) -> None:
        super().__init__(daemon=True)
        self.ports = ports
        self.max_lag = 0.0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(0.25):
            self.max_lag = max(self.max_lag, total(scrape(self.ports), "cascade_stream_consumer_lag"))

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)


def wait(
    cond, timeout_s: float, what: str, procs: list[subprocess.Popen], log: Path, interval_s: float = 0.2
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"worker exited ({proc.returncode}) waiting for {what}:\n{log.read_text()[-3000:]}"
                )
        time.sleep(interval_s)
    raise TimeoutError(f"{what} not reached in {timeout_s}s:\n{log.read_text()[-3000:]}")


def run_config(
    broker: TansuBroker,
    items_path: Path,
    catalog: dict[str, str],
    store: str,
    writer: str,
    split: bool,
    args: argparse.Namespace,
    work: Path,
) -> Row:
    project = f"bench_{uuid.uuid4().hex[:8]}"
    topics = TopicConfig(
        events=f"{project}.events",
        dlq=f"{project}.dlq",
        by_item=f"{project}.by-item",
        partitions=args.partitions,
    )
    kafka = broker.kafka_config()
    ensure_topics(kafka, topics)
    env = {
        **os.environ,
        "CASCADE_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap,
        "CASCADE_TOPICS__EVENTS": topics.events,
        "CASCADE_TOPICS__DLQ": topics.dlq,
        "CASCADE_TOPICS__BY_ITEM": topics.by_item,
        "CASCADE_GROUP_ID": project,
        "CASCADE_DATA_DIR": str(work / project),
        "CASCADE_FEAST_PROJECT": project,
        "CASCADE_ITEMS_PATH": str(items_path),
        "CASCADE_WRITER": writer,
        "CASCADE_ONLINE_STORE__TYPE": store,
        "CASCADE_LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    log = work / f"{project}.log"
    templates = simulator.synthetic(catalog, n_users=args.users, seed=1)
    producer = EventProducer(kafka, topics.events)
    procs: list[subprocess.Popen] = []
    # 1. sustained: a backlog produced before the worker starts, drained as fast as it can
    simulator.run(producer, templates, rate=None, count=args.backlog)
    roles = [["users"], ["items"]] if split else [["users", "items"]]
    ports = [free_port() for _ in roles]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "cascade_stream.worker"],
            env={**env, "CASCADE_METRICS_PORT": str(port), "CASCADE_ROLES": json.dumps(r)},
            stdout=open(log, "ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for r, port in zip(roles, ports)
    ]
    try:

        def consumed(m: dict, p: str) -> float:
            return sum(
                total(m, "cascade_stream_events_total", pipeline=p, result=r)
                for r in ("processed", "duplicate", "stale", "dlq")
            )

        first: dict[str, tuple[float, float]] = {}  # pipeline -> (time, consumed) when first seen consuming
        done: dict[str, float] = {}

        def drained() -> bool:
            m = scrape(ports)
            now = time.perf_counter()
            for p in ("users", "items"):
                n = consumed(m, p)
                if p not in first and n > 0:
                    first[p] = (now, n)
                if p in first and p not in done and n >= args.backlog:
                    t, n0 = first[p]
                    done[p] = (n - n0) / max(now - t, 1e-9)
            return len(done) == 2

        wait(drained, 1200, "backlog drained", procs, log, interval_s=0.1)
        # 2. freshness at a fixed rate (the histogram delta of this phase only)
        before = scrape(ports)
        lag = LagWatcher(ports)
        lag.start()
        stats = simulator.run(producer, templates, rate=args.rate, duration_s=args.duration)
        producer.close()
        sent_total = args.backlog + stats.sent
        wait(
            lambda: all(consumed(scrape(ports), p) >= sent_total for p in ("users", "items")),
            600,
            "rate phase processed",
            procs,
            log,
        )
        lag.stop()
        after = scrape(ports)
        p50 = {v: quantile(buckets(before, v), buckets(after, v), 0.50) for v in VIEWS}
        p99 = {v: quantile(buckets(before, v), buckets(after, v), 0.99) for v in VIEWS}
        return Row(
            store,
            writer,
            len(procs),
            done["users"],
            done["items"],
            stats.rate,
            p50,
            p99,
            lag.max_lag,
            total(after, "cascade_stream_events_total", result="dlq"),
        )
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if store == "redis":
            r = redis.Redis()
            keys = list(r.scan_iter(match=b"*" + project.encode(), count=1000))
            if keys:
                r.delete(*keys)
            r.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--stores", default="redis,sqlite")
    p.add_argument("--writers", default="online_store")
    p.add_argument("--rate", type=float, default=2000.0)
    p.add_argument("--duration", type=float, default=30.0)
    p.add_argument("--backlog", type=int, default=20000)
    p.add_argument("--users", type=int, default=671, help="synthetic user ids 1..N (MovieLens-small size)")
    p.add_argument("--items", type=int, default=9000, help="synthetic catalog size")
    p.add_argument("--partitions", type=int, default=3)
    p.add_argument(
        "--processes",
        default="1",
        help="worker processes per config: 1 (both pipelines as threads), "
        "2 (users and items pipelines in separate processes), or 1,2",
    )
    args = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_stream_") as tmp:
        work = Path(tmp)
        catalog = {str(i): CATEGORIES[i % len(CATEGORIES)] for i in range(1, args.items + 1)}
        items_path = work / "items.parquet"
        pd.DataFrame({"item_id": list(catalog), "category": list(catalog.values())}).to_parquet(items_path)
        rows = []
        with TansuBroker(log_path=work / "tansu.log") as broker:
            for store in args.stores.split(","):
                for writer in args.writers.split(","):
                    for procs in args.processes.split(","):
                        print(
                            f"running store={store} writer={writer} processes={procs} ...",
                            file=sys.stderr,
                            flush=True,
                        )
                        rows.append(
                            run_config(broker, items_path, catalog, store, writer, procs == "2", args, work)
                        )

    print(
        f"\nstream worker: backlog {args.backlog} events, then {args.rate:.0f} events/s "
        f"for {args.duration:.0f}s ({args.partitions} partitions, {args.users} users, {args.items} items, "
        f"{os.cpu_count()} CPUs)\n"
    )
    head = (
        f"{'store':<7} {'writer':<22} {'procs':>5} {'users ev/s':>10} {'items ev/s':>10} {'sent ev/s':>9} "
        f"{'user p50':>9} {'user p99':>9} {'item p50':>9} {'item p99':>9} {'max lag':>8} {'dlq':>4}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        ms = lambda v: f"{v * 1000:.0f} ms"  # noqa: E731
        print(
            f"{r.store:<7} {r.writer:<22} {r.procs:>5} {r.users_eps:>10.0f} {r.items_eps:>10.0f} "
            f"{r.rate_sent:>9.0f} "
            f"{ms(r.p50['user_realtime']):>9} {ms(r.p99['user_realtime']):>9} "
            f"{ms(r.p50['item_realtime']):>9} {ms(r.p99['item_realtime']):>9} {r.max_lag:>8.0f} {r.dlq:>4.0f}"
        )
    print(
        "\nfreshness = event time -> online-store write returned (cascade_feature_freshness_seconds), "
        "rate phase only; ev/s = backlog drain rate per pipeline"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
