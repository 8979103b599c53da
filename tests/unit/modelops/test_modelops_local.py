"""Local routing file applier + ModelOps: registry validation, atomic writes, history, audit records."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from cascade_modelops.appliers import ChangeMeta, LocalFileApplier, RoutingStateError
from cascade_modelops.audit import AuditLog
from cascade_modelops.mlflow_sync import MlflowTracker
from cascade_modelops.ops import ModelOps
from cascade_modelops.promotion import Promote, PromotionError, decide
from cascade_platform.procs import free_port
from modelops_registry import three_versions


@pytest.fixture
def registry(tmp_path):
    return three_versions(tmp_path / "artifacts")


@pytest.fixture
def routing_file(tmp_path) -> Path:
    p = tmp_path / "run" / "model-routing.json"
    LocalFileApplier(p).initialize("v1")
    return p


def ops(registry, routing_file, tmp_path, tracker=None) -> ModelOps:
    return ModelOps(registry, LocalFileApplier(routing_file), AuditLog(tmp_path / "audit.log"), tracker,
                    actor="alice@test")


def test_initialize_writes_default_and_clears_history(tmp_path):
    p = tmp_path / "r.json"
    a = LocalFileApplier(p)
    a.history_file.write_text(json.dumps({"history": ["old"]}))
    state = a.initialize("v1")
    assert json.loads(p.read_text()) == {"default": "v1", "canary": None, "canary_weight": 0}
    assert not a.history_file.exists()
    assert a.read() == state


def test_promote_canary_full_rollback_abort_round_trip(registry, routing_file, tmp_path):
    o = ops(registry, routing_file, tmp_path)
    out = o.promote("ranker", "v2", 10)
    assert json.loads(routing_file.read_text()) == {"default": "v1", "canary": "v2", "canary_weight": 10}
    assert out.record.action == "promote-canary" and out.record.actor == "alice@test"
    assert out.record.target == f"file:{routing_file.resolve()}"

    o.abort("ranker")
    assert json.loads(routing_file.read_text()) == {"default": "v1", "canary": None, "canary_weight": 0}

    o.promote("ranker", "v2", 25)
    o.promote("ranker", "v2")
    assert json.loads(routing_file.read_text()) == {"default": "v2", "canary": None, "canary_weight": 0}
    assert LocalFileApplier(routing_file).read().history == ("v1",)
    history_doc = json.loads(LocalFileApplier(routing_file).history_file.read_text())
    assert history_doc["changed_by"] == "alice@test" and history_doc["last_action"] == "promote-full"

    o.rollback("ranker")
    assert json.loads(routing_file.read_text()) == {"default": "v1", "canary": None, "canary_weight": 0}
    assert LocalFileApplier(routing_file).read().history == ()

    audit = AuditLog(tmp_path / "audit.log").records()
    assert [(r["action"], r["version"]) for r in audit] == [
        ("promote-canary", "v2"), ("abort", "v2"), ("promote-canary", "v2"), ("promote-full", "v2"),
        ("rollback", "v1")]
    assert all(r["actor"] == "alice@test" and r["ts"].endswith("Z") for r in audit)
    assert audit[3]["before"] == {"default": "v1", "canary": "v2", "canary_weight": 25}
    assert audit[3]["details"]["mlflow"] == "disabled"


@pytest.mark.parametrize(
    ("model", "version", "message"),
    [
        ("ranker", "v9", "model version 'v9' not found"),
        ("ranker", "v-odd", "v-odd feature 0 is 'renamed_feature'"),
        ("retriever", "v2", "unknown model 'retriever'"),
    ],
)
def test_promotion_refused_before_routing_changes(registry, routing_file, tmp_path, model, version, message):
    before = routing_file.read_text()
    with pytest.raises(PromotionError, match=message):
        ops(registry, routing_file, tmp_path).promote(model, version, 10)
    assert routing_file.read_text() == before
    assert AuditLog(tmp_path / "audit.log").records() == []


def test_version_without_ranker_file_is_not_loadable(registry, routing_file, tmp_path):
    (registry.path("v2") / "ranker.onnx").unlink()
    with pytest.raises(PromotionError, match="v2 is not loadable"):
        ops(registry, routing_file, tmp_path).promote("ranker", "v2", 10)


def test_served_default_missing_from_registry_is_named(registry, tmp_path):
    p = tmp_path / "r.json"
    LocalFileApplier(p).initialize("v-elsewhere")
    with pytest.raises(PromotionError, match="served default 'v-elsewhere' is not in the registry"):
        ops(registry, p, tmp_path).promote("ranker", "v2", 10)


def test_missing_and_corrupt_routing_files_name_the_fix(tmp_path):
    with pytest.raises(RoutingStateError, match="does not exist: start the platform with `make up`"):
        LocalFileApplier(tmp_path / "nope.json").read()
    bad = tmp_path / "bad.json"
    bad.write_text('{"default": "v1", "canary_weight": 5}')
    with pytest.raises(RoutingStateError, match="not a valid routing document"):
        LocalFileApplier(bad).read()


def test_concurrent_updates_serialize(registry, routing_file):
    """Two operators at once: the lock makes each read-decide-write see the other's result."""
    applier = LocalFileApplier(routing_file)
    errors: list[Exception] = []
    barrier = threading.Barrier(2)

    def promote(weight: int) -> None:
        barrier.wait()
        try:
            applier.update(lambda s: decide(s, Promote("v2", weight), {"v1", "v2"}), ChangeMeta("t", "now"))
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=promote, args=(w,)) for w in (10, 20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    final = applier.read().routing
    assert final.canary == "v2" and final.canary_weight in (10, 20)
    assert not list(routing_file.parent.glob(".*.tmp-*"))  # no temp files left behind


def test_mlflow_failure_is_reported_and_routing_change_stands(registry, routing_file, tmp_path):
    """A real tracker against a closed port: the alias update fails, the promotion is kept and audited."""
    tracker = MlflowTracker(f"http://127.0.0.1:{free_port()}", timeout_s=2)
    out = ops(registry, routing_file, tmp_path, tracker).promote("ranker", "v2", 10)
    assert out.tracking_error and "unreachable" in out.tracking_error
    assert json.loads(routing_file.read_text())["canary"] == "v2"
    assert AuditLog(tmp_path / "audit.log").records()[0]["details"]["mlflow"].startswith("error: TrackingError")
