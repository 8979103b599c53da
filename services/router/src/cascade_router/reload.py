"""Hot reload of the experiment file without a restart.

The router polls the file's content every ``poll_s`` (default 1 s). Content, not mtime, decides: a
Kubernetes ConfigMap volume swaps a ``..data`` symlink atomically, and editors may keep the mtime.
A changed file is parsed and validated in full before anything switches; an invalid one is rejected
with one error log line naming the file and the field, counted in
``cascade_experiments_reloads_total{outcome="rejected"}``, and the previous config stays active. A
rejected content is not re-logged every second, only when it changes again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

from cascade_router import metrics
from cascade_router.experiments import ExperimentConfigError, ExperimentsConfig, parse_experiments_text

log = logging.getLogger("cascade.router.experiments")


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


class ExperimentsWatcher:
    """Loads ``path`` once (``load()``, start-up: errors raise) then polls it (``run()``)."""

    def __init__(
        self, path: Path, apply: Callable[[ExperimentsConfig, str], None], poll_s: float = 1.0
    ) -> None:
        self.path = Path(path)
        self.apply = apply
        self.poll_s = poll_s
        self.active_digest: str | None = None
        self._rejected_digest: str | None = None
        self._read_error: str | None = None

    def load(self) -> tuple[ExperimentsConfig, str]:
        """Read and validate at start-up; raises :class:`ExperimentConfigError`."""
        data = self._read_bytes()
        config = parse_experiments_text(data.decode("utf-8", "replace"), str(self.path))
        self.active_digest = _digest(data)
        return config, self.active_digest

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
            return False
        self.apply(config, digest)
        self.active_digest, self._rejected_digest = digest, None
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
