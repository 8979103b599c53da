"""A reduced chaos run (``python -m cascade_cli.chaos --quick``): kill -9 + restart ranking and the
stream worker under load, then check the summary line: no lost or duplicated event, failures only in
restart windows (the run's exit status), requests actually served."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[3]
SUMMARY = re.compile(
    r"^chaos: requests=(\d+) failed=(\d+) degraded=(\d+) events_produced=(\d+) lost=(\d+) duplicated=(\d+)$"
)


def test_quick_chaos_run(tmp_path):
    artifacts = Path(os.environ.get("CASCADE_ARTIFACTS_DIR", ROOT / "artifacts"))
    if not (artifacts / "registry" / "LATEST").exists():
        pytest.fail(f"no model registered under {artifacts}: run `make artifacts` (make test does it)")
    r = subprocess.run(
        [sys.executable, "-m", "cascade_cli.chaos", "--quick", "--run-dir", str(tmp_path / "run"),
         "--steady", "3", "--rate", "10", "--event-rate", "20"],
        capture_output=True, text=True, timeout=900,
    )
    out = r.stdout.strip().splitlines()
    assert out, r.stderr[-3000:]
    m = SUMMARY.match(out[-1])
    assert m, f"last line is not the summary: {out[-1]!r}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    requests, failed, degraded, produced, lost, duplicated = map(int, m.groups())
    assert r.returncode == 0, f"chaos run failed (exit {r.returncode}):\n{r.stdout[-4000:]}"
    assert requests > 0 and produced > 0
    assert lost == 0 and duplicated == 0
    assert degraded > 0  # ranking was down for a while: those answers were degraded, not failed
