"""MLflow tracking + model registry against a real ``mlflow server`` (SQLite store, proxied artifacts):
training-run records, idempotent backfill (``cascade models sync``) and promotion aliases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from cascade_modelops import tracking_server
from cascade_modelops.appliers import LocalFileApplier
from cascade_modelops.mlflow_sync import MlflowTracker, record_version
from cascade_platform.procs import free_port
from rollout_stack import ROOT, build_registry

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CASCADE = str(Path(sys.executable).with_name("cascade"))
HOME = Path(os.environ.get("CASCADE_MLFLOW_HOME", ROOT / ".tools" / "mlflow"))


@pytest.fixture(scope="module")
def mlflow(tmp_path_factory):
    try:
        tracking_server.mlflow_bin(HOME)
    except tracking_server.TrackingServerError as e:
        pytest.fail(f"{e} (or `make mlflow-env`)", pytrace=False)
    tmp = tmp_path_factory.mktemp("mlflow")
    server = tracking_server.start(free_port(), tmp / "data", tmp / "mlflow.log", HOME)
    try:
        yield server
    finally:
        server.stop()
    assert (tmp / "data" / "mlflow.db").is_file()  # the SQLAlchemy store really was SQLite under the data dir


def api(server, endpoint: str, **params) -> dict:
    r = requests.get(f"{server.url}/api/2.0/mlflow/{endpoint}", params=params, timeout=10)
    r.raise_for_status()
    return r.json()


def test_record_version_logs_run_and_model_version(mlflow, tmp_path, monkeypatch):
    reg = build_registry(tmp_path / "artifacts", version="v1", seed=1)
    m = reg.manifest("v1")
    reg.write_manifest(m.model_copy(update={"metrics": {"ndcg@10": 0.25, "two_tower": {"loss": 1.5}, "note": "x"},
                                            "params": {"epochs": 3, "ranker": {"hidden": [64, 32]}},
                                            "git_commit": "abc123"}))
    monkeypatch.setenv("CASCADE_MLFLOW_TRACKING_URI", mlflow.url)
    monkeypatch.setenv("CASCADE_MLFLOW_EXPERIMENT", "rec-test")
    rec = record_version(reg.path("v1"))
    assert rec is not None and rec.created and rec.version == "v1"
    again = record_version(reg.path("v1"))
    assert again is not None and not again.created and again.model_version == rec.model_version

    run = api(mlflow, "runs/get", run_id=rec.run_id)["run"]
    metrics = {x["key"]: x["value"] for x in run["data"]["metrics"]}
    params = {x["key"]: x["value"] for x in run["data"]["params"]}
    tags = {x["key"]: x["value"] for x in run["data"]["tags"]}
    assert metrics == {"ndcg_at_10": 0.25, "two_tower.loss": 1.5}
    assert params["epochs"] == "3" and params["ranker.hidden"] == "[64, 32]"
    assert tags["mlflow.source.git.commit"] == "abc123"
    assert tags["cascade.data_fingerprint"] == "fixture-seed-1"
    assert tags["cascade.registry_path"] == str(reg.path("v1").resolve())
    assert run["info"]["status"] == "FINISHED"
    files = api(mlflow, "artifacts/list", run_id=rec.run_id, path="registry")["files"]
    assert [f["path"] for f in files] == ["registry/manifest.json"]
    model = api(mlflow, "registered-models/get", name="cascade-ranker")["registered_model"]
    assert {a["alias"]: a["version"] for a in model["aliases"]} == {"staging": rec.model_version}


def test_sync_backfills_and_promotions_move_aliases(mlflow, tmp_path):
    reg = build_registry(tmp_path / "artifacts", version="v1", seed=1)
    build_registry(tmp_path / "artifacts", version="v2", seed=2)
    routing = tmp_path / "routing.json"
    LocalFileApplier(routing).initialize("v1")
    env = {**os.environ, "CASCADE_ARTIFACTS_DIR": str(reg.root), "CASCADE_DATA_DIR": str(tmp_path / "data"),
           "CASCADE_MLFLOW_TRACKING_URI": mlflow.url, "CASCADE_MLFLOW_MODEL_PREFIX": "sync-",
           "CASCADE_MODEL_ROUTING_FILE": str(routing), "CASCADE_ACTOR": "carol"}

    def cascade(*args: str) -> str:
        r = subprocess.run([CASCADE, "models", *args], env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return r.stdout

    out = cascade("sync")
    assert "v1: MLflow sync-ranker version 1 (recorded)" in out and "v2: MLflow sync-ranker version 2 (recorded)" in out
    assert "already recorded" in cascade("sync")
    tracker = MlflowTracker(mlflow.url, model_prefix="sync-")
    assert tracker.aliases("ranker") == {"production": "v1"}

    cascade("promote", "ranker", "v2", "--canary", "10")
    assert tracker.aliases("ranker") == {"production": "v1", "canary": "v2"}
    assert "@canary" in cascade("list")
    cascade("promote", "ranker", "v2", "--full")
    assert tracker.aliases("ranker") == {"production": "v2"}
    cascade("rollback", "ranker")
    assert tracker.aliases("ranker") == {"production": "v1"}
    audit = [json.loads(line) for line in (tmp_path / "data" / "audit.log").read_text().splitlines()]
    assert [a["details"]["mlflow"] for a in audit] == ["aliases updated"] * 3
