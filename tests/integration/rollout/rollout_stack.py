"""The four services as real processes on a two-version fixture registry, plus a Recommend load loop.

Used by the rollout test (routing file promotions under load). Registry: ``v1`` and ``v2`` built by
the seeded router fixture builder (``full=True``: everything retrieval/features/ranking serve, no
training), same feature layout and catalog, different ranker weights; LATEST = v1, so the router
and the features service serve v1's manifest/tables while the routing file picks the ranker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from cascade.router.v1 import router_pb2, router_pb2_grpc
from cascade_core.registry import Registry
from cascade_platform.procs import ServiceProcess, free_port

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "unit" / "router"))
from router_fixture_registry import build_registry  # noqa: E402

SERVICES = (("ranking", "cascade_ranking"), ("features", "cascade_features"), ("retrieval", "cascade_retrieval"))


def two_version_registry(root: Path) -> Registry:
    build_registry(root, version="v1", seed=7, full=True)
    reg = build_registry(root, version="v2", seed=8, full=True)
    reg.set_latest("v1")
    return reg


def materialize(env: dict[str, str]) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "cascade_features.repo", "apply-materialize", "--version", "latest"],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, f"materialize failed:\n{r.stdout}\n{r.stderr}"


@dataclass
class Stack:
    tmp: Path
    registry: Registry
    routing_file: Path
    env: dict[str, str]
    procs: dict[str, ServiceProcess] = field(default_factory=dict)

    @property
    def router_target(self) -> str:
        return self.procs["router"].target

    def start(self, ranking_env: dict[str, str] | None = None) -> None:
        """Start ranking, features, retrieval, then the router; each waits for SERVING."""
        for name, module in SERVICES:
            extra = {"CASCADE_METRICS_PORT": "0", "CASCADE_DRAIN_SECONDS": "0.5"}
            if name == "ranking":
                extra.update({"CASCADE_MODEL_ROUTING_FILE": str(self.routing_file),
                              "CASCADE_UNLOAD_GRACE_S": "2", **(ranking_env or {})})
            p = ServiceProcess(name, module, free_port(), env={**self.env, **extra},
                               log_path=self.tmp / f"{name}.log").start()
            self.procs[name] = p
        for p in list(self.procs.values()):
            p.wait_serving(180)
        # Generous deadlines: this box is shared; the tests assert behaviour (0 failures), not latency.
        router_env = {
            **self.env, "CASCADE_METRICS_PORT": "0", "CASCADE_DRAIN_SECONDS": "0.5",
            "CASCADE_RETRIEVAL_TARGET": self.procs["retrieval"].target,
            "CASCADE_FEATURES_TARGET": self.procs["features"].target,
            "CASCADE_RANKING_TARGET": self.procs["ranking"].target,
            "CASCADE_RETRIEVAL_TIMEOUT_S": "10", "CASCADE_FEATURES_TIMEOUT_S": "10",
            "CASCADE_RANKING_TIMEOUT_S": "10", "CASCADE_REQUEST_BUDGET_S": "30",
        }
        p = ServiceProcess("router", "cascade_router", free_port(), env=router_env,
                           log_path=self.tmp / "router.log").start()
        self.procs["router"] = p
        p.wait_serving(180)

    def stop(self) -> dict[str, int | None]:
        return {name: p.stop() for name, p in reversed(list(self.procs.items()))}


def make_stack(tmp: Path) -> Stack:
    reg = two_version_registry(tmp / "artifacts")
    env = {"CASCADE_ARTIFACTS_DIR": str(reg.root), "CASCADE_DATA_DIR": str(tmp / "data"), "CASCADE_LOG_JSON": "true"}
    materialize(env)
    routing = tmp / "run" / "model-routing.json"
    routing.parent.mkdir(parents=True, exist_ok=True)
    routing.write_text(json.dumps({"default": "v1"}))
    return Stack(tmp, reg, routing, env)


@dataclass(frozen=True)
class Result:
    seq: int
    ok: bool
    degraded: bool
    model_version: str
    error: str = ""


class LoadLoop:
    """Recommend calls from a background thread at ``rate`` req/s (bounded by ``max_requests``).

    Every call has a distinct request id (the ranking canary split hashes it). A failure is an RPC
    error or a degraded response (a fallback answered instead of the ranker).
    """

    def __init__(self, target: str, rate: float = 25.0, max_requests: int = 3000) -> None:
        self.target = target
        self.rate = rate
        self.max_requests = max_requests
        self.results: list[Result] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="recommend-load", daemon=True)

    def _run(self) -> None:
        with grpc.insecure_channel(self.target) as ch:
            stub = router_pb2_grpc.RecommendationServiceStub(ch)
            period = 1.0 / self.rate
            next_at = time.monotonic()
            for seq in range(self.max_requests):
                if self._stop.is_set():
                    return
                req = router_pb2.RecommendRequest(user_id=f"u{seq % 10}", num_items=5, request_id=f"load-{seq}")
                try:
                    resp = stub.Recommend(req, timeout=30)
                    r = Result(seq, not resp.degraded, resp.degraded, resp.model_version)
                except grpc.RpcError as e:
                    r = Result(seq, False, False, "", f"{e.code().name}: {e.details()}")
                with self._lock:
                    self.results.append(r)
                next_at += period
                time.sleep(max(0.0, next_at - time.monotonic()))

    def start(self) -> "LoadLoop":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    def snapshot(self) -> list[Result]:
        with self._lock:
            return list(self.results)

    def mark(self) -> int:
        """Index of the next result: responses from here on were requested after this point."""
        return len(self.snapshot())

    def wait_until(self, what: str, predicate, deadline_s: float = 120.0) -> list[Result]:
        """Poll until ``predicate(results)`` holds; fail naming ``what`` (and the tail) if it never does."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            results = self.snapshot()
            if predicate(results):
                return results
            if not self._thread.is_alive():
                break
            time.sleep(0.1)
        tail = [(r.seq, r.model_version, r.error) for r in self.snapshot()[-10:]]
        raise AssertionError(f"load never reached: {what} (last results: {tail})")


def tail_run(results: list[Result], start: int, version: str, n: int) -> bool:
    """True when the last ``n`` results after index ``start`` all came from ``version``."""
    after = results[start:]
    return len(after) >= n and all(r.model_version == version for r in after[-n:])
