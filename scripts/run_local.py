"""`make up`: run the whole platform on loopback with embedded defaults, until Ctrl-C.

Starts each service as its own process (logs in .run/logs/), waits until every gRPC service answers
grpc.health.v1 with SERVING, prints how to call it, and on Ctrl-C/SIGTERM drains and stops them all
in reverse order. Ports are overridable: ROUTER_PORT, RETRIEVAL_PORT, FEATURES_PORT, RANKING_PORT,
GATEWAY_PORT (and *_METRICS_PORT); CASCADE_RUN_DIR moves .run (logs, routing file, Triton repository).

Model routing: the ranking service hot-reloads ``CASCADE_MODEL_ROUTING_FILE``; unless that variable
is set (then an existing file is kept as it is), ``.run/model-routing.json`` is written afresh with the
served version (``CASCADE_MODEL_VERSION`` or registry LATEST) as the default, so
``cascade models promote|rollback|abort`` act on the running platform.

``TRITON=1`` (``make up TRITON=1``): a Triton model repository for the served version is generated in
``.run/triton-repo`` (python profile: the pip-installed server carries only the python backend), the
real ``tritonserver`` starts first (``scripts/triton/tritonserver.sh``; gRPC on ``TRITON_GRPC_PORT``
or a free port) and ranking scores through it (``CASCADE_BACKEND__TYPE=triton``). It is stopped last,
with its python-backend stubs.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cascade_core.registry import Registry
from cascade_modelops.appliers import LocalFileApplier
from cascade_platform.procs import ServiceProcess, free_port

ROOT = Path(__file__).resolve().parents[1]
RUN = Path(os.environ.get("CASCADE_RUN_DIR", str(ROOT / ".run")))  # logs, routing file, triton repo


@dataclass(frozen=True)
class Spec:
    name: str
    module: str
    port: int
    metrics_port: int
    grpc: bool = True


def _port(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def specs() -> list[Spec]:
    return [
        Spec("ranking", "cascade_ranking", _port("RANKING_PORT", 50054), _port("RANKING_METRICS_PORT", 9104)),
        Spec("features", "cascade_features", _port("FEATURES_PORT", 50053), _port("FEATURES_METRICS_PORT", 9103)),
        Spec("retrieval", "cascade_retrieval", _port("RETRIEVAL_PORT", 50052), _port("RETRIEVAL_METRICS_PORT", 9102)),
        Spec("router", "cascade_router", _port("ROUTER_PORT", 50051), _port("ROUTER_METRICS_PORT", 9101)),
        Spec("gateway", "cascade_gateway", _port("GATEWAY_PORT", 8080), 0, grpc=False),
    ]


def artifacts_root() -> Path:
    return Path(os.environ.get("CASCADE_ARTIFACTS_DIR", str(ROOT / "artifacts")))


def kafka_enabled() -> bool:
    return os.environ.get("KAFKA", "1").strip().lower() not in ("0", "false", "no", "off")


def kafka_bootstrap() -> str:
    return f"127.0.0.1:{_port('KAFKA_PORT', 9092)}"


def start_streaming(logs: Path, procs: list) -> None:
    """The Tansu Kafka-protocol broker (topics created), the stream feature worker and attribution."""
    from cascade_stream.broker import ensure_topics, wait_for_broker
    from cascade_stream.settings import KafkaConfig, TopicConfig

    port = _port("KAFKA_PORT", 9092)
    broker = ServiceProcess("kafka", "cascade_stream.broker", port,
                            env={"CASCADE_BROKER_PORT": str(port)}, log_path=logs / "kafka.log")
    procs.append(broker.start())
    print(f"starting {'kafka':<10} on {kafka_bootstrap()} (Tansu; log: {broker.log_path})", flush=True)
    wait_for_broker(kafka_bootstrap(), timeout_s=60, proc=broker.proc)
    # Idempotent: the broker process creates them too; do not depend on its log text.
    ensure_topics(KafkaConfig(bootstrap_servers=kafka_bootstrap()), TopicConfig())
    print(f"  {'kafka':<10} READY", flush=True)
    mport = _port("STREAM_METRICS_PORT", 9105)
    worker = ServiceProcess("stream", "cascade_stream.worker", 0, env={
        "CASCADE_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap(),
        "CASCADE_METRICS_PORT": str(mport),
        "CASCADE_ARTIFACTS_DIR": str(artifacts_root()),
        "CASCADE_DATA_DIR": os.environ.get("CASCADE_DATA_DIR", str(ROOT / "data")),
    }, log_path=logs / "stream.log")
    procs.append(worker.start())
    print(f"starting {'stream':<10} worker (metrics :{mport}; log: {worker.log_path})", flush=True)
    wait_http(f"http://127.0.0.1:{mport}/metrics", worker)
    print(f"  {'stream':<10} RUNNING", flush=True)
    # Online click attribution (exposures x user-events -> cascade_recommend_clicks_total & co.)
    aport = _port("ATTRIBUTION_METRICS_PORT", 9106)
    attribution = ServiceProcess("attribution", "cascade_stream.attribution", 0, env={
        "CASCADE_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap(), "CASCADE_METRICS_PORT": str(aport),
    }, log_path=logs / "attribution.log")
    procs.append(attribution.start())
    print(f"starting {'attribution':<10} (metrics :{aport}; log: {attribution.log_path})", flush=True)
    wait_http(f"http://127.0.0.1:{aport}/metrics", attribution)
    print(f"  {'attribution':<10} RUNNING", flush=True)


def triton_enabled() -> bool:
    return os.environ.get("TRITON", "").strip().lower() in ("1", "true", "yes", "on")


def prepare_routing(served: str) -> Path:
    """The ranking routing file: the user's (kept) or .run/model-routing.json (fresh, ``served`` 100 %)."""
    own = os.environ.get("CASCADE_MODEL_ROUTING_FILE")
    if own and Path(own).is_file():
        return Path(own).resolve()
    applier = LocalFileApplier(own or RUN / "model-routing.json")
    applier.initialize(served)
    return applier.routing_file


def build_env(spec: Spec, all_specs: list[Spec], routing_file: Path | None = None,
              backend: dict[str, str] | None = None) -> dict[str, str]:
    by = {s.name: s for s in all_specs}
    env = {
        "CASCADE_METRICS_PORT": str(spec.metrics_port),
        "CASCADE_ARTIFACTS_DIR": str(artifacts_root()),
        "CASCADE_DATA_DIR": os.environ.get("CASCADE_DATA_DIR", str(ROOT / "data")),
        "CASCADE_LOG_JSON": "true",
    }
    if spec.name == "ranking":
        if routing_file is not None:
            env["CASCADE_MODEL_ROUTING_FILE"] = str(routing_file)
        env.update(backend or {})
    if spec.name == "router":
        env.update({
            "CASCADE_RETRIEVAL_TARGET": f"127.0.0.1:{by['retrieval'].port}",
            "CASCADE_FEATURES_TARGET": f"127.0.0.1:{by['features'].port}",
            "CASCADE_RANKING_TARGET": f"127.0.0.1:{by['ranking'].port}",
        })
        demo = ROOT / "docs" / "examples" / "experiments.yaml"
        if demo.exists() and "CASCADE_EXPERIMENTS_FILE" not in os.environ:
            env["CASCADE_EXPERIMENTS_FILE"] = str(demo)
    if spec.name == "gateway":
        env["CASCADE_ROUTER_TARGET"] = f"127.0.0.1:{by['router'].port}"
    if kafka_enabled():
        if spec.name == "router":
            env["CASCADE_EXPOSURES__BOOTSTRAP_SERVERS"] = kafka_bootstrap()
        if spec.name == "gateway":
            env["CASCADE_KAFKA__BOOTSTRAP_SERVERS"] = kafka_bootstrap()
    return env


class TritonProcess:
    """The real tritonserver (via scripts/triton/tritonserver.sh, which execs it: the PID is the server's).

    Started in its own session; :meth:`stop` sends SIGTERM, SIGKILL after 30 s, then kills whatever is
    left in its process group (the python-backend stub processes).
    """

    name = "triton"

    def __init__(self, repository: Path, grpc_port: int, log_path: Path) -> None:
        self.repository = repository
        self.port = grpc_port
        self.http_port = free_port()
        self.metrics_port = free_port()
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> "TritonProcess":
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                ["bash", str(ROOT / "scripts" / "triton" / "tritonserver.sh"), "--model-repository",
                 str(self.repository), "--grpc-port", str(self.port), "--http-port", str(self.http_port),
                 "--metrics-port", str(self.metrics_port), "--exit-timeout-secs=10"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        return self

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        wait_http(f"http://127.0.0.1:{self.http_port}/v2/health/ready", self, timeout_s)

    def stop(self, timeout_s: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # stubs left in its group
        except ProcessLookupError:
            pass
        return self.proc.returncode


def build_triton_repo(version: str) -> Path:
    """A fresh python-profile model repository for the served version (tritonserver needs one to start)."""
    from cascade_pipelines.triton_repo import build_repository

    repo = RUN / "triton-repo"
    shutil.rmtree(repo, ignore_errors=True)
    build_repository(repo, version, "python", registry=Registry(artifacts_root()))
    return repo


def wait_http(url: str, proc: ServiceProcess | TritonProcess, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.proc is not None and proc.proc.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with {proc.proc.returncode}; see {proc.log_path}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{proc.name} did not answer {url} within {timeout_s}s; see {proc.log_path}")


def main() -> int:
    logs = RUN / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    all_specs = specs()
    procs: list[ServiceProcess | TritonProcess] = []
    stopping = False

    def stop_all(*_: object) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        print("\nstopping…", flush=True)
        for p in reversed(procs):
            code = p.stop()
            print(f"  {p.name:<10} stopped (exit {code})", flush=True)

    signal.signal(signal.SIGTERM, lambda *_: (stop_all(), sys.exit(0)))
    try:
        served = Registry(artifacts_root()).resolve(os.environ.get("CASCADE_MODEL_VERSION") or None)
        routing_file = prepare_routing(served)
        print(f"ranker routing: {routing_file} (default {served}; change it with `cascade models promote`)",
              flush=True)
        if kafka_enabled():
            start_streaming(logs, procs)
        backend: dict[str, str] = {}
        if triton_enabled():
            repo = build_triton_repo(served)
            triton = TritonProcess(repo, int(os.environ.get("TRITON_GRPC_PORT") or free_port()),
                                   logs / "tritonserver.log")
            procs.append(triton.start())
            print(f"starting {'triton':<10} on {triton.target} pid {triton.pid} (repository {repo}; "
                  f"log: {triton.log_path})", flush=True)
            triton.wait_ready()
            print(f"  {'triton':<10} READY", flush=True)
            backend = {"CASCADE_BACKEND__TYPE": "triton", "CASCADE_BACKEND__URL": triton.target,
                       "CASCADE_BACKEND__PROFILE": "python", "CASCADE_BACKEND__TIMEOUT_S": "5"}
        for spec in all_specs:
            p = ServiceProcess(spec.name, spec.module, spec.port,
                               env=build_env(spec, all_specs, routing_file, backend),
                               log_path=logs / f"{spec.name}.log")
            if not spec.grpc:
                p.env["CASCADE_PORT"] = str(spec.port)
            procs.append(p.start())
            print(f"starting {spec.name:<10} on 127.0.0.1:{spec.port} (log: {p.log_path})", flush=True)
            if spec.grpc:
                p.wait_serving(timeout_s=180)
            else:
                wait_http(f"http://127.0.0.1:{spec.port}/healthz", p)
            print(f"  {spec.name:<10} SERVING", flush=True)
        router = next(s for s in all_specs if s.name == "router")
        gateway = next(s for s in all_specs if s.name == "gateway")
        print(f"""
Cascade is up.
  gRPC   Recommend : 127.0.0.1:{router.port}  (cascade.router.v1.RecommendationService/Recommend, reflection on)
  HTTP   gateway   : http://127.0.0.1:{gateway.port}/v1/recommendations   (docs: http://127.0.0.1:{gateway.port}/docs)
  metrics          : {', '.join(f'{s.name}=:{s.metrics_port}' for s in all_specs if s.metrics_port)}
  ranker backend   : {f"triton at {backend['CASCADE_BACKEND__URL']}" if backend else "onnxruntime (in-process)"}
  ranker routing   : {routing_file}
  kafka            : {kafka_bootstrap() + " (topic user-events; POST /v1/events on the gateway)" if kafka_enabled() else "off (KAFKA=0)"}

Try:
  .venv/bin/cascade recommend --user 1 --n 10
  .venv/bin/cascade models list
  .venv/bin/python -m cascade_stream.simulator --help     # live events into Kafka
  curl -s -X POST http://127.0.0.1:{gateway.port}/v1/recommendations -H 'content-type: application/json' -d '{{"user_id": "1", "num_items": 5}}'

Ctrl-C stops everything.""", flush=True)
        while True:
            for p in procs:
                if p.proc is not None and p.proc.poll() is not None:
                    print(f"{p.name} exited unexpectedly with {p.proc.returncode}; see {p.log_path}", flush=True)
                    stop_all()
                    return 1
            time.sleep(1.0)
    except KeyboardInterrupt:
        stop_all()
        return 0
    except Exception as e:
        print(f"make up failed: {e}", file=sys.stderr, flush=True)
        stop_all()
        return 1


if __name__ == "__main__":
    sys.exit(main())
