"""Helpers for the experiment integration tests: a two-version registry, the four services as real
processes (ranking preloads the second version), a real Tansu broker, and offline recomputation of
what each ranker scores (from the registry files the services serve)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "unit" / "router"))
sys.path.insert(0, str(HERE.parents[1] / "integration" / "router"))

from cascade_core.features import FeatureLayout  # noqa: E402
from cascade_core.registry import Registry  # noqa: E402
from cascade_platform.procs import ServiceProcess, free_port  # noqa: E402
from router_fixture_registry import build_registry  # noqa: E402

VERSION_A = "v-a"
VERSION_B = "v-b"
SERVICES = {"ranking": "cascade_ranking", "features": "cascade_features", "retrieval": "cascade_retrieval"}
GENEROUS = {  # behaviour, not latency, is under test on this shared box
    "CASCADE_REQUEST_BUDGET_S": "30", "CASCADE_RETRIEVAL_TIMEOUT_S": "10",
    "CASCADE_FEATURES_TIMEOUT_S": "10", "CASCADE_RANKING_TIMEOUT_S": "10",
}


def two_version_registry(root: Path) -> Registry:
    """``v-a`` (LATEST, served) and ``v-b`` (a second ranker with other weights, same layout)."""
    build_registry(root, version=VERSION_B, seed=11, full=True)
    reg = build_registry(root, version=VERSION_A, seed=7, full=True)
    reg.set_latest(VERSION_A)
    return reg


def materialize(reg: Registry, data_dir: Path) -> None:
    env = {**os.environ, "CASCADE_ARTIFACTS_DIR": str(reg.root), "CASCADE_DATA_DIR": str(data_dir)}
    r = subprocess.run(
        [sys.executable, "-m", "cascade_features.repo", "apply-materialize", "--version", "latest"],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, f"materialize failed:\n{r.stdout}\n{r.stderr}"


@dataclass
class Services:
    registry: Registry
    tmp: Path
    procs: dict[str, ServiceProcess] = field(default_factory=dict)

    def targets(self) -> dict[str, str]:
        return {n: self.procs[n].target for n in SERVICES}

    def stop(self) -> None:
        for p in reversed(list(self.procs.values())):
            p.stop()


def start_services(reg: Registry, tmp: Path, extra_env: dict[str, str] | None = None) -> Services:
    """ranking (preloading v-b), features and retrieval on the registry's LATEST."""
    materialize(reg, tmp / "data")
    s = Services(reg, tmp)
    env = {"CASCADE_ARTIFACTS_DIR": str(reg.root), "CASCADE_DATA_DIR": str(tmp / "data"),
           "CASCADE_METRICS_PORT": "0", "CASCADE_DRAIN_SECONDS": "0.5", **(extra_env or {})}
    try:
        for name, module in SERVICES.items():
            e = dict(env)
            if name == "ranking":
                e["CASCADE_PRELOAD_VERSIONS"] = json.dumps([VERSION_B])
            s.procs[name] = ServiceProcess(name, module, free_port(), env=e, log_path=tmp / f"{name}.log").start()
        for p in s.procs.values():
            p.wait_serving(180)
    except BaseException:
        s.stop()
        raise
    return s


class Scorer:
    """What a version's ranker scores for (user, items), with the served version's (v-a) features."""

    def __init__(self, reg: Registry) -> None:
        d = reg.path(VERSION_A)
        m = reg.manifest(VERSION_A)
        self.layout = FeatureLayout.from_names(m.ranker.feature_names)
        self.users = json.loads((d / "user_ids.json").read_text())
        self.catalog = pd.read_parquet(d / "items.parquet", columns=["item_id"])["item_id"].tolist()
        self.item_emb = np.load(d / "item_embeddings.npy")
        self.user_emb = np.load(d / "user_embeddings.npy")
        self.uf = pd.read_parquet(d / "feast" / "user_features.parquet").set_index("user_id")
        self.itf = pd.read_parquet(d / "feast" / "item_features.parquet").set_index("item_id")
        self.sessions = {
            v: ort.InferenceSession(str(reg.path(v) / "ranker.onnx"), providers=["CPUExecutionProvider"])
            for v in (VERSION_A, VERSION_B)
        }

    def scores(self, version: str, user_id: str, items: list[str], sources: list[str]) -> np.ndarray:
        rows = [self.catalog.index(i) for i in items]
        ip = self.item_emb[rows] @ self.user_emb[self.users.index(user_id)]
        retrieval = np.where(np.asarray(sources) == "ann", ip, 0.0).astype(np.float32)
        user_vec = np.asarray(self.uf.loc[user_id, "user_vec"], dtype=np.float32)
        item_mat = np.stack([np.asarray(self.itf.loc[i, "item_vec"], dtype=np.float32) for i in items])
        x = self.layout.assemble(user_vec, item_mat, retrieval)
        return self.sessions[version].run(None, {"features": x})[0]


def run_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cascade_cli.main", *args], capture_output=True, text=True,
                          timeout=timeout)


def sample(text: str, name: str, **labels: str) -> float:
    """Value of the sample ``name`` with exactly these labels in a Prometheus exposition (0 if absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return 0.0
