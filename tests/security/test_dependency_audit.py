"""Dependency vulnerability check in CI: ``scripts/dep_audit.py`` (``make audit``) over constraints.txt.

Fails on any known vulnerability. When the full audit cannot run (api.osv.dev unreachable: this
sandbox reaches package registries only) the test is *skipped* with the reason and what the partial
PyPI check covered -- an audit that did not happen is never reported as a pass. A second test proves
the checker finds a known-vulnerable pin, so a green result is not an artefact of a broken check.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.security

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "dep_audit.py"
EXIT_CLEAN, EXIT_VULNERABLE, EXIT_INCOMPLETE = 0, 1, 2


def _audit(*args: str) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600,
                          cwd=ROOT)
    return proc.returncode, proc.stdout + proc.stderr


def test_pinned_dependencies_have_no_known_vulnerabilities() -> None:
    code, report = _audit()
    print(report)
    assert code != EXIT_VULNERABLE, f"known vulnerabilities in pinned dependencies:\n{report}"
    if code == EXIT_INCOMPLETE:
        pytest.skip("dependency audit incomplete, NOT passed: " + " | ".join(
            ln.strip() for ln in report.splitlines()
            if ln.startswith(("vulnerability", "PyPI advisories", "  not covered"))
        )[:1500])
    assert code == EXIT_CLEAN, report


def test_the_audit_detects_a_known_vulnerable_pin(tmp_path: Path) -> None:
    """pycrypto 2.6.1 (its last release) carries PYSEC-2017-94 / CVE-2013-7459."""
    req = tmp_path / "requirements.txt"
    req.write_text("pycrypto==2.6.1\n")
    code, report = _audit("-r", str(req))
    if code == EXIT_INCOMPLETE and "unreachable" in report and "PyPI advisories" not in report:
        pytest.skip(f"no vulnerability data reachable: {report.strip()[:500]}")
    assert code == EXIT_VULNERABLE, report
    assert "PYSEC-2017-94" in report or "CVE-2013-7459" in report, report
