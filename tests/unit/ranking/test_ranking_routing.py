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


async def test_watcher_retries_a_failed_apply_with_backoff_but_never_an_invalid_file(tmp_path, caplog):
    """A routing file naming a version that is not in the registry yet is retried (doubling pauses) until
    the version arrives; a file that does not validate is not retried until its content changes."""
    now = [0.0]
    applied: list[ModelRouting] = []
    available = {"v1"}

    async def apply(routing: ModelRouting) -> None:
        if routing.default not in available:
            raise NotFoundError(f"model_version {routing.default!r} is not in the registry")
        applied.append(routing)

    path = tmp_path / "routing.json"
    watcher = RoutingWatcher(path, apply, retry_s=5.0, max_retry_s=12.0, clock=lambda: now[0])
    caplog.set_level(logging.WARNING, logger="cascade.ranking.routing")

    path.write_text(json.dumps({"default": "v2"}))
    assert await watcher.check() is False  # v2 not there yet
    assert any("retrying in 5s" in r.getMessage() for r in caplog.records)
    now[0] = 4.9
    assert await watcher.check() is False and applied == []  # not due yet
    now[0] = 5.0
    assert await watcher.check() is False  # retried, still missing: next pause 10 s
    now[0] = 14.9
    assert await watcher.check() is False and applied == []
    available.add("v2")
    now[0] = 15.0
    assert await watcher.check() is True
    assert applied == [ModelRouting(default="v2")]
    now[0] = 100.0
    assert await watcher.check() is False and len(applied) == 1  # applied once: no more retries

    # An invalid document is rejected once and not retried, however long we wait.
    path.write_text('{"default": "v1", "canary_weight": 10}')
    caplog.clear()
    assert await watcher.check() is False
    assert sum("rejected" in r.getMessage() for r in caplog.records) == 1
    now[0] = 10_000.0
    assert await watcher.check() is False
    assert sum("rejected" in r.getMessage() for r in caplog.records) == 1

    # The pause is capped, and new content resets it.
    path.write_text(json.dumps({"default": "v9"}))
    for expect in (5.0, 10.0, 12.0, 12.0):
        start = now[0]
        assert await watcher.check() is False
        assert watcher._retry_at == start + expect
        now[0] = watcher._retry_at
    path.write_text(json.dumps({"default": "v8"}))
    assert await watcher.check() is False
    assert watcher._retry_at == now[0] + 5.0
