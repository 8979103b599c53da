"""A tiny registry version (manifest + feast tables) and the feature service run as real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import redis

from cascade_core.features import FeatureLayout
from cascade_core.registry import AnnSpec, ModelManifest, RankerSpec, Registry
from cascade_features.synthetic import SyntheticTables, write_feature_tables
from cascade_platform.procs import ServiceProcess, free_port

CATEGORIES = ("action", "comedy", "drama", "horror")
VERSION = "feat-it-1"


@dataclass
class Version:
    artifacts: Path
    data: Path
    layout: FeatureLayout
    defaults: np.ndarray
    tables: SyntheticTables


@pytest.fixture(scope="module")
def version(tmp_path_factory) -> Version:
    root = tmp_path_factory.mktemp("features_it")
    layout = FeatureLayout(CATEGORIES)
    reg = Registry(root / "artifacts")
    vdir = reg.create_version_dir(VERSION)
    tables = write_feature_tables(vdir / "feast", n_users=30, n_items=300, user_dim=layout.user_dim,
                                  item_dim=layout.item_dim, seed=7)
    defaults = np.linspace(-1, 1, layout.dim).astype(np.float32)
    reg.write_manifest(ModelManifest(
        version_id=VERSION, created_at=datetime.now(timezone.utc), data_fingerprint="test", dataset="synthetic",
        n_users=30, n_items=300, embedding_dim=8, ann=AnnSpec(dim=8),
        ranker=RankerSpec(feature_names=layout.names, feature_defaults=defaults.tolist()),
    ))
    reg.set_latest(VERSION)
    return Version(root / "artifacts", root / "data", layout, defaults, tables)


def materialize(v: Version, *extra: str) -> None:
    env = {**os.environ, "CASCADE_ARTIFACTS_DIR": str(v.artifacts), "CASCADE_DATA_DIR": str(v.data)}
    r = subprocess.run([sys.executable, "-m", "cascade_features.repo", "apply-materialize", "--version", "latest",
                        *extra], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"materialize failed:\n{r.stdout}\n{r.stderr}"
    assert f"version: {VERSION}" in r.stdout


def start(v: Version, name: str, log_dir: Path, **env: str) -> ServiceProcess:
    return ServiceProcess(name, "cascade_features", free_port(), env={
        "CASCADE_ARTIFACTS_DIR": str(v.artifacts), "CASCADE_DATA_DIR": str(v.data),
        "CASCADE_METRICS_PORT": "0", "CASCADE_DRAIN_SECONDS": "0.5", **env,
    }, log_path=log_dir / f"{name}.log").start()


@pytest.fixture(scope="module")
def services(version: Version, tmp_path_factory):
    """Three feature services: on SQLite, on Redis, and on a Redis that is down."""
    project = f"cascade_it_{uuid.uuid4().hex[:8]}"
    materialize(version)
    materialize(version, "--online-store", "redis", "--project", project)
    logs = tmp_path_factory.mktemp("features_logs")
    procs = {
        "sqlite": start(version, "features-sqlite", logs),
        "redis": start(version, "features-redis", logs, CASCADE_ONLINE_STORE__TYPE="redis",
                       CASCADE_FEAST_PROJECT=project),
        "redis_down": start(version, "features-redis-down", logs, CASCADE_ONLINE_STORE__TYPE="redis",
                            CASCADE_ONLINE_STORE__PORT=str(free_port())),
    }
    try:
        for p in procs.values():
            p.wait_serving(timeout_s=180)
        yield procs
    finally:
        for p in procs.values():
            p.stop()
        r = redis.Redis()
        keys = list(r.scan_iter(match=b"*" + project.encode(), count=1000))
        if keys:
            r.delete(*keys)
        r.close()
