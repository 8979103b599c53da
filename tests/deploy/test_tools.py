"""Every deploy check passes on the repository as committed (real tools:
helm, kubernetes-validate, promtool, hadolint, check-jsonschema, Terraform)."""

import deploycheck
import pytest


@pytest.mark.parametrize("name", list(deploycheck.CHECKS))
def test_check_passes(run_check, repo, name):
    problems = run_check(name, repo)
    assert problems == [], "\n".join(problems)
