"""``cascade recommend`` against a real router process, titles from the fixture registry."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from cascade_core.registry import Registry
from cascade_platform.procs import ServiceProcess
from router_fixture_registry import VERSION, popular_ids
from router_procs import closed_target

pytestmark = pytest.mark.integration


def _cascade(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cascade_cli", *args], capture_output=True, text=True, timeout=120
    )


def test_recommend_table_with_titles(router_all_down: ServiceProcess, artifacts: Registry):
    popular = popular_ids(artifacts)
    out = _cascade(
        "recommend",
        "--user",
        "1",
        "--n",
        "3",
        "--target",
        router_all_down.target,
        "--exclude",
        popular[0],
        "--artifacts-dir",
        str(artifacts.root),
        "--timeout",
        "30",
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith(
        f"user 1  variant control  model_version {VERSION}+retrieval-order  degraded yes"
    )
    assert "request_id " in lines[0]
    rows = lines[2:]
    assert len(rows) == 3
    for rank, (row, item) in enumerate(zip(rows, popular[1:4]), start=1):
        assert row.split()[:2] == [str(rank), item]
        assert row.endswith(f"Fixture Movie {item[1:]}")


def test_recommend_json(router_all_down: ServiceProcess, artifacts: Registry):
    out = _cascade(
        "recommend",
        "--user",
        "2",
        "--n",
        "2",
        "--target",
        router_all_down.target,
        "--json",
        "--artifacts-dir",
        str(artifacts.root),
        "--request-id",
        "cli-1",
        "--timeout",
        "30",
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["request_id"] == "cli-1" and doc["degraded"] is True and doc["variant"] == "control"
    assert [i["item_id"] for i in doc["items"]] == popular_ids(artifacts)[:2]
    assert all(i["title"].startswith("Fixture Movie") for i in doc["items"])


def test_recommend_errors(router_all_down: ServiceProcess, artifacts: Registry):
    bad = _cascade(
        "recommend", "--user", "1", "--n", "500", "--target", router_all_down.target, "--timeout", "30"
    )
    assert bad.returncode == 2
    assert "INVALID_ARGUMENT: num_items: must be between 1 and 200" in bad.stderr
    down = _cascade("recommend", "--user", "1", "--target", closed_target(), "--timeout", "5")
    assert down.returncode == 1
    assert "UNAVAILABLE" in down.stderr
    missing = _cascade("recommend", "--n", "3")
    assert missing.returncode == 2 and "--user" in missing.stderr
