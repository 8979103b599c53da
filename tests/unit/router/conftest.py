"""Fixtures for the router unit tests: a tiny seeded registry and a closed (refusing) port."""

from __future__ import annotations

from pathlib import Path

import pytest
from cascade_core.registry import Registry
from cascade_platform.procs import free_port
from router_fixture_registry import build_registry


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return build_registry(tmp_path / "artifacts")


@pytest.fixture
def registry_without_popular(tmp_path: Path) -> Registry:
    return build_registry(tmp_path / "artifacts-nopop", with_popular=False)


@pytest.fixture
def closed_target() -> str:
    """A loopback port nobody listens on: connecting is refused, a real outage."""
    return f"127.0.0.1:{free_port()}"
