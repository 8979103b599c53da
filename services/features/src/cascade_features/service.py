"""``cascade.features.v1.FeatureService``: one call returns the packed (user x candidates) matrix.

The servicer validates the request, then runs the :class:`OnlineFeatureHydrator` stage (fast reader
over the Feast online store + :meth:`FeatureLayout.assemble`). Feature names and defaults come from
the manifest of the served registry version. A store outage surfaces as UNAVAILABLE so the router
can fall back to its own defaults.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import grpc
import numpy as np

from cascade.features.v1 import features_pb2, features_pb2_grpc
from cascade_core.errors import InvalidArgumentError, UnavailableError
from cascade_core.registry import Registry
from cascade_features.definitions import FEATURE_SERVICES
from cascade_features.hydrator import FeatureDefaults, OnlineFeatureHydrator
from cascade_features.settings import FeaturesSettings
from cascade_features.stores import make_reader
from cascade_platform import metrics
from cascade_platform.server import ServiceApp

log = logging.getLogger("cascade.features")
SERVICE_NAME = features_pb2.DESCRIPTOR.services_by_name["FeatureService"].full_name


@dataclass(frozen=True, slots=True)
class ValidRequest:
    user_id: str
    item_ids: list[str]
    retrieval_scores: np.ndarray | None
    feature_service: str


def validate(req: features_pb2.GetFeaturesRequest, *, max_items: int, default_service: str) -> ValidRequest:
    """Check a request; every problem names the field to fix."""
    if not req.user_id:
        raise InvalidArgumentError("user_id", "must be a non-empty user id")
    n = len(req.item_ids)
    if n > max_items:
        raise InvalidArgumentError("item_ids", f"{n} ids given, at most {max_items} per request")
    item_ids = list(req.item_ids)
    if "" in item_ids:  # one C-level scan; the index only on failure
        raise InvalidArgumentError("item_ids", f"item_ids[{item_ids.index('')}] is empty")
    ns = len(req.retrieval_scores)
    if ns not in (0, n):
        raise InvalidArgumentError(
            "retrieval_scores", f"has {ns} values: give none or one per item_id ({n})"
        )
    scores = None
    if ns:
        scores = np.fromiter(req.retrieval_scores, dtype=np.float32, count=ns)
        if not np.isfinite(scores).all():
            raise InvalidArgumentError("retrieval_scores", "must be finite numbers")
    fs = req.feature_service or default_service
    if fs != default_service:
        raise InvalidArgumentError(
            "feature_service", f"{fs!r} is not served here (this server serves {default_service!r})"
        )
    return ValidRequest(req.user_id, item_ids, scores, fs)


class FeatureServicer(features_pb2_grpc.FeatureServiceServicer):
    def __init__(self, hydrator: OnlineFeatureHydrator, settings: FeaturesSettings) -> None:
        self.hydrator = hydrator
        self.settings = settings
        self._names = list(hydrator.defaults.layout.names)
        self._missing = metrics.FALLBACKS.labels("features", "missing_item_rows")
        self._user_missing = metrics.FALLBACKS.labels("features", "missing_user_row")

    async def GetFeatures(self, request, context):  # noqa: N802 (gRPC method name)
        v = validate(request, max_items=self.settings.max_items, default_service=self.settings.feature_service)
        a = await self.hydrator.assemble(v.user_id, v.item_ids, v.retrieval_scores)
        if a.missing_items:
            self._missing.inc(a.missing_items)
        if a.user_missing:
            self._user_missing.inc()
        rows, cols = a.matrix.shape
        return features_pb2.GetFeaturesResponse(
            feature_names=self._names, rows=rows, cols=cols,
            matrix=np.ascontiguousarray(a.matrix, dtype="<f4").tobytes(),
            missing_items=a.missing_items, user_missing=a.user_missing, feature_service=v.feature_service,
        )


class FeaturesApp(ServiceApp):
    name = "features"
    service_names = (SERVICE_NAME,)

    def __init__(self, settings: FeaturesSettings) -> None:
        super().__init__(settings)
        self.settings: FeaturesSettings = settings
        self.hydrator: OnlineFeatureHydrator | None = None
        self._servicer: FeatureServicer | None = None

    async def start(self) -> None:
        s = self.settings
        if s.feature_service not in FEATURE_SERVICES:
            raise SystemExit(
                f"CASCADE_FEATURE_SERVICE={s.feature_service!r}: expected one of {sorted(FEATURE_SERVICES)}"
            )
        reg = Registry(s.artifacts_dir)
        manifest = reg.manifest(s.model_version)
        defaults = FeatureDefaults.from_ranker(manifest.ranker)
        reader = make_reader(s.online_store, s.feast_project, defaults.layout.user_dim, defaults.layout.item_dim,
                             realtime=defaults.layout.realtime)
        hydrator = OnlineFeatureHydrator(reader, defaults)
        await hydrator.initialize()
        self.hydrator = hydrator
        self._servicer = FeatureServicer(hydrator, s)
        metrics.MODEL_INFO.labels("features", s.feature_service, manifest.version_id).set(1)
        log.info("features ready: version %s, %d features (real-time: %s), store %s",
                 manifest.version_id, defaults.layout.dim, defaults.layout.realtime, reader.describe())

    def register(self, server: grpc.aio.Server) -> None:
        features_pb2_grpc.add_FeatureServiceServicer_to_server(_Lazy(self), server)

    async def stop(self) -> None:
        if self.hydrator is not None:
            await self.hydrator.close()


class _Lazy(features_pb2_grpc.FeatureServiceServicer):
    """Registered before ``start()`` (the platform registers first); delegates once started."""

    def __init__(self, app: FeaturesApp) -> None:
        self.app = app

    async def GetFeatures(self, request, context):  # noqa: N802
        if self.app._servicer is None:
            raise UnavailableError("feature service is starting: not serving yet")
        return await self.app._servicer.GetFeatures(request, context)
