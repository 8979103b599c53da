"""Ranker versions held by the backend and the routing that picks one per request.

Switching traffic is safe by construction: :meth:`ModelManager.apply_routing` loads every version the
new routing names before it swaps the routing in, and a version that drops out of routing is unloaded
only after ``unload_grace_s`` (requests that already picked it finish first).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import numpy as np

from cascade_core.errors import InvalidArgumentError, NotFoundError
from cascade_core.registry import Registry
from cascade_platform import metrics
from cascade_ranking.backends.base import RankerBackend
from cascade_ranking.routing import ModelRouting

log = logging.getLogger("cascade.ranking.models")


@dataclass(frozen=True, slots=True)
class ServedModel:
    name: str
    version: str
    feature_names: tuple[str, ...]

    @property
    def n_features(self) -> int:
        return len(self.feature_names)


class ModelManager:
    def __init__(self, registry: Registry, backend: RankerBackend, unload_grace_s: float = 10.0) -> None:
        self.registry = registry
        self.backend = backend
        self.unload_grace_s = unload_grace_s
        self.routing: ModelRouting | None = None
        self.pinned: set[str] = set()  # preloaded versions, never unloaded
        self._models: dict[str, ServedModel] = {}
        self._unloads: set[asyncio.Task] = set()

    def versions(self) -> list[str]:
        return sorted(self._models)

    async def ensure_loaded(self, version: str) -> ServedModel:
        """Load a registry version into the backend (no-op when loaded). Raises NotFoundError if unknown."""
        version = self.registry.resolve(version)
        served = self._models.get(version)
        if served is not None:
            return served
        manifest = self.registry.manifest(version)
        spec = manifest.ranker
        path = self.registry.path(version) / manifest.files.ranker
        await self.backend.load(spec.name, version, path)
        await self._probe(spec.name, version, len(spec.feature_names))
        served = ServedModel(spec.name, version, tuple(spec.feature_names))
        self._models[version] = served
        metrics.MODEL_INFO.labels("ranking", spec.name, version).set(1)
        log.info("loaded ranker %s:%s (%d features) on %s", spec.name, version, served.n_features,
                 self.backend.kind, extra={"event": "model_loaded"})
        return served

    async def _probe(self, name: str, version: str, n_features: int) -> None:
        """Score one zero row: proves the model takes the manifest's feature count before traffic."""
        try:
            out = await self.backend.score(name, version, np.zeros((1, n_features), np.float32))
        except InvalidArgumentError as e:
            await self.backend.unload(name, version)
            msg = f"ranker {name}:{version} does not accept its manifest's features: {e}"
            raise ValueError(msg) from None
        if out.shape != (1,):
            await self.backend.unload(name, version)
            raise ValueError(f"ranker {name}:{version} returned shape {out.shape} for one row, expected (1,)")

    async def apply_routing(self, routing: ModelRouting) -> None:
        """Load what ``routing`` names, then switch traffic to it; schedule unloads of dropped versions."""
        default = (await self.ensure_loaded(routing.default)).version
        canary = (await self.ensure_loaded(routing.canary)).version if routing.canary else None
        resolved = ModelRouting(default=default, canary=canary, canary_weight=routing.canary_weight)
        old = self.routing
        self.routing = resolved
        for version in set(old.versions() if old else ()) - self._in_use():
            task = asyncio.create_task(self._unload_later(version))
            self._unloads.add(task)
            task.add_done_callback(self._unloads.discard)

    def _in_use(self) -> set[str]:
        return self.pinned | set(self.routing.versions() if self.routing else ())

    async def _unload_later(self, version: str) -> None:
        await asyncio.sleep(self.unload_grace_s)
        served = self._models.get(version)
        if served is None or version in self._in_use():
            return
        del self._models[version]
        await self.backend.unload(served.name, version)
        metrics.MODEL_INFO.remove("ranking", served.name, version)
        log.info("unloaded ranker %s:%s", served.name, version, extra={"event": "model_unloaded"})

    def resolve(self, model_name: str, version: str, request_id: str) -> ServedModel:
        """The model for one request: an explicit loaded version, else the routing's choice."""
        if self.routing is None:
            raise RuntimeError("ModelManager.resolve() before any routing was applied")
        if not version or version == "latest":
            version = self.routing.choose(request_id)
        served = self._models.get(version)
        if served is None:
            raise NotFoundError(
                f"model_version {version!r} is not loaded (loaded: {', '.join(self.versions())}); "
                "add it to the routing file or CASCADE_PRELOAD_VERSIONS"
            )
        if model_name and model_name != served.name:
            raise NotFoundError(f"model_name {model_name!r} is not served (serving {served.name!r})")
        return served

    async def wait_unloads(self) -> None:
        """Wait for scheduled unloads to finish (tests, shutdown)."""
        await asyncio.gather(*list(self._unloads), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._unloads):
            task.cancel()
        await asyncio.gather(*self._unloads, return_exceptions=True)
