"""tests/security: shared fixtures. The fuzz tests' pieces are named ``fuzz_*`` (helpers in
``fuzz_support.py``); other security tests keep their helpers in their own modules (``sec_procs.py``)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from cascade_stream.broker import TansuBroker
from cascade_platform.procs import ServiceProcess
from fuzz_support import TALLY, TARGET_TOTAL, build_registry, start_router

_FUZZ_PREFIX = "test_fuzz_"
_HERE = Path(__file__).resolve().parent
_fuzz_state: dict = {"items": set(), "passed": set(), "deselected": False}


def _fuzz_file(item) -> str | None:
    path = Path(str(getattr(item, "path", item.fspath))).resolve()
    return path.name if path.parent == _HERE and path.name.startswith(_FUZZ_PREFIX) else None


@pytest.fixture(scope="session")
def fuzz_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    """One real Tansu broker for the fuzz tests (each test uses its own topics)."""
    b = TansuBroker(log_path=tmp_path_factory.mktemp("fuzz-broker") / "tansu.log").start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture(scope="session")
def fuzz_router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """A real router process on the tiny fixture registry, downstreams closed (it serves fallbacks),
    with the demo experiment config (holdout, an A/B experiment, forced users: every assignment path)."""
    tmp = tmp_path_factory.mktemp("fuzz-router")
    reg = build_registry(tmp / "artifacts")
    cfg = tmp / "experiments.yaml"
    shutil.copy(_HERE.parents[1] / "docs" / "examples" / "experiments.yaml", cfg)
    proc = start_router(tmp, reg.root, CASCADE_EXPERIMENTS_FILE=str(cfg))
    try:
        yield proc
    finally:
        proc.stop()


def pytest_deselected(items) -> None:
    if any(_fuzz_file(it) for it in items):
        _fuzz_state["deselected"] = True


def pytest_collection_finish(session) -> None:
    _fuzz_state["items"] = {it.nodeid for it in session.items if _fuzz_file(it)}
    _fuzz_state["files"] = {_fuzz_file(it) for it in session.items if _fuzz_file(it)}


def pytest_runtest_logreport(report) -> None:
    if report.when == "call" and report.passed and report.nodeid in _fuzz_state["items"]:
        _fuzz_state["passed"].add(report.nodeid)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not TALLY:
        return
    total = sum(TALLY.values())
    parts = ", ".join(f"{k} {v}" for k, v in sorted(TALLY.items()))
    terminalreporter.write_line(f"fuzz: {total} inputs ({parts}); target {TARGET_TOTAL} per full run")


def pytest_sessionfinish(session, exitstatus) -> None:
    """A full fuzz run (every test_fuzz_*.py here collected, nothing deselected, all passed) must have
    executed the target number of inputs; a partial run (-k, one file) only reports its tally."""
    on_disk = {p.name for p in _HERE.glob(f"{_FUZZ_PREFIX}*.py")}
    full = (
        _fuzz_state["items"]
        and _fuzz_state.get("files") == on_disk
        and not _fuzz_state["deselected"]
        and _fuzz_state["passed"] == _fuzz_state["items"]
    )
    if full and sum(TALLY.values()) < TARGET_TOTAL:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"FUZZ TARGET MISSED: {sum(TALLY.values())} fuzzed inputs < {TARGET_TOTAL}",
                                red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
