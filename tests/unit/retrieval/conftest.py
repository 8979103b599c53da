"""Retrieval test fixtures: a tiny seeded registry (real hnswlib index) and its loaded artifacts."""

from __future__ import annotations

import importlib.util
import pathlib
import sys
from types import ModuleType

import pytest

from cascade_core.registry import Registry
from cascade_retrieval.artifacts import VersionArtifacts


def load_registry_fixture() -> ModuleType:
    """Import ``tests/integration/retrieval_ranking/registry_fixture.py`` once, by path."""
    name = "cascade_registry_fixture"
    if name not in sys.modules:
        tests = pathlib.Path(__file__).resolve().parents[2]
        path = tests / "integration" / "retrieval_ranking" / "registry_fixture.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def registry_fixture() -> ModuleType:
    return load_registry_fixture()


@pytest.fixture(scope="session")
def retrieval_registry(tmp_path_factory, registry_fixture):
    """``(root, {version: FixtureVersion})``: v1 (LATEST) and v2 (other seed)."""
    root = tmp_path_factory.mktemp("retrieval-artifacts")
    v1 = registry_fixture.build_registry(root, "v1", seed=0)
    v2 = registry_fixture.build_registry(root, "v2", seed=1, set_latest=False)
    return root, {"v1": v1, "v2": v2}


@pytest.fixture
def fx(retrieval_registry):
    """The v1 fixture contents (embeddings, consumed CSR, popularity) to compute expectations."""
    return retrieval_registry[1]["v1"]


@pytest.fixture
async def artifacts(retrieval_registry) -> VersionArtifacts:
    root, _ = retrieval_registry
    arts = VersionArtifacts(Registry(root), "v1")
    await arts.load()
    return arts
