"""gRPC ``RankingService``: validates the packed matrix against the model's manifest and scores it."""

from __future__ import annotations

import logging
import math
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


_F32LE = np.dtype("<f4")
_FAST_FINITE_MAX_BYTES = 8192 * 4  # 8192 values: OpenBLAS threads dot products only above 10,000


def decode_matrix(request: ranking_pb2.RankRequest, model: ServedModel) -> np.ndarray:
    """Check ``request`` against ``model`` and return the float32 [rows, cols] matrix (zero-copy view)."""
    rows, cols = request.rows, request.cols
    if not 0 <= rows <= MAX_ROWS:
        raise InvalidArgumentError("rows", f"must be 0-{MAX_ROWS}, got {rows}")
    if cols != model.n_features:
        raise InvalidArgumentError(
            "cols", f"ranker {model.name}:{model.version} takes {model.n_features} features, got {cols}"
        )
    sent = request.feature_names
    # one comparison (a repeated field equals a list, never a tuple); the loop only names the mismatch
    if sent and sent != list(model.feature_names):
        _raise_feature_names(list(sent), model)
    matrix = request.matrix
    expected = rows * cols * 4
    if len(matrix) != expected:
        raise InvalidArgumentError(
            "matrix", f"has {len(matrix)} bytes, expected rows*cols*4 = {rows}*{cols}*4 = {expected}"
        )
    flat = np.frombuffer(matrix, dtype=_F32LE)
    x = flat.reshape(rows, cols)
    # Fast accept: every square is >= 0 or NaN, so the sum of squares is finite only when every value
    # is (NaN and inf propagate, nothing can cancel them). Anything else, including a finite matrix
    # whose sum overflows (|values| ~1e19; numpy then warns "overflow encountered in dot"), takes the
    # exact check, which names the first bad value. Capped in size: BLAS may thread large dot products.
    if expected > _FAST_FINITE_MAX_BYTES or not math.isfinite(flat.dot(flat)):
        _check_finite(x, model)
    return x


def _raise_feature_names(names: list[str], model: ServedModel) -> None:
    for i, (want, got) in enumerate(zip(model.feature_names, names)):
        if want != got:
            raise InvalidArgumentError("feature_names", f"position {i}: expected {want!r}, got {got!r}")
    if len(names) != model.n_features:
        raise InvalidArgumentError(
            "feature_names", f"{len(names)} names sent, ranker {model.version} has {model.n_features}"
        )


def _check_finite(x: np.ndarray, model: ServedModel) -> None:
    finite = np.isfinite(x)
    if not finite.all():
        r, c = np.argwhere(~finite)[0]
        raise InvalidArgumentError(
            "matrix", f"non-finite value at row {r}, column {c} ({model.feature_names[c]})"
        )


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SCORES_TAG = _varint(ranking_pb2.RankResponse.DESCRIPTOR.fields_by_name["scores"].number << 3 | 2)


class ResponseBuilder:
    """Builds ``RankResponse`` from float32 scores by parsing its wire form: the packed ``scores`` field
    is the array's little-endian bytes (one copy, no Python float per score), the model fields are
    serialized once per model. Equal, field for field, to ``RankResponse(scores=scores.tolist(), ...)``.
    """

    def __init__(self) -> None:
        self._models: dict[tuple[str, str], bytes] = {}
        self._prefixes: dict[int, bytes] = {}

    def build(self, model_name: str, model_version: str, scores: np.ndarray) -> ranking_pb2.RankResponse:
        tail = self._models.get((model_name, model_version))
        if tail is None:
            if len(self._models) >= 64:  # versions come and go over a process's life
                self._models.clear()
            head = ranking_pb2.RankResponse(model_name=model_name, model_version=model_version)
            tail = self._models[(model_name, model_version)] = head.SerializeToString()
        if not len(scores):
            return ranking_pb2.RankResponse.FromString(tail)
        data = scores.astype(_F32LE, copy=False).tobytes()
        prefix = self._prefixes.get(len(data))
        if prefix is None:
            prefix = self._prefixes[len(data)] = _SCORES_TAG + _varint(len(data))
        return ranking_pb2.RankResponse.FromString(b"".join((prefix, data, tail)))


class RankingServicer(ranking_pb2_grpc.RankingServiceServicer):
    def __init__(self, app: "RankingApp") -> None:
        self.app = app
        self._score_seconds = metrics.STAGE_SECONDS.labels("ranking", "score")
        self._rows = metrics.CANDIDATES.labels("ranking", "rows")
        self._responses = ResponseBuilder()

    async def Rank(self, request, context: grpc.aio.ServicerContext):
        manager = self.app.manager
        model = manager.resolve(request.model_name, request.model_version,
                                request.request_id or request_id_var.get())
        x = decode_matrix(request, model)
        n = len(x)
        self._rows.observe(n)
        if not n:
            scores = np.empty(0, np.float32)
        else:
            t0 = time.perf_counter()
            scores = await manager.backend.score(model.name, model.version, x)
            self._score_seconds.observe(time.perf_counter() - t0)
        if scores.shape != (n,):
            raise RuntimeError(f"backend returned {scores.shape} scores for {n} rows")
        return self._responses.build(model.name, model.version, scores)


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
