"""Append-only audit log of admin actions: one JSON object per line (who, what, when, where).

One implementation for every admin action Cascade records: model promotions, rollbacks and aborts
(``cascade_modelops``) and experiment-config changes picked up by the router's hot reload
(``cascade_router.reload``). Each record is

* appended to a JSON-lines file (``$CASCADE_DATA_DIR/audit.log`` by default for the operator CLIs,
  ``CASCADE_AUDIT_LOG`` for the router); appends take an exclusive ``flock`` so concurrent writers
  never interleave lines, and are fsynced;
* emitted as one structured log line on the ``cascade.audit`` logger with ``event: audit`` and the
  record under ``audit`` (:class:`cascade_platform.logs.JsonFormatter`), so a log pipeline sees it
  even where no file is configured or the file cannot be written.

Record fields: ``ts`` (UTC, seconds), ``actor``, ``action``, ``target`` (what was changed:
``file:/path`` or ``configmap:namespace/name``), ``summary``, ``before``/``after`` and ``details``;
model actions add ``model`` and ``version``.
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import json
import logging
import os
import socket
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

AUDIT_EVENT = "audit"
log = logging.getLogger("cascade.audit")


def default_audit_path() -> Path:
    return Path(os.environ.get("CASCADE_DATA_DIR", "data")).resolve() / "audit.log"


def default_actor() -> str:
    """``$CASCADE_ACTOR`` when set (CI jobs, bots), else ``user@host``."""
    actor = os.environ.get("CASCADE_ACTOR", "").strip()
    if actor:
        return actor
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class AuditRecord:
    actor: str
    action: str  # promote-canary | promote-full | rollback | abort | experiments-applied | ...
    target: str  # what was changed: file:/path or configmap:namespace/name
    summary: str
    model: str | None = None  # model actions only
    version: str | None = None  # model actions only
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    ts: str = field(default_factory=now_iso)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("model", "version"):
            if d[k] is None:
                del d[k]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, default=str)


def emit(record: AuditRecord) -> None:
    """The structured log line of ``record`` (``event: audit``)."""
    log.info("audit: %s %s by %s: %s", record.action, record.target, record.actor, record.summary,
             extra={"event": AUDIT_EVENT, "audit": record.to_dict()})


class AuditLog:
    """The JSON-lines audit file at ``path`` (default :func:`default_audit_path`)."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else default_audit_path()

    def append(self, record: AuditRecord) -> None:
        """Log ``record`` (``event: audit``) and append it to the file; file errors raise ``OSError``."""
        emit(record)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = record.to_json() + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def records(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]


def record_action(record: AuditRecord, audit_log: AuditLog | None) -> bool:
    """For services: log ``record`` and append it to ``audit_log`` when one is configured.

    A file that cannot be written never fails the action being audited: the error is logged
    (``event: audit_write_failed``, with the record) and False returned.
    """
    if audit_log is None:
        emit(record)
        return True
    try:
        audit_log.append(record)
        return True
    except OSError as e:
        log.error("audit log %s not written (%s): %s", audit_log.path, e.strerror or e, record.to_json(),
                  extra={"event": "audit_write_failed"})
        return False


__all__ = [
    "AUDIT_EVENT",
    "AuditLog",
    "AuditRecord",
    "default_actor",
    "default_audit_path",
    "emit",
    "now_iso",
    "record_action",
    "sha256_hex",
]
