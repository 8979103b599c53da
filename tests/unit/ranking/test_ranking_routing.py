"""Model routing: weighted canary choice, and hot reload of the routing file with a real backend."""

from __future__ import annotations

import json
import logging

import pytest
from pydantic import ValidationError

from cascade_core.errors import NotFoundError
from cascade_core.registry import Registry
from cascade_ranking.backends.onnxruntime import OnnxRuntimeBackend
from cascade_ranking.models import ModelManager
from cascade_ranking.routing import ModelRouting, RoutingWatcher
from backend_contract import load_registry_fixture

registry_fixture = load_registry_fixture()
IDS = [f"req-{i}" for i in range(4000)]


def test_choice_is_deterministic_and_weighted():
    r = ModelRouting(default="v1", canary="v2", canary_weight=30)
    picks = [r.choose(i) for i in IDS]
    assert picks == [r.choose(i) for i in IDS]
    assert 0.27 < picks.count("v2") / len(picks) < 0.33
    assert {ModelRouting(default="v1", canary="v2", canary_weight=0).choose(i) for i in IDS} == {"v1"}
    assert {ModelRouting(default="v1", canary="v2", canary_weight=100).choose(i) for i in IDS} == {"v2"}
    assert {ModelRouting(default="v1").choose(i) for i in IDS} == {"v1"}


@pytest.mark.parametrize("doc", [
    {"default": "v1", "canary": "v2", "canary_weight": 101},
    {"default": "v1", "canary_weight": 10},
    {"default": ""},
    {"default": "v1", "weight": 3},
])
def test_invalid_routing_documents_are_rejected(doc):
    with pytest.raises(ValidationError):
        ModelRouting.model_validate(doc)


@pytest.fixture
async def manager(ranking_registry):
    root, _ = ranking_registry
    backend = OnnxRuntimeBackend()
    m = ModelManager(Registry(root), backend, unload_grace_s=0)
    await m.apply_routing(ModelRouting(default="latest"))
    yield m
    await m.close()
    await backend.close()


async def test_watcher_applies_new_routing_and_keeps_old_on_bad_files(manager, tmp_path, caplog):
    path = tmp_path / "routing.json"
    watcher = RoutingWatcher(path, manager.apply_routing)
    assert manager.routing == ModelRouting(default="v1")  # "latest" resolved to the LATEST version
    assert manager.backend.loaded() == [("ranker", "v1")]

    path.write_text(json.dumps({"default": "v1", "canary": "v2", "canary_weight": 50}))
    assert await watcher.check() is True
    assert manager.backend.loaded() == [("ranker", "v1"), ("ranker", "v2")]
    assert {manager.resolve("", "", i).version for i in IDS[:200]} == {"v1", "v2"}
    assert await watcher.check() is False  # unchanged content is not re-applied

    good = manager.routing
    caplog.set_level(logging.ERROR, logger="cascade.ranking.routing")
    for bad in ["{not json", '{"default": "v1", "canary_weight": 10}', '{"default": "v7"}', "[]"]:
        caplog.clear()
        path.write_text(bad)
        assert await watcher.check() is False
        assert manager.routing == good
        assert any("rejected" in r.getMessage() for r in caplog.records), bad
    path.unlink()
    assert await watcher.check() is False
    assert manager.routing == good

    path.write_text(json.dumps({"default": "v2"}))
    assert await watcher.check() is True
    assert {manager.resolve("", "", i).version for i in IDS[:200]} == {"v2"}
    await manager.wait_unloads()
    assert manager.backend.loaded() == [("ranker", "v2")]  # v1 dropped out of routing: unloaded
    with pytest.raises(NotFoundError, match="'v1' is not loaded"):
        manager.resolve("", "v1", "x")


async def test_pinned_versions_survive_routing_changes(manager):
    manager.pinned.add((await manager.ensure_loaded("v2")).version)
    await manager.apply_routing(ModelRouting(default="v2"))
    await manager.apply_routing(ModelRouting(default="v1"))
    await manager.wait_unloads()
    assert manager.backend.loaded() == [("ranker", "v1"), ("ranker", "v2")]
    assert manager.resolve("ranker", "v2", "x").version == "v2"


async def test_a_ranker_that_disagrees_with_its_manifest_is_never_routed(tmp_path, caplog):
    registry_fixture.build_registry(tmp_path, "v1", n_users=4, n_items=20)
    broken = registry_fixture.build_registry(tmp_path, "v2", n_users=4, n_items=20, set_latest=False)
    registry_fixture.TinyRanker.random(5).to_onnx(broken.root / "registry" / "v2" / "ranker.onnx")
    backend = OnnxRuntimeBackend()
    manager = ModelManager(Registry(tmp_path), backend, unload_grace_s=0)
    await manager.apply_routing(ModelRouting(default="v1"))
    path = tmp_path / "routing.json"
    path.write_text('{"default": "v2"}')
    caplog.set_level(logging.ERROR, logger="cascade.ranking.routing")
    assert await RoutingWatcher(path, manager.apply_routing).check() is False
    assert manager.routing == ModelRouting(default="v1")
    assert backend.loaded() == [("ranker", "v1")]
    assert any("does not accept its manifest's features" in r.getMessage() for r in caplog.records)
