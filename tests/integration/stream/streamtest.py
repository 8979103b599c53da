"""Helpers of the stream integration tests: event generation, expected values, online-store reads."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import pytest
from cascade_features.config import FeastSettings, SqliteStoreConfig, feast_repo_config
from cascade_features.stream_definitions import (
    EVENT_TYPES,
    ITEM_REALTIME_VIEW,
    TRENDING,
    USER_REALTIME_VIEW,
)
from cascade_platform.procs import free_port
from cascade_stream.broker import TansuBroker, ensure_topics
from cascade_stream.features import Event, feature_names, feature_rows, join_key
from cascade_stream.settings import KafkaConfig, TopicConfig
from prometheus_client.parser import text_string_to_metric_families

MIN = 60_000


def make_events(
    n: int, now_ms: int, users: int, items: int, spread_ms: int, dup_share: float = 0.03, seed: int = 1
) -> list[dict[str, Any]]:
    """``n`` events (a ``dup_share`` of them re-sends of earlier ones, same event_id) over ``spread_ms``."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    while len(out) < n:
        if out and rng.random() < dup_share:
            out.append(dict(rng.choice(out)))
            continue
        out.append(
            {
                "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "event_type": rng.choice(EVENT_TYPES),
                "user_id": str(rng.randint(1, users)),
                "item_id": str(rng.randint(1, items)),
                "timestamp": now_ms - rng.randrange(0, spread_ms),
            }
        )
    return out


def as_events(docs: Iterable[Mapping[str, Any]]) -> list[Event]:
    index = {t: i for i, t in enumerate(EVENT_TYPES)}
    return [
        Event(d["event_id"], index[d["event_type"]], d["user_id"], d["item_id"], int(d["timestamp"]))
        for d in docs
    ]


def expected(
    docs: Iterable[Mapping[str, Any]], kind: str, catalog: Mapping[str, str]
) -> dict[str, dict[str, Any]]:
    """Final feature values per entity, computed directly from the produced events."""
    rows = feature_rows(as_events(docs), kind, catalog, every_event=False)  # type: ignore[arg-type]
    key = join_key(kind)  # type: ignore[arg-type]
    return {r[key]: {n: r[n] for n in feature_names(kind)} for r in rows}  # type: ignore[arg-type]


def read_online(store: Any, kind: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The online values of ``ids`` through Feast's own reader (None for entities never written)."""
    view = USER_REALTIME_VIEW if kind == "user" else ITEM_REALTIME_VIEW
    names = feature_names(kind)  # type: ignore[arg-type]
    key = join_key(kind)  # type: ignore[arg-type]
    res = store.get_online_features(
        features=[f"{view}:{n}" for n in names], entity_rows=[{key: i} for i in ids]
    ).to_dict()
    return {i: {n: res[n][k] for n in names} for k, i in enumerate(ids)}


def diff(
    got: Mapping[str, Mapping[str, Any]], want: Mapping[str, Mapping[str, Any]], limit: int = 5
) -> list[str]:
    """Human-readable differences (trending compared to 1e-9 relative: a float sum)."""
    out = []
    for ent, w in want.items():
        g = got.get(ent) or {}
        for n, wv in w.items():
            gv = g.get(n)
            if n == TRENDING and gv is not None and abs(gv - wv) <= 1e-9 * max(1.0, abs(wv)):
                continue
            if gv != wv:
                out.append(f"{ent}.{n}: online {gv!r} != expected {wv!r}")
                if len(out) >= limit:
                    return out
    return out


@dataclass
class Lane:
    """One isolated stream setup on the shared broker: its own topics, groups, Feast project, data dir."""

    broker: TansuBroker
    root: Path
    items_path: Path
    project: str = field(default_factory=lambda: f"st_{uuid.uuid4().hex[:10]}")

    def __post_init__(self) -> None:
        prefix = self.project
        self.topics = TopicConfig(
            events=f"{prefix}.user-events",
            dlq=f"{prefix}.user-events.dlq",
            by_item=f"{prefix}.user-events.by-item",
            partitions=3,
        )
        self.group = f"{prefix}.worker"
        self.data_dir = self.root / "data"
        self.kafka: KafkaConfig = self.broker.kafka_config()
        ensure_topics(self.kafka, self.topics)

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "CASCADE_KAFKA__BOOTSTRAP_SERVERS": self.broker.bootstrap,
            "CASCADE_TOPICS__EVENTS": self.topics.events,
            "CASCADE_TOPICS__DLQ": self.topics.dlq,
            "CASCADE_TOPICS__BY_ITEM": self.topics.by_item,
            "CASCADE_GROUP_ID": self.group,
            "CASCADE_DATA_DIR": str(self.data_dir),
            "CASCADE_FEAST_PROJECT": self.project,
            "CASCADE_ITEMS_PATH": str(self.items_path),
            "CASCADE_LOG_JSON": "false",
            "PYTHONUNBUFFERED": "1",
            **extra,
        }


class Worker:
    """``python -m cascade_stream.worker`` in its own session, with its /metrics."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.metrics_port = free_port()
        self.env = {**env, "CASCADE_METRICS_PORT": str(self.metrics_port), "CASCADE_HOST": "127.0.0.1"}
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Worker":
        out = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cascade_stream.worker"],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        import urllib.request

        try:
            text = (
                urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2)
                .read()
                .decode()
            )
        except OSError:
            return {}
        out = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def counter(self, name: str, **labels: str) -> float:
        want = tuple(sorted(labels.items()))
        return sum(v for (n, ls), v in self.metrics().items() if n == name and set(want) <= set(ls))

    def kill9(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)


def wait_until(
    cond: Callable[[], Any],
    timeout_s: float,
    what: str,
    worker: Worker | None = None,
    interval_s: float = 0.5,
) -> Any:
    """Poll ``cond`` until truthy; on timeout fail with ``what`` and the worker's log tail."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        if worker is not None and worker.proc is not None and not worker.alive():
            pytest.fail(f"worker exited ({worker.proc.returncode}) while waiting for {what}\n{worker.log()}")
        time.sleep(interval_s)
    pytest.fail(f"timed out after {timeout_s}s waiting for {what}\n{worker.log() if worker else ''}")


def feast_store(lane: "Lane", online_store: Any = None) -> Any:
    from feast import FeatureStore

    fs = FeastSettings(
        project=lane.project,
        registry_path=str(lane.data_dir / "feast" / "registry.db"),
        online_store=online_store or SqliteStoreConfig(path=str(lane.data_dir / "feast" / "online.db")),
    )
    return FeatureStore(config=feast_repo_config(fs))


def ready(worker: Worker) -> bool:
    m = worker.metrics()
    return all(
        m.get(("cascade_stream_assigned_partitions", (("pipeline", p), ("state", "ready")))) == 3
        for p in ("users", "items")
    )


def serve_events_app(monkeypatch: pytest.MonkeyPatch, env: Mapping[str, str]):
    """A FastAPI app with the gateway's events router and error handlers, served by a real uvicorn in
    a thread, configured by ``env`` (``CASCADE_*``). Generator for a fixture: yields
    ``(base_url, app)``, then stops the server and closes the app's Kafka producer."""
    import asyncio
    import threading

    import uvicorn
    from cascade_gateway import events
    from cascade_gateway.errors import ApiError, api_error_handler
    from fastapi import FastAPI

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    app = FastAPI()
    app.add_exception_handler(ApiError, api_error_handler)
    app.include_router(events.router)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start within 30 s"
    yield f"http://127.0.0.1:{port}", app
    server.should_exit = True
    thread.join(10)
    asyncio.run(events.close_producer(app))
