"""Zero-error ranker rollout: the four services as real processes, Recommend load from a background
thread, and the real CLI (``cascade models promote/rollback`` subprocesses) rewriting the ranking
service's routing file: v1 -> canary v2 at 50 % -> v2 full -> rollback to v1, 0 failed requests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rollout_stack import LoadLoop, Stack, make_stack, tail_run

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CASCADE = str(Path(sys.executable).with_name("cascade"))
STEADY = 20  # consecutive responses from one version that prove a switch is complete


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Stack:
    s = make_stack(tmp_path_factory.mktemp("rollout"))
    try:
        s.start()
        yield s
    finally:
        codes = s.stop()
    assert all(c == 0 for c in codes.values()), f"services did not exit cleanly on SIGTERM: {codes}"


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **stack.env, "CASCADE_ACTOR": "rollout-test", "CASCADE_MLFLOW_TRACKING_URI": ""}
    r = subprocess.run([CASCADE, "models", *args, "--routing-file", str(stack.routing_file)],
                       env=env, capture_output=True, text=True, timeout=120)
    print(f"$ cascade models {' '.join(args)} -> {r.returncode}\n{r.stdout}{r.stderr}")
    return r


def test_canary_full_and_rollback_under_load_have_zero_failures(stack: Stack):
    load = LoadLoop(stack.router_target, rate=25.0, max_requests=4000).start()
    try:
        load.wait_until(f"{STEADY} v1 responses", lambda rs: tail_run(rs, 0, "v1", STEADY))

        # 1. canary: v2 takes 50 % of ranking traffic next to v1
        canary_start = load.mark()  # marks are taken before each CLI call: the service may switch before it exits
        r = cli(stack, "promote", "ranker", "v2", "--canary", "50")
        assert r.returncode == 0, r.stderr
        assert json.loads(stack.routing_file.read_text()) == {"default": "v1", "canary": "v2", "canary_weight": 50}
        load.wait_until("both v1 and v2 answering under the canary",
                        lambda rs: {"v1", "v2"} <= {x.model_version for x in rs[canary_start:]})

        # 2. full: v2 is the default, v1 is unloaded after the grace period
        full_start = load.mark()
        r = cli(stack, "promote", "ranker", "v2", "--full")
        assert r.returncode == 0, r.stderr
        results = load.wait_until(f"{STEADY} consecutive v2 responses",
                                  lambda rs: tail_run(rs, full_start, "v2", STEADY))
        v2_steady = len(results) - STEADY

        # 3. rollback: v1 (reloaded first) serves everything again
        rollback_start = load.mark()
        r = cli(stack, "rollback", "ranker")
        assert r.returncode == 0, r.stderr
        assert json.loads(stack.routing_file.read_text()) == {"default": "v1", "canary": None, "canary_weight": 0}
        results = load.wait_until(f"{STEADY} consecutive v1 responses after rollback",
                                  lambda rs: tail_run(rs, rollback_start, "v1", STEADY))
    finally:
        load.stop()

    failures = [r for r in results if not r.ok]
    versions = [r.model_version for r in results]
    print(f"{len(results)} requests: v1={versions.count('v1')} v2={versions.count('v2')} failures={len(failures)}")
    assert failures == [], failures[:5]
    assert set(versions[:canary_start]) == {"v1"}  # before the canary: v1 only
    assert {"v1", "v2"} <= set(versions[canary_start:full_start])  # canary: both
    assert set(versions[v2_steady:rollback_start]) == {"v2"}  # once v2 took over, no v1 until rollback
    assert set(versions[-STEADY:]) == {"v1"}  # rolled back

    audit = [json.loads(line) for line in (Path(stack.env["CASCADE_DATA_DIR"]) / "audit.log").read_text().splitlines()]
    assert [(a["action"], a["version"], a["actor"]) for a in audit] == [
        ("promote-canary", "v2", "rollout-test"), ("promote-full", "v2", "rollout-test"),
        ("rollback", "v1", "rollout-test")]
    assert audit[1]["before"] == {"default": "v1", "canary": "v2", "canary_weight": 50}
    assert audit[1]["after"] == {"default": "v2", "canary": None, "canary_weight": 0}


def test_cli_refusals_leave_routing_untouched(stack: Stack):
    before = stack.routing_file.read_text()
    cases = [
        (("promote", "ranker", "v9", "--canary", "10"), "model version 'v9' not found"),
        (("promote", "ranker", "v2", "--canary", "100"), "canary weight must be 1-99"),
        (("promote", "ranker", "v2", "--canary", "0"), "canary weight must be 1-99"),
        (("abort", "ranker"), "no canary to abort"),
    ]
    current = json.loads(before)["default"]
    cases.append((("promote", "ranker", current, "--full"), f"{current} is already the default"))
    for args, message in cases:
        r = cli(stack, *args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert message in r.stderr, (args, r.stderr)
    assert stack.routing_file.read_text() == before
