"""Chaos suite: the whole stack on loopback under steady load, each component killed (-9) and restarted.

``make chaos`` (``python scripts/chaos.py``; ``python -m cascade_cli.chaos --help``) starts, on free
loopback ports and in its own run directory:

* the Tansu Kafka-protocol broker and the topics (in memory: a broker restart loses its data; with
  ``--s3`` its data lives in moto's S3 server, ``.tools/s3-store-venv``, and survives the restart,
  but the worker's fetches stall on that storage — see docs/resilience.md "Known problems");
* its own ``redis-server`` as the stream worker's online store (AOF, ``appendfsync always``: an
  acknowledged write survives ``kill -9``);
* the stream worker (Redis online store, its own Feast registry in the run directory);
* ranking, features (the SQLite online store materialized by ``make materialize``), retrieval, router
  and gateway.

A request driver calls ``RecommendationService/Recommend`` on the router (``--rate`` per second) and an
event producer posts batches of events with unique ``event_id`` s to the gateway's ``POST /v1/events``,
re-sending a batch (same ids) until it is acknowledged (202). Then, in turn: kill -9 + restart
retrieval, features, ranking, router, gateway, the stream worker; kill -9 + restart Redis; kill -9 +
restart the broker. A restart window runs from the kill until the component is ready again plus
``--grace`` seconds (clients' reconnect backoff).

Counted: requests, failed (not OK), degraded (OK with ``degraded=true``), failures outside every
restart window (must be 0), events produced (acknowledged). After the last phase the worker catches
up and the online store is compared with the features computed from the acknowledged events: per
entity (users and items) and event type, the 24 h count in Redis against the number of distinct
acknowledged events — ``lost`` sums the shortfalls, ``duplicated`` the excesses (a re-sent batch or
a redelivered message counted twice). The last line is always::

    chaos: requests=N failed=N degraded=N events_produced=N lost=N duplicated=N

and the exit status is non-zero when lost or duplicated is not 0, when a request failed outside the
restart windows, or when the stack could not be started.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[4]  # libs/cli/src/cascade_cli -> repository root
SERVICES = ("retrieval", "features", "ranking", "router", "gateway")
ALL_PHASES = (*SERVICES, "stream", "redis", "broker")
QUICK_PHASES = ("ranking", "stream")
SUMMARY_PREFIX = "chaos:"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------------------------------------
# Processes
# ------------------------------------------------------------------------------------------------
def wait_until(cond: Callable[[], Any], timeout_s: float, what: str, proc: Any = None) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and getattr(proc, "proc", None) is not None and proc.proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.proc.returncode}")
        try:
            v = cond()
        except Exception:  # noqa: BLE001 - not ready yet
            v = None
        if v:
            return v
        time.sleep(0.2)
    raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")


class Daemon:
    """A plain subprocess (redis-server, the S3 store) started in its own session."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.env = env
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Daemon":
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                         env={**os.environ, **(self.env or {})}, start_new_session=True)
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1) as r:
        return r.status == 200


def _metrics(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text) for s in fam.samples
    }


def worker_ready(metrics_port: int) -> bool:
    m = _metrics(metrics_port)
    parts = [
        m.get(("cascade_stream_assigned_partitions", (("pipeline", p), ("state", "ready"))), 0)
        for p in ("users", "items")
    ]
    rebuilding = [
        m.get(("cascade_stream_assigned_partitions", (("pipeline", p), ("state", "rebuilding"))), 0)
        for p in ("users", "items")
    ]
    return all(x > 0 for x in parts) and not any(rebuilding)


def worker_lag(metrics_port: int) -> float:
    m = _metrics(metrics_port)
    return sum(v for (n, _), v in m.items() if n == "cascade_stream_lag")


class Stack:
    """Every component of the chaos run, each restartable in place (same port, same configuration)."""

    def __init__(
        self, run: Path, artifacts: Path, data: Path, s3_server: Path | None, partitions: int = 3
    ) -> None:
        from cascade_platform.procs import free_port

        self.run = run
        self.logs = run / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.artifacts = artifacts
        self.data = data
        self.s3_server = s3_server
        self.partitions = partitions
        self.free_port = free_port
        self.redis_port = free_port()
        self.s3_port = free_port()
        self.kafka_port = free_port()
        self.stream_metrics_port = free_port()
        self.ports = {n: free_port() for n in SERVICES}
        self.metrics_ports = {n: free_port() for n in SERVICES if n != "gateway"}
        self.s3: Daemon | None = None
        self.redis: Daemon | None = None
        self.broker: Any = None
        self.procs: dict[str, Any] = {}  # name -> ServiceProcess (services and stream)

    # -- pieces -------------------------------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    def start_s3(self) -> None:
        if self.s3_server is None:
            return
        self.s3 = Daemon("s3", [str(self.s3_server), "-H", "127.0.0.1", "-p", str(self.s3_port)],
                         self.logs / "s3.log").start()
        wait_until(lambda: _http_ok(f"http://127.0.0.1:{self.s3_port}/"), 60, "the S3 store", self.s3)
        req = urllib.request.Request(f"http://127.0.0.1:{self.s3_port}/tansu", method="PUT")  # CreateBucket
        urllib.request.urlopen(req, timeout=10).read()

    def redis_argv(self) -> list[str]:
        d = self.run / "redis"
        d.mkdir(exist_ok=True)
        return [shutil.which("redis-server") or "/usr/bin/redis-server", "--port", str(self.redis_port),
                "--bind", "127.0.0.1", "--dir", str(d), "--save", "", "--appendonly", "yes",
                "--appendfsync", "always", "--protected-mode", "no"]

    def start_redis(self) -> None:
        import redis

        self.redis = Daemon("redis", self.redis_argv(), self.logs / "redis.log").start()
        ping = lambda: redis.Redis(port=self.redis_port, socket_timeout=1).ping()  # noqa: E731
        wait_until(ping, 30, "redis", self.redis)

    def start_broker(self) -> None:
        from cascade_stream.broker import TansuBroker, ensure_topics, s3_storage_env
        from cascade_stream.settings import KafkaConfig, TopicConfig

        if self.broker is None:
            if self.s3_server is not None:
                self.broker = TansuBroker(port=self.kafka_port, log_path=self.logs / "kafka.log",
                                          storage_engine="s3://tansu/",
                                          storage_env=s3_storage_env(f"http://127.0.0.1:{self.s3_port}"))
            else:
                self.broker = TansuBroker(port=self.kafka_port, log_path=self.logs / "kafka.log")
        self.broker.start(timeout_s=60)
        ensure_topics(KafkaConfig(bootstrap_servers=self.bootstrap), TopicConfig(partitions=self.partitions))

    def stream_env(self) -> dict[str, str]:
        return {
            "CASCADE_KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
            "CASCADE_METRICS_PORT": str(self.stream_metrics_port),
            "CASCADE_ARTIFACTS_DIR": str(self.artifacts),
            "CASCADE_DATA_DIR": str(self.run / "stream-data"),
            "CASCADE_FEAST_REGISTRY_PATH": str(self.run / "stream-data" / "registry.db"),
            "CASCADE_ONLINE_STORE__TYPE": "redis",
            "CASCADE_ONLINE_STORE__HOST": "127.0.0.1",
            "CASCADE_ONLINE_STORE__PORT": str(self.redis_port),
            "CASCADE_LOG_JSON": "true",
        }

    def service_env(self, name: str) -> dict[str, str]:
        env = {
            "CASCADE_METRICS_PORT": str(self.metrics_ports.get(name, 0)),
            "CASCADE_ARTIFACTS_DIR": str(self.artifacts),
            "CASCADE_DATA_DIR": str(self.data),
            "CASCADE_LOG_JSON": "true",
        }
        if name == "router":
            t = lambda n: f"127.0.0.1:{self.ports[n]}"  # noqa: E731
            env.update({
                "CASCADE_RETRIEVAL_TARGET": t("retrieval"), "CASCADE_FEATURES_TARGET": t("features"),
                "CASCADE_RANKING_TARGET": t("ranking"),
                # A contended 2-core machine: budgets wide enough that only outages degrade answers.
                "CASCADE_REQUEST_BUDGET_S": "2", "CASCADE_RETRIEVAL_TIMEOUT_S": "1",
                "CASCADE_FEATURES_TIMEOUT_S": "1", "CASCADE_RANKING_TIMEOUT_S": "1",
                "CASCADE_EXPOSURES__BOOTSTRAP_SERVERS": self.bootstrap,
            })
        if name == "gateway":
            env.update({
                "CASCADE_PORT": str(self.ports["gateway"]),
                "CASCADE_ROUTER_TARGET": f"127.0.0.1:{self.ports['router']}",
                "CASCADE_KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
            })
        return env

    def start_service(self, name: str, wait: bool = True) -> None:
        from cascade_platform.procs import ServiceProcess

        if name == "stream":
            p = ServiceProcess("stream", "cascade_stream.worker", 0, env=self.stream_env(),
                               log_path=self.logs / "stream.log")
        else:
            p = ServiceProcess(name, f"cascade_{name}", self.ports[name], env=self.service_env(name),
                               log_path=self.logs / f"{name}.log")
        self.procs[name] = p.start()
        if wait:
            self.wait_ready(name)

    def wait_ready(self, name: str, timeout_s: float = 180) -> None:
        p = self.procs[name]
        if name == "stream":
            wait_until(lambda: worker_ready(self.stream_metrics_port), timeout_s, "the stream worker", p)
        elif name == "gateway":
            wait_until(lambda: _http_ok(f"http://127.0.0.1:{self.ports['gateway']}/healthz"), timeout_s,
                       "the gateway", p)
        else:
            p.wait_serving(timeout_s=timeout_s)

    # -- whole stack ------------------------------------------------------------------------------
    def start(self, with_gateway: bool = True) -> None:
        log(f"run directory {self.run}")
        self.start_s3()
        log(f"s3 store {'on :' + str(self.s3_port) if self.s3 else 'off (broker in memory)'}")
        self.start_redis()
        log(f"redis on :{self.redis_port} (AOF, appendfsync always)")
        self.start_broker()
        log(f"broker on {self.bootstrap} (storage {self.broker.storage_engine})")
        self.start_service("stream", wait=False)
        for n in ("ranking", "features", "retrieval"):
            self.start_service(n, wait=False)
        for n in ("ranking", "features", "retrieval"):
            self.wait_ready(n)
            log(f"{n} SERVING on :{self.ports[n]}")
        self.start_service("router")
        log(f"router SERVING on :{self.ports['router']}")
        if with_gateway:
            self.start_service("gateway")
            log(f"gateway up on :{self.ports['gateway']}")
        self.wait_ready("stream")
        log("stream worker ready (all partitions)")

    def kill(self, name: str) -> None:
        if name == "redis":
            self.redis.kill()
        elif name == "broker":
            self.broker.kill()
        else:
            self.procs[name].kill()

    def restart(self, name: str) -> None:
        if name == "redis":
            self.start_redis()
        elif name == "broker":
            self.start_broker()
        else:
            self.start_service(name)

    def crashed(self) -> list[str]:
        out = [n for n, p in self.procs.items() if p.proc is not None and p.proc.poll() is not None]
        if self.redis and self.redis.proc.poll() is not None:
            out.append("redis")
        if self.broker and self.broker.proc is not None and self.broker.proc.poll() is not None:
            out.append("broker")
        return out

    def stop(self) -> None:
        for name in ("gateway", "router", "retrieval", "features", "ranking", "stream"):
            p = self.procs.get(name)
            if p is not None:
                p.stop(timeout_s=20)
        if self.broker is not None:
            self.broker.stop()
        for d in (self.redis, self.s3):
            if d is not None:
                d.stop()


# ------------------------------------------------------------------------------------------------
# Load
# ------------------------------------------------------------------------------------------------
@dataclass
class RequestResult:
    start: float
    end: float
    outcome: str  # ok | degraded | failed
    code: str = "OK"


class RequestDriver:
    """Recommend calls at a fixed rate on the router, each with a deadline; records every outcome."""

    def __init__(self, target: str, rate: float, users: list[str], timeout_s: float = 5.0) -> None:
        self.target = target
        self.rate = rate
        self.users = users
        self.timeout_s = timeout_s
        self.results: list[RequestResult] = []
        self._stop = asyncio.Event()

    async def _one(self, stub: Any, req: Any) -> None:
        import grpc

        t0 = time.monotonic()
        try:
            resp = await stub.Recommend(req, timeout=self.timeout_s)
        except grpc.aio.AioRpcError as e:
            self.results.append(RequestResult(t0, time.monotonic(), "failed", e.code().name))
            return
        self.results.append(RequestResult(t0, time.monotonic(), "degraded" if resp.degraded else "ok"))

    async def run(self) -> None:
        import grpc
        from cascade.router.v1 import router_pb2, router_pb2_grpc

        opts = [("grpc.initial_reconnect_backoff_ms", 200), ("grpc.min_reconnect_backoff_ms", 200),
                ("grpc.max_reconnect_backoff_ms", 1000), ("grpc.enable_retries", 0)]
        rng = random.Random(7)
        async with grpc.aio.insecure_channel(self.target, options=opts) as ch:
            stub = router_pb2_grpc.RecommendationServiceStub(ch)
            tasks: set[asyncio.Task] = set()
            nxt = time.monotonic()
            while not self._stop.is_set():
                req = router_pb2.RecommendRequest(user_id=rng.choice(self.users), num_items=10)
                t = asyncio.create_task(self._one(stub, req))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
                nxt += 1.0 / self.rate
                await asyncio.sleep(max(0.0, nxt - time.monotonic()))
            if tasks:
                await asyncio.gather(*tasks)

    def stop(self) -> None:
        self._stop.set()


class EventProducer(threading.Thread):
    """Batches of unique events to ``POST /v1/events``; a batch is re-sent (same ids) until acked."""

    def __init__(
        self, gateway_port: int, rate_eps: float, batch: int, users: list[str], items: list[str]
    ) -> None:
        super().__init__(name="chaos-events", daemon=True)
        self.port = gateway_port
        self.interval = batch / rate_eps
        self.batch = batch
        self.users = users
        self.items = items
        self.acked: list[dict[str, Any]] = []
        self.ack_times: list[float] = []
        self.attempts = 0
        self.rejected = 0  # non-202 answers and connection errors (re-sent)
        self.stop_event = threading.Event()
        self.drained = threading.Event()
        self._rng = random.Random(11)

    def _batch(self) -> list[dict[str, Any]]:
        from cascade_stream.events import EVENT_TYPES

        now = int(time.time() * 1000)
        return [
            {"event_id": str(uuid.uuid4()), "event_type": self._rng.choice(EVENT_TYPES),
             "user_id": self._rng.choice(self.users), "item_id": self._rng.choice(self.items),
             "timestamp": now}
            for _ in range(self.batch)
        ]

    def _post(self, events: list[dict[str, Any]]) -> bool:
        self.attempts += 1
        body = json.dumps({"events": events}).encode()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
            try:
                conn.request("POST", "/v1/events", body, {"content-type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                return resp.status == 202
            finally:
                conn.close()
        except OSError:
            return False

    def run(self) -> None:
        nxt = time.monotonic()
        while not self.stop_event.is_set():
            events = self._batch()
            while not self._post(events):  # the in-flight batch is always finished, even when stopping
                self.rejected += 1
                time.sleep(0.2)
            self.acked.extend(events)
            self.ack_times.extend([time.monotonic()] * len(events))
            nxt += self.interval
            self.stop_event.wait(max(0.0, nxt - time.monotonic()))
        self.drained.set()


# ------------------------------------------------------------------------------------------------
# Verification of the online store
# ------------------------------------------------------------------------------------------------
def expected_counts(events: list[dict[str, Any]]) -> dict[tuple[str, str, str], int]:
    """(kind, entity, event type) -> number of distinct acknowledged events."""
    seen: set[str] = set()
    out: dict[tuple[str, str, str], int] = {}
    for e in events:
        if e["event_id"] in seen:
            continue
        seen.add(e["event_id"])
        for key in (("user", e["user_id"], e["event_type"]), ("item", e["item_id"], e["event_type"])):
            out[key] = out.get(key, 0) + 1
    return out


def observed_counts(store: Any, keys: set[tuple[str, str]]) -> dict[tuple[str, str, str], int]:
    """The 24 h counts per event type in the online store for the (kind, entity) pairs in ``keys``."""
    from cascade_features.stream_definitions import EVENT_TYPES, ITEM_REALTIME_VIEW, USER_REALTIME_VIEW
    from cascade_stream.features import join_key

    out: dict[tuple[str, str, str], int] = {}
    for kind, view in (("user", USER_REALTIME_VIEW), ("item", ITEM_REALTIME_VIEW)):
        ids = sorted(e for k, e in keys if k == kind)
        if not ids:
            continue
        names = [f"{t}_count_24h" for t in EVENT_TYPES]
        res = store.get_online_features(
            features=[f"{view}:{n}" for n in names], entity_rows=[{join_key(kind): i} for i in ids]
        ).to_dict()
        for t, n in zip(EVENT_TYPES, names):
            for i, ent in enumerate(ids):
                out[(kind, ent, t)] = int(res[n][i] or 0)
    return out


def compare(want: dict, got: dict) -> tuple[int, int]:
    lost = sum(max(0, w - got.get(k, 0)) for k, w in want.items())
    dup = sum(max(0, g - want.get(k, 0)) for k, g in got.items())
    return lost, dup


# ------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------
@dataclass
class Phase:
    name: str
    t_kill: float = 0.0
    t_ready: float = 0.0
    window_end: float = 0.0
    error: str = ""
    stats: dict[str, int] = field(default_factory=dict)


def summarize(results: list[RequestResult], phases: list[Phase], t_begin: float, t_end: float,
              ack_times: list[float]) -> tuple[list[dict[str, Any]], int]:
    """Per-phase rows (requests that started between the phase's start and the next one's) and the
    number of failures outside every restart window."""
    rows = []
    starts = [t_begin] + [p.t_kill for p in phases[1:]]
    bounds = list(zip(starts, [p.t_kill for p in phases[1:]] + [t_end]))
    outside = 0
    for r in results:
        if r.outcome == "failed" and not any(p.t_kill <= r.end and r.start <= p.window_end for p in phases):
            outside += 1
    for p, (lo, hi) in zip(phases, bounds):
        rs = [r for r in results if lo <= r.start < hi]
        rows.append({
            "phase": p.name,
            "window_s": round(p.window_end - p.t_kill, 1),
            "requests": len(rs),
            "failed": sum(r.outcome == "failed" for r in rs),
            "degraded": sum(r.outcome == "degraded" for r in rs),
            "failed_outside": sum(
                r.outcome == "failed" and not (p.t_kill <= r.end and r.start <= p.window_end) for r in rs
            ),
            "events_acked": sum(lo <= t < hi for t in ack_times),
            "error": p.error,
        })
    return rows, outside


async def chaos(args: argparse.Namespace) -> int:
    import pandas as pd
    from cascade_core.registry import Registry
    from cascade_features.config import RedisStoreConfig
    from cascade_stream.worker import feature_store
    from cascade_stream.worker_settings import WorkerSettings

    artifacts = Path(args.artifacts).resolve()
    data = Path(args.data).resolve()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run = Path(args.run_dir).resolve() if args.run_dir else ROOT / ".run" / f"chaos-{stamp}"
    run.mkdir(parents=True, exist_ok=True)
    reg = Registry(artifacts)
    version = reg.resolve(None)
    if not (data / "feast" / "online.db").exists():
        log(f"no materialized online store under {data}: materializing {version} (make materialize)")
        r = subprocess.run(
            [sys.executable, "-m", "cascade_features.repo", "apply-materialize", "--version", "latest"],
            env={**os.environ, "CASCADE_ARTIFACTS_DIR": str(artifacts), "CASCADE_DATA_DIR": str(data)},
        )
        if r.returncode:
            print("chaos: materialize failed", file=sys.stderr)
            return 2
    from cascade_stream.catalog import catalog_path

    items_df = pd.read_parquet(catalog_path(artifacts, version), columns=["item_id"])
    s3 = Path(args.s3_server) if args.s3 else None
    default_phases = QUICK_PHASES if args.quick else ALL_PHASES
    phases_wanted = args.phases.split(",") if args.phases else list(default_phases)
    bad = [p for p in phases_wanted if p not in ALL_PHASES]
    if bad:
        print(f"--phases: unknown {bad}; choose from {','.join(ALL_PHASES)}", file=sys.stderr)
        return 2
    if s3 is not None and not s3.exists():
        print(f"chaos: the S3 store {s3} is missing: `make chaos-s3-store` installs it "
              f"(.tools/s3-store-venv), or pass --s3-server", file=sys.stderr)
        return 2
    stack = Stack(run, artifacts, data, s3)
    driver: RequestDriver | None = None
    producer: EventProducer | None = None
    try:
        t_start = time.monotonic()
        await asyncio.to_thread(stack.start)
        log(f"stack up in {time.monotonic() - t_start:.0f}s")
        users = [str(u) for u in range(1, 200)]
        items = [str(i) for i in items_df["item_id"].head(300)]
        driver = RequestDriver(f"127.0.0.1:{stack.ports['router']}", args.rate, users)
        producer = EventProducer(stack.ports["gateway"], args.event_rate, args.event_batch,
                                 [f"chaos-u{i}" for i in range(args.event_users)], items)
        drive = asyncio.create_task(driver.run())
        producer.start()
        t_begin = time.monotonic()
        phases: list[Phase] = []
        crashes: list[str] = []
        for name in phases_wanted:
            await asyncio.sleep(args.steady)
            ph = Phase(name)
            phases.append(ph)
            log(f"phase {name}: kill -9")
            ph.t_kill = time.monotonic()
            await asyncio.to_thread(stack.kill, name)
            await asyncio.sleep(args.down)
            try:
                await asyncio.to_thread(stack.restart, name)
            except Exception as e:  # noqa: BLE001 - reported, the run fails
                ph.error = f"restart failed: {e}"
                log(f"phase {name}: {ph.error}")
            ph.t_ready = time.monotonic()
            ph.window_end = ph.t_ready + args.grace
            log(f"phase {name}: ready again after {ph.t_ready - ph.t_kill:.1f}s")
            for c in stack.crashed():  # a supervisor (Kubernetes) would restart it: so do we, and report it
                crashes.append(f"{c} (during {name})")
                log(f"UNPLANNED: {c} exited; restarting it")
                await asyncio.to_thread(stack.restart, c)
                ph.window_end = time.monotonic() + args.grace
            await asyncio.sleep(args.grace)
        await asyncio.sleep(args.steady)
        driver.stop()
        producer.stop_event.set()
        await drive
        await asyncio.to_thread(producer.drained.wait, 120)
        t_end = time.monotonic()

        log(f"load stopped; waiting for the worker to catch up ({len(producer.acked)} events acked)")
        ws = WorkerSettings(online_store=RedisStoreConfig(host="127.0.0.1", port=stack.redis_port),
                            feast_registry_path=run / "stream-data" / "registry.db")
        store = feature_store(ws)
        want = expected_counts(producer.acked)
        keys = {(k, e) for k, e, _ in want}
        deadline = time.monotonic() + args.catch_up
        while True:
            got = observed_counts(store, keys)
            lost, dup = compare(want, got)
            if (lost == 0 and dup == 0) or time.monotonic() > deadline:
                break
            await asyncio.sleep(2)
        log(f"online store compared after {time.monotonic() - t_end:.0f}s: lost={lost} duplicated={dup}")

        rows, outside = summarize(driver.results, phases, t_begin, t_end, producer.ack_times)
        print()
        hdr = (f"{'phase':<10} {'window_s':>8} {'requests':>8} {'failed':>6} {'degraded':>8} "
               f"{'fail_out':>8} {'events':>6}")
        print(hdr)
        print("-" * len(hdr))
        for r in rows:
            print(f"{r['phase']:<10} {r['window_s']:>8} {r['requests']:>8} {r['failed']:>6} "
                  f"{r['degraded']:>8} "
                  f"{r['failed_outside']:>8} {r['events_acked']:>6}  {r['error']}")
        res = driver.results
        failed = sum(r.outcome == "failed" for r in res)
        degraded = sum(r.outcome == "degraded" for r in res)
        print(f"event batches re-sent: {producer.rejected}; unplanned restarts: {crashes or 'none'}; "
              f"failures outside restart windows: {outside}; run dir: {run}")
        (run / "chaos-report.json").write_text(json.dumps({
            "phases": rows, "requests": len(res), "failed": failed, "degraded": degraded,
            "failed_outside_windows": outside, "events_produced": len(producer.acked), "lost": lost,
            "duplicated": dup, "resent_batches": producer.rejected, "unplanned_restarts": crashes,
            "broker_storage": stack.broker.storage_engine,
        }, indent=2))
        storage = stack.broker.storage_engine
        if storage.startswith("memory://") and any(ph.name == "broker" for ph in phases):
            print(f"note: broker storage {storage}: a broker restart wipes every topic, record and "
                  "committed offset (local in-memory broker); the worker keeps its in-memory window "
                  "state and consumes the new log from its start, so only an event acknowledged but not "
                  "yet consumed at the instant of the kill can be lost (counted in lost=); see "
                  "docs/resilience.md")
        print(f"{SUMMARY_PREFIX} requests={len(res)} failed={failed} degraded={degraded} "
              f"events_produced={len(producer.acked)} lost={lost} duplicated={dup}", flush=True)
        bad_phase = any(p.error for p in phases)
        return 1 if (lost or dup or outside or bad_phase) else 0
    finally:
        if driver is not None:
            driver.stop()
        if producer is not None:
            producer.stop_event.set()
        await asyncio.to_thread(stack.stop)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cascade_cli.chaos", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help=f"only {','.join(QUICK_PHASES)} (the pytest smoke run)")
    p.add_argument("--phases", default="", help=f"comma-separated, in order (default {','.join(ALL_PHASES)})")
    p.add_argument("--rate", type=float, default=20.0, help="Recommend requests per second")
    p.add_argument("--event-rate", type=float, default=40.0, help="events per second")
    p.add_argument("--event-batch", type=int, default=4, help="events per POST /v1/events")
    p.add_argument("--event-users", type=int, default=40, help="distinct users of the produced events")
    p.add_argument("--steady", type=float, default=4.0, help="seconds of steady load before each kill")
    p.add_argument("--down", type=float, default=1.0, help="seconds a killed component stays down")
    p.add_argument("--grace", type=float, default=3.0, help="seconds after ready still inside the window")
    p.add_argument("--catch-up", type=float, default=120.0, help="how long the worker may take to catch up")
    p.add_argument("--artifacts", default=os.environ.get("CASCADE_ARTIFACTS_DIR", str(ROOT / "artifacts")))
    p.add_argument("--data", default=os.environ.get("CASCADE_DATA_DIR", str(ROOT / "data")),
                   help="data dir whose Feast SQLite online store the features service reads")
    p.add_argument("--run-dir", default=os.environ.get("CASCADE_CHAOS_RUN_DIR", ""),
                   help="logs and state (default .run/chaos-<time>)")
    p.add_argument("--s3-server", default=os.environ.get(
        "CASCADE_CHAOS_S3_SERVER", str(ROOT / ".tools" / "s3-store-venv" / "bin" / "moto_server")))
    p.add_argument("--s3", action="store_true",
                   help="keep the broker's data in the S3 store (moto) across its restart; see "
                   "docs/resilience.md for why this is not the default (the worker's fetches stall on it)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        return asyncio.run(chaos(args))
    except KeyboardInterrupt:
        print(f"{SUMMARY_PREFIX} interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
