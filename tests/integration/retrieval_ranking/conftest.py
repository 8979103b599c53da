"""Starts the retrieval and ranking services as real processes against a fixture registry."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import sys
from dataclasses import dataclass
from types import ModuleType

import pytest

from cascade_platform.procs import ServiceProcess, free_port


def load_registry_fixture() -> ModuleType:
    """Import ``registry_fixture.py`` (next to this file) once, under one module name for every test dir."""
    name = "cascade_registry_fixture"
    if name not in sys.modules:
        path = pathlib.Path(__file__).resolve().parent / "registry_fixture.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@dataclass
class Stack:
    root: pathlib.Path
    versions: dict
    retrieval: ServiceProcess
    ranking: ServiceProcess
    retrieval_metrics: int
    ranking_metrics: int
    routing_file: pathlib.Path

    def write_routing(self, doc: dict | str) -> None:
        """Replace the routing file atomically (what a ConfigMap update or `mv` does)."""
        tmp = self.routing_file.with_suffix(".tmp")
        tmp.write_text(doc if isinstance(doc, str) else json.dumps(doc))
        tmp.replace(self.routing_file)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    fixture = load_registry_fixture()
    root = tmp_path_factory.mktemp("rr-artifacts")
    versions = {
        "v1": fixture.build_registry(root, "v1", seed=0, ranker_seed=1),
        "v2": fixture.build_registry(root, "v2", seed=0, ranker_seed=2, set_latest=False),
    }
    logs = tmp_path_factory.mktemp("rr-logs")
    routing = logs / "routing.json"
    routing.write_text(json.dumps({"default": "v1"}))
    common = {"CASCADE_ARTIFACTS_DIR": str(root), "CASCADE_DRAIN_SECONDS": "0.5", "CASCADE_LOG_LEVEL": "INFO"}
    r_metrics, k_metrics = free_port(), free_port()
    retrieval = ServiceProcess(
        "retrieval", "cascade_retrieval", free_port(),
        env={**common, "CASCADE_METRICS_PORT": str(r_metrics)}, log_path=logs / "retrieval.log",
    )
    ranking = ServiceProcess(
        "ranking", "cascade_ranking", free_port(),
        env={**common, "CASCADE_METRICS_PORT": str(k_metrics), "CASCADE_MODEL_ROUTING_FILE": str(routing),
             "CASCADE_UNLOAD_GRACE_S": "1"},
        log_path=logs / "ranking.log",
    )
    retrieval.start()
    ranking.start()
    try:
        retrieval.wait_serving()
        ranking.wait_serving()
        yield Stack(root, versions, retrieval, ranking, r_metrics, k_metrics, routing)
    finally:
        codes = (retrieval.stop(), ranking.stop())
    assert codes == (0, 0), f"services did not exit cleanly on SIGTERM: {codes}"
