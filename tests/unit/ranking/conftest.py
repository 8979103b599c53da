"""Ranking test fixtures: a tiny two-version registry (seeded, real ONNX rankers)."""

from __future__ import annotations

import pytest
from backend_contract import load_registry_fixture

registry_fixture = load_registry_fixture()


@pytest.fixture(scope="session")
def ranking_registry(tmp_path_factory):
    """``(root, {version: FixtureVersion})``: v1 (LATEST) and v2 share data but not ranker weights."""
    root = tmp_path_factory.mktemp("ranking-artifacts")
    v1 = registry_fixture.build_registry(root, "v1", n_users=8, n_items=40, ranker_seed=1)
    v2 = registry_fixture.build_registry(root, "v2", n_users=8, n_items=40, ranker_seed=2, set_latest=False)
    return root, {"v1": v1, "v2": v2}
