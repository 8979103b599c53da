"""gRPC ``RankingService``: validates the packed matrix against the model's manifest and scores it."""

from __future__ import annotations

import logging
import time

import grpc
import numpy as np

from cascade.ranking.v1 import ranking_pb2, ranking_pb2_grpc
from cascade_core.errors import InvalidArgumentError
from cascade_core.registry import Registry
from cascade_platform import metrics
from cascade_platform.context import request_id_var
from cascade_platform.server import ServiceApp
from cascade_ranking.backends import make_backend
from cascade_ranking.models import ModelManager, ServedModel
from cascade_ranking.routing import ModelRouting, RoutingWatcher
from cascade_ranking.settings import MAX_ROWS, RankingSettings

log = logging.getLogger("cascade.ranking")
SERVICE_NAME = ranking_pb2.DESCRIPTOR.services_by_name["RankingService"].full_name


def decode_matrix(request: ranking_pb2.RankRequest, model: ServedModel) -> np.ndarray:
    """Check ``request`` against ``model`` and return the float32 [rows, cols] matrix (zero-copy view)."""
    rows, cols = request.rows, request.cols
    if not 0 <= rows <= MAX_ROWS:
        raise InvalidArgumentError("rows", f"must be 0-{MAX_ROWS}, got {rows}")
    if cols != model.n_features:
        raise InvalidArgumentError(
            "cols", f"ranker {model.name}:{model.version} takes {model.n_features} features, got {cols}"
        )
    if request.feature_names:
        names = list(request.feature_names)
        for i, (want, got) in enumerate(zip(model.feature_names, names)):
            if want != got:
                raise InvalidArgumentError("feature_names", f"position {i}: expected {want!r}, got {got!r}")
        if len(names) != model.n_features:
            raise InvalidArgumentError(
                "feature_names", f"{len(names)} names sent, ranker {model.version} has {model.n_features}"
            )
    expected = rows * cols * 4
    if len(request.matrix) != expected:
        raise InvalidArgumentError(
            "matrix", f"has {len(request.matrix)} bytes, expected rows*cols*4 = {rows}*{cols}*4 = {expected}"
        )
    x = np.frombuffer(request.matrix, dtype="<f4").reshape(rows, cols)
    finite = np.isfinite(x)
    if not finite.all():
        r, c = np.argwhere(~finite)[0]
        raise InvalidArgumentError(
            "matrix", f"non-finite value at row {r}, column {c} ({model.feature_names[c]})"
        )
    return x


class RankingServicer(ranking_pb2_grpc.RankingServiceServicer):
    def __init__(self, app: "RankingApp") -> None:
        self.app = app
        self._score_seconds = metrics.STAGE_SECONDS.labels("ranking", "score")
        self._rows = metrics.CANDIDATES.labels("ranking", "rows")

    async def Rank(self, request, context: grpc.aio.ServicerContext):
        manager = self.app.manager
        model = manager.resolve(request.model_name, request.model_version,
                                request.request_id or request_id_var.get())
        x = decode_matrix(request, model)
        self._rows.observe(len(x))
        if not len(x):
            scores = np.empty(0, np.float32)
        else:
            t0 = time.perf_counter()
            scores = await manager.backend.score(model.name, model.version, x)
            self._score_seconds.observe(time.perf_counter() - t0)
        if scores.shape != (len(x),):
            raise RuntimeError(f"backend returned {scores.shape} scores for {len(x)} rows")
        return ranking_pb2.RankResponse(
            scores=scores.tolist(), model_name=model.name, model_version=model.version
        )


class RankingApp(ServiceApp):
    name = "ranking"
    service_names = (SERVICE_NAME,)

    def __init__(self, settings: RankingSettings) -> None:
        super().__init__(settings)
        self.settings: RankingSettings = settings
        self.backend = make_backend(settings.backend)
        self.manager = ModelManager(Registry(settings.artifacts_dir), self.backend, settings.unload_grace_s)
        self.watcher: RoutingWatcher | None = None
        if settings.model_routing_file is not None:
            self.watcher = RoutingWatcher(settings.model_routing_file, self.manager.apply_routing,
                                          settings.routing_poll_s)

    async def start(self) -> None:
        await self.backend.initialize()
        for version in self.settings.preload_versions:
            self.manager.pinned.add((await self.manager.ensure_loaded(version)).version)
        applied = await self.watcher.check() if self.watcher else False
        if not applied:
            await self.manager.apply_routing(ModelRouting(default=self.settings.model_version))
        if self.watcher:
            self.watcher.start()
        routing = self.manager.routing
        assert routing is not None
        log.info("serving rankers %s with routing %s on %s", self.manager.versions(),
                 routing.model_dump_json(), self.backend.kind, extra={"event": "routing_applied"})

    def register(self, server: grpc.aio.Server) -> None:
        ranking_pb2_grpc.add_RankingServiceServicer_to_server(RankingServicer(self), server)

    async def stop(self) -> None:
        if self.watcher:
            await self.watcher.stop()
        await self.manager.close()
        await self.backend.close()
