"""The whole four-service stack as real processes on free loopback ports, on the registered model.

Uses the model registered under $CASCADE_ARTIFACTS_DIR (``make test`` trains one when missing) and a
fresh SQLite online store materialized with Feast for this session.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cascade_core.registry import Registry
from cascade_platform.procs import ServiceProcess, free_port

ROOT = Path(__file__).resolve().parents[2]


def _artifacts() -> Path:
    return Path(os.environ.get("CASCADE_ARTIFACTS_DIR", ROOT / "artifacts")).resolve()


class Stack:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.base_env = {
            "CASCADE_ARTIFACTS_DIR": str(_artifacts()),
            "CASCADE_DATA_DIR": str(tmp / "data"),
            "CASCADE_LOG_JSON": "true",
        }
        self.procs: dict[str, ServiceProcess] = {}

    def materialize(self) -> None:
        env = {**os.environ, **self.base_env}
        r = subprocess.run(
            [sys.executable, "-m", "cascade_features.repo", "apply-materialize", "--version", "latest"],
            env=env, capture_output=True, text=True, timeout=600,
        )
        assert r.returncode == 0, f"materialize failed:\n{r.stdout}\n{r.stderr}"

    def start(self, name: str, module: str, extra: dict[str, str] | None = None) -> ServiceProcess:
        port = free_port()
        env = {**self.base_env, "CASCADE_METRICS_PORT": str(free_port()), **(extra or {})}
        p = ServiceProcess(name, module, port, env=env, log_path=self.tmp / f"{name}.log").start()
        self.procs[name] = p
        p.wait_serving(timeout_s=180)
        return p

    def restart(self, name: str) -> ServiceProcess:
        old = self.procs[name]
        old.stop()
        p = ServiceProcess(old.name, old.module, old.port, env=old.env, log_path=old.log_path).start()
        self.procs[name] = p
        p.wait_serving(timeout_s=180)
        return p

    def stop(self) -> None:
        for p in reversed(list(self.procs.values())):
            p.stop()


@pytest.fixture(scope="session")
def registry() -> Registry:
    reg = Registry(_artifacts())
    if not reg.versions():
        pytest.fail(f"no model registered under {_artifacts()}: run `make artifacts` (make test does it)")
    return reg


@pytest.fixture(scope="session")
def stack(tmp_path_factory, registry) -> Stack:
    s = Stack(tmp_path_factory.mktemp("stack"))
    s.materialize()
    try:
        s.start("ranking", "cascade_ranking")
        s.start("features", "cascade_features")
        s.start("retrieval", "cascade_retrieval")
        s.start("router", "cascade_router", {
            "CASCADE_RETRIEVAL_TARGET": s.procs["retrieval"].target,
            "CASCADE_FEATURES_TARGET": s.procs["features"].target,
            "CASCADE_RANKING_TARGET": s.procs["ranking"].target,
            # Correctness, not latency, is under test here: on a loaded 2-core CI machine the default
            # 300 ms budget could turn a slow first call into a (correct, but unexpected) fallback.
            "CASCADE_REQUEST_BUDGET_S": "5", "CASCADE_RETRIEVAL_TIMEOUT_S": "2",
            "CASCADE_FEATURES_TIMEOUT_S": "2", "CASCADE_RANKING_TIMEOUT_S": "2",
        })
        yield s
    finally:
        s.stop()
