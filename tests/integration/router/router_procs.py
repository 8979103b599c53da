"""Process helpers for the router/gateway integration tests: a router whose downstreams are closed ports
(a real outage), a gateway in front of it, and a tiny seeded registry (never depends on training)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cascade_platform.procs import ServiceProcess, free_port

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "unit" / "router"))
from router_fixture_registry import build_registry  # noqa: E402,F401  (re-exported)


def closed_target() -> str:
    return f"127.0.0.1:{free_port()}"


def start_router(
    tmp: Path, artifacts: Path, *, targets: dict[str, str] | None = None, **env: str
) -> ServiceProcess:
    targets = targets or {}
    proc = ServiceProcess(
        "router",
        "cascade_router",
        free_port(),
        env={
            "CASCADE_ARTIFACTS_DIR": str(artifacts),
            "CASCADE_METRICS_PORT": str(free_port()),
            "CASCADE_RETRIEVAL_TARGET": targets.get("retrieval", closed_target()),
            "CASCADE_FEATURES_TARGET": targets.get("features", closed_target()),
            "CASCADE_RANKING_TARGET": targets.get("ranking", closed_target()),
            # Generous budget: the shared CI box is slow and these tests assert behaviour, not latency.
            "CASCADE_REQUEST_BUDGET_S": "5",
            **env,
        },
        log_path=tmp / f"router-{free_port()}.log",
    )
    proc.start()
    try:
        proc.wait_serving(120)
    except Exception:
        proc.kill()
        raise
    return proc


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def metric_value(text: str, name: str, labels: str) -> float:
    """Value of ``name{labels}`` in a Prometheus exposition (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(f"{name}{{{labels}}} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@dataclass
class HttpProcess:
    """A gateway (uvicorn) process on loopback."""

    port: int
    proc: subprocess.Popen
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        raw: bytes | None = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, dict]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers or {})
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                status, payload, headers = r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as e:
            status, payload, headers = e.code, e.read(), dict(e.headers)
        ctype = headers.get("content-type", "")
        return status, (json.loads(payload) if "json" in ctype else payload.decode()), headers

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_gateway(tmp: Path, router_target: str) -> HttpProcess:
    port = free_port()
    log_path = tmp / f"gateway-{port}.log"
    env = {
        **os.environ,
        "CASCADE_PORT": str(port),
        "CASCADE_ROUTER_TARGET": router_target,
        "CASCADE_REQUEST_TIMEOUT_S": "10",
        "CASCADE_HEALTH_TIMEOUT_S": "5",
        "PYTHONUNBUFFERED": "1",
    }
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cascade_gateway"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    gw = HttpProcess(port, proc, log_path)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited with {proc.returncode}\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(gw.url + "/openapi.json", timeout=2):
                return gw
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    gw.stop()
    raise TimeoutError(f"gateway not answering on {gw.url}\n{log_path.read_text()[-3000:]}")
