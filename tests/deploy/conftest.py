"""Fixtures for the deployment checks (issue 5): the check library
(scripts/deploy_checks/deploycheck.py), cached chart renders and throw-away
copies of the repo's deploy files for the planted-error tests."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts" / "deploy_checks"))

import deploycheck  # noqa: E402

# What the planted-error tests copy: everything the checks read, nothing else.
DEPLOY_PATHS = [
    "charts",
    "k8s",
    "terraform",
    "skaffold.yaml",
    "tests/deploy/promtool",
    "services",
    "libs",
    "constraints.txt",
]
_IGNORE = shutil.ignore_patterns(".terraform*", "__pycache__", "*.egg-info", "src", "tests")


def pytest_collection_modifyitems(items):
    """Every test in this folder is a deploy check (selected with `-m deploy`)."""
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.deploy)


@pytest.fixture(scope="session")
def dc():
    """The deploy-check library."""
    return deploycheck


@pytest.fixture(scope="session")
def render():
    """render(value_set) -> list of objects the chart renders (cached per session)."""
    return lambda value_set="default": list(deploycheck.render_cached(value_set))


@pytest.fixture()
def tree(tmp_path) -> Path:
    """A temp copy of the deploy files (Dockerfiles, charts with the lib symlink, k8s,
    terraform, skaffold.yaml, promtool tests) to plant errors in."""
    for rel in DEPLOY_PATHS:
        src, dst = REPO / rel, tmp_path / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, symlinks=True, ignore=_IGNORE)
        elif src.exists():
            shutil.copy2(src, dst)
    return tmp_path


@pytest.fixture(scope="session")
def repo() -> Path:
    """Root of the real checkout."""
    return REPO


@pytest.fixture(scope="session")
def run_check():
    """run_check(name, root) -> problems; skips (never passes) when the check cannot run here."""

    def _run(name: str, root: Path) -> list[str]:
        try:
            return deploycheck.CHECKS[name](root)
        except deploycheck.CheckSkipped as e:
            pytest.skip(str(e))

    return _run
