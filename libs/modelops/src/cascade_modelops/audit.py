"""The audit log of model operations: :mod:`cascade_platform.audit` (one implementation for every
admin action), re-exported here for the modelops CLI and its callers.

Default location ``$CASCADE_DATA_DIR/audit.log`` (``./data/audit.log``); one ``flock``-ed JSON line
per applied action (``actor``, ``action``, ``model``, ``version``, ``target``, ``summary``,
``before``/``after`` routing, ``details``).
"""

from __future__ import annotations

from cascade_platform.audit import AuditLog, AuditRecord, default_actor, default_audit_path, now_iso

__all__ = ["AuditLog", "AuditRecord", "default_actor", "default_audit_path", "now_iso"]
