"""Append-only audit log of model operations: one JSON object per line (who, what, when, where).

Default location ``$CASCADE_DATA_DIR/audit.log`` (``./data/audit.log``). Appends take an exclusive
``flock`` so concurrent operators never interleave lines.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import socket
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


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


@dataclass(frozen=True)
class AuditRecord:
    actor: str
    action: str  # promote-canary | promote-full | rollback | abort | sync
    model: str
    version: str
    target: str  # where routing lives: file:/path or configmap:namespace/name
    summary: str
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    ts: str = field(default_factory=now_iso)
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


class AuditLog:
    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else default_audit_path()

    def append(self, record: AuditRecord) -> None:
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
