"""Hot reload of the experiment file without a restart.

The router polls the file's content every ``poll_s`` (default 1 s). Content, not mtime, decides: a
Kubernetes ConfigMap volume swaps a ``..data`` symlink atomically, and editors may keep the mtime.
A changed file is parsed and validated in full before anything switches; an invalid one is rejected
with one error log line naming the file and the field, counted in
``cascade_experiments_reloads_total{outcome="rejected"}``, and the previous config stays active. A
rejected content is not re-logged every second, only when it changes again.

Every outcome is an admin action and is audited (:mod:`cascade_platform.audit`): the start-up load
(``experiments-loaded``), each applied change (``experiments-applied``) and each rejected one
(``experiments-rejected``, also an unreadable or deleted file), with the file, the sha256 of the
active and of the new content, the experiment names added/removed/changed and the reason. The record
is logged (``event: audit``) and appended to ``CASCADE_AUDIT_LOG`` when that is set; an audit file
that cannot be written is logged and never stops a reload.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

from cascade_platform.audit import AuditLog, AuditRecord, default_actor, record_action, sha256_hex

from cascade_router import metrics
from cascade_router.experiments import ExperimentConfigError, ExperimentsConfig, parse_experiments_text

log = logging.getLogger("cascade.router.experiments")


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def experiment_changes(old: ExperimentsConfig | None, new: ExperimentsConfig) -> dict[str, list[str]]:
    """Experiment names added, removed and changed (any field: variants, traffic, salt...) by ``new``."""
    before = {e.name: e.model_dump(mode="json") for e in old.experiments} if old is not None else {}
    after = {e.name: e.model_dump(mode="json") for e in new.experiments}
    out = {
        "added": sorted(set(after) - set(before)),
        "removed": sorted(set(before) - set(after)),
        "changed": sorted(n for n in set(before) & set(after) if before[n] != after[n]),
    }
    if old is not None:
        rest_old = old.model_dump(mode="json", exclude={"experiments"})
        rest_new = new.model_dump(mode="json", exclude={"experiments"})
        out["other_sections_changed"] = sorted(k for k in rest_new if rest_old.get(k) != rest_new[k])
    return out


class ExperimentsWatcher:
    """Loads ``path`` once (``load()``, start-up: errors raise) then polls it (``run()``)."""

    def __init__(
        self,
        path: Path,
        apply: Callable[[ExperimentsConfig, str], None],
        poll_s: float = 1.0,
        audit_log: AuditLog | None = None,
        actor: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.apply = apply
        self.poll_s = poll_s
        self.audit_log = audit_log
        self.actor = actor or default_actor()
        self.active_digest: str | None = None
        self.active_sha256: str | None = None
        self.active_config: ExperimentsConfig | None = None
        self._rejected_digest: str | None = None
        self._read_error: str | None = None

    def load(self) -> tuple[ExperimentsConfig, str]:
        """Read and validate at start-up; raises :class:`ExperimentConfigError`."""
        try:
            data = self._read_bytes()
            config = parse_experiments_text(data.decode("utf-8", "replace"), str(self.path))
        except ExperimentConfigError as e:
            self._audit("experiments-rejected", None, None, f"start-up load failed: {e}", reason=str(e))
            raise
        self.active_digest = _digest(data)
        sha = sha256_hex(data)
        self._audit("experiments-loaded", sha, experiment_changes(None, config),
                    f"loaded at start-up: {config.summary()}")
        self.active_sha256, self.active_config = sha, config
        return config, self.active_digest

    def _audit(self, action: str, new_sha256: str | None, changes: dict | None, summary: str,
               reason: str | None = None) -> None:
        details: dict = {"file": str(self.path)}
        if changes is not None:
            details["experiments"] = changes
        if reason is not None:
            details["reason"] = reason
        record = AuditRecord(
            actor=self.actor, action=action, target=f"file:{self.path}", summary=summary,
            before={"sha256": self.active_sha256}, after={"sha256": new_sha256}, details=details,
        )
        record_action(record, self.audit_log)

    def _read_bytes(self) -> bytes:
        try:
            return self.path.read_bytes()
        except OSError as e:
            raise ExperimentConfigError(
                f"{self.path}: cannot read experiment file: {e.strerror or e}"
            ) from None

    def check(self) -> bool:
        """One poll: returns True when a new config was applied."""
        try:
            data = self._read_bytes()
        except ExperimentConfigError as e:
            if self._read_error != str(e):  # log each distinct problem once
                self._read_error = str(e)
                metrics.EXPERIMENT_RELOADS.labels("rejected").inc()
                log.error("%s; keeping the active config (%s)", e, self.active_digest,
                          extra={"event": "experiments_rejected"})
                self._audit("experiments-rejected", None, None,
                            f"file unreadable, keeping the active config {self.active_digest}", reason=str(e))
            return False
        self._read_error = None
        digest = _digest(data)
        if digest in (self.active_digest, self._rejected_digest):
            return False
        try:
            config = parse_experiments_text(data.decode("utf-8", "replace"), str(self.path))
        except ExperimentConfigError as e:
            self._rejected_digest = digest
            metrics.EXPERIMENT_RELOADS.labels("rejected").inc()
            log.error("experiment config rejected, keeping the active config (%s): %s", self.active_digest, e,
                      extra={"event": "experiments_rejected"})
            self._audit("experiments-rejected", sha256_hex(data), None,
                        f"rejected {digest}, keeping the active config {self.active_digest}", reason=str(e))
            return False
        self.apply(config, digest)
        changes = experiment_changes(self.active_config, config)
        self._audit("experiments-applied", sha256_hex(data), changes,
                    f"applied {digest} (was {self.active_digest}): {config.summary()}")
        self.active_digest, self._rejected_digest = digest, None
        self.active_sha256, self.active_config = sha256_hex(data), config
        metrics.EXPERIMENT_RELOADS.labels("applied").inc()
        log.info("experiment config %s applied: %s", digest, config.summary(),
                 extra={"event": "experiments_applied"})
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                self.check()
            except Exception:  # a bug in apply(): keep serving and polling
                log.exception("experiment reload failed", extra={"event": "experiments_reload_error"})
