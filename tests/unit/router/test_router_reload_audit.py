"""Audit trail of experiment-config changes: the router's hot reload (applied, rejected, unreadable,
start-up) appends one record per outcome to the shared audit log and logs it with ``event: audit``;
plus the shared writer itself (:mod:`cascade_platform.audit`)."""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from cascade_platform.audit import AuditLog, AuditRecord, record_action
from cascade_platform.logs import JsonFormatter
from cascade_router.app import RouterApp
from cascade_router.experiments import ExperimentConfigError
from cascade_router.reload import ExperimentsWatcher
from cascade_router.settings import RouterSettings

A = "experiments:\n  - name: e\n    variants: [{name: a, traffic: 100}]\n"
B = "experiments:\n  - name: e\n    variants: [{name: b, traffic: 100}]\n"
B_PLUS_F = B + "  - name: f\n    traffic: 0\n    variants: [{name: x, traffic: 100}]\n"
BAD = B.replace("traffic: 100", "traffic: 90")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _watcher(cfg: Path, log: Path) -> ExperimentsWatcher:
    return ExperimentsWatcher(cfg, lambda c, d: None, audit_log=AuditLog(log), actor="router@test")


def test_every_reload_outcome_is_audited(tmp_path: Path, caplog) -> None:
    cfg, log = tmp_path / "exp.yaml", tmp_path / "audit" / "audit.log"
    cfg.write_text(A)
    w = _watcher(cfg, log)
    with caplog.at_level(logging.INFO, logger="cascade.audit"):
        w.load()
        assert w.check() is False  # unchanged: nothing to audit
        cfg.write_text(B)
        assert w.check() is True
        cfg.write_text(BAD)
        assert w.check() is False
        assert w.check() is False  # the same rejected content: audited once
        cfg.write_text(B_PLUS_F)
        assert w.check() is True
        cfg.unlink()
        assert w.check() is False
        assert w.check() is False  # the same read error: audited once
    records = AuditLog(log).records()
    assert [r["action"] for r in records] == [
        "experiments-loaded",
        "experiments-applied",
        "experiments-rejected",
        "experiments-applied",
        "experiments-rejected",
    ]
    loaded, applied, rejected, applied2, gone = records
    for r in records:
        assert r["actor"] == "router@test" and r["ts"].endswith("Z")
        assert r["target"] == f"file:{cfg}" and r["details"]["file"] == str(cfg)
        assert "model" not in r and "version" not in r
    # sha256 of the active (before) and the new (after) content, chained
    assert loaded["before"] == {"sha256": None} and loaded["after"] == {"sha256": _sha(A)}
    assert loaded["details"]["experiments"]["added"] == ["e"]
    assert applied["before"] == {"sha256": _sha(A)} and applied["after"] == {"sha256": _sha(B)}
    assert applied["details"]["experiments"] == {
        "added": [], "removed": [], "changed": ["e"], "other_sections_changed": []
    }
    assert rejected["before"] == {"sha256": _sha(B)} and rejected["after"] == {"sha256": _sha(BAD)}
    assert "traffic must sum to 100, got 90" in rejected["details"]["reason"]
    assert "keeping the active config" in rejected["summary"]
    assert applied2["before"] == {"sha256": _sha(B)} and applied2["after"] == {"sha256": _sha(B_PLUS_F)}
    assert applied2["details"]["experiments"]["added"] == ["f"]
    assert applied2["details"]["experiments"]["changed"] == []
    assert gone["after"] == {"sha256": None} and "cannot read experiment file" in gone["details"]["reason"]
    # the same records as structured log lines (event: audit, the record under "audit")
    lines = [json.loads(JsonFormatter("router").format(r)) for r in caplog.records if r.name == "cascade.audit"]
    assert [ln["event"] for ln in lines] == ["audit"] * 5
    assert [ln["audit"] for ln in lines] == records


def test_start_up_failure_is_audited_and_still_raises(tmp_path: Path) -> None:
    cfg, log = tmp_path / "exp.yaml", tmp_path / "audit.log"
    cfg.write_text(BAD)
    with pytest.raises(ExperimentConfigError):
        _watcher(cfg, log).load()
    [r] = AuditLog(log).records()
    assert r["action"] == "experiments-rejected" and "traffic must sum to 100" in r["details"]["reason"]


def test_unwritable_audit_file_never_stops_a_reload(tmp_path: Path, caplog) -> None:
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(A)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")  # the audit "directory" is a file: every append fails with OSError
    applied = []
    w = ExperimentsWatcher(cfg, lambda c, d: applied.append(d), audit_log=AuditLog(blocker / "audit.log"))
    with caplog.at_level(logging.INFO, logger="cascade.audit"):
        w.load()
        cfg.write_text(B)
        assert w.check() is True
    assert len(applied) == 1
    failed = [r for r in caplog.records if getattr(r, "event", None) == "audit_write_failed"]
    assert len(failed) == 2 and "experiments-applied" in failed[-1].getMessage()
    # the audit line itself was still logged
    assert [r.audit["action"] for r in caplog.records if getattr(r, "event", None) == "audit"] == [
        "experiments-loaded", "experiments-applied"
    ]


def test_router_app_wires_the_audit_log(tmp_path: Path, registry, closed_target: str) -> None:
    cfg, log = tmp_path / "exp.yaml", tmp_path / "router-audit.log"
    cfg.write_text(A)
    settings = RouterSettings(artifacts_dir=registry.root, retrieval_target=closed_target,
                              features_target=closed_target, ranking_target=closed_target,
                              experiments_file=cfg, audit_log=log)
    app = RouterApp(settings)
    app.load_experiments()
    cfg.write_text(B)
    assert app.watcher is not None and app.watcher.check() is True
    assert [r["action"] for r in AuditLog(log).records()] == ["experiments-loaded", "experiments-applied"]


def test_record_without_file_is_only_logged(caplog) -> None:
    rec = AuditRecord(actor="a", action="experiments-applied", target="file:/x", summary="s")
    with caplog.at_level(logging.INFO, logger="cascade.audit"):
        assert record_action(rec, None) is True
    [r] = [r for r in caplog.records if r.name == "cascade.audit"]
    assert r.event == "audit" and r.audit == rec.to_dict()


def test_concurrent_appends_never_interleave(tmp_path: Path) -> None:
    """Writers in several threads and another process at once: every line is one whole JSON record."""
    path = tmp_path / "audit.log"
    log = AuditLog(path)
    big = "x" * 20_000  # far bigger than one atomic write (PIPE_BUF): only the flock keeps lines whole
    n_threads, per_writer = 4, 25
    child = subprocess.Popen([sys.executable, "-c", (
        "import sys\n"
        "from cascade_platform.audit import AuditLog, AuditRecord\n"
        "log = AuditLog(sys.argv[1])\n"
        f"for i in range({per_writer}):\n"
        f"    log.append(AuditRecord(actor='proc', action='promote-full', target='file:/r', summary='x' * {len(big)},\n"
        "                           model='ranker', version=f'v{i}'))\n"
    ), str(path)])

    def write(tag: str) -> None:
        for i in range(per_writer):
            log.append(AuditRecord(actor=tag, action="promote-full", target="file:/r", summary=big,
                                   model="ranker", version=f"v{i}"))

    threads = [threading.Thread(target=write, args=(f"t{i}",)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert child.wait(120) == 0
    records = log.records()  # json.loads of every line: a torn or interleaved line raises here
    assert len(records) == (n_threads + 1) * per_writer
    assert all(r["summary"] == big and r["model"] == "ranker" for r in records)
    assert sum(r["actor"] == "proc" for r in records) == per_writer
