"""RouterApp: wires settings, the serving model, experiments (hot reloaded), exposures and the pipeline."""

from __future__ import annotations

import asyncio
import logging

import grpc
from cascade.router.v1 import router_pb2, router_pb2_grpc
from cascade_platform import metrics as platform_metrics
from cascade_platform.audit import AuditLog
from cascade_platform.server import ServiceApp
from cascade_platform.auth import client_auth_interceptors
from cascade_platform.interceptors import MethodInterceptor
from cascade_platform.ratelimit import RateLimiter, RateLimitInterceptor
from cascade_platform.shedding import LoadShedder, SheddingInterceptor

from cascade_router import metrics
from cascade_router.batch import open_store
from cascade_router.experiments import Assigner, ExperimentConfigError, ExperimentsConfig, Shadow
from cascade_router.exposures import ExposureLogger
from cascade_router.model import ServingModel
from cascade_router.pipeline import build_cache_pipeline, build_pipeline
from cascade_router.reload import ExperimentsWatcher
from cascade_router.service import RecommendationServicer
from cascade_router.settings import RouterSettings

log = logging.getLogger("cascade.router")


class RouterApp(ServiceApp):
    name = "router"
    internal = False  # the edge: authenticates clients (CASCADE_AUTH__*), not the service token
    service_names = (router_pb2.DESCRIPTOR.services_by_name["RecommendationService"].full_name,)

    def __init__(self, settings: RouterSettings) -> None:
        super().__init__(settings)
        self.settings: RouterSettings = settings
        self.model = ServingModel(settings.artifacts_dir, settings.model_version)
        self.experiments: ExperimentsConfig | None = None
        self.exposures: ExposureLogger | None = None
        if settings.exposures.enabled:
            self.exposures = ExposureLogger(
                settings.exposures.bootstrap_servers,
                settings.exposures.topic,
                queue_size=settings.exposures.queue_size,
                client_kwargs=settings.exposures.client_kwargs(),
            )
        store = None
        if settings.batch_predictions:
            store = open_store(settings.batch_predictions, settings.batch_timeout_s)
        self.pipeline = build_pipeline(
            settings, self.model, exposures=self.exposures, shadow=self.shadow_config, batch_store=store
        )
        cache = (
            build_cache_pipeline(store, self.exposures)
            if store is not None and settings.batch_mode == "cache"
            else None
        )
        self.servicer = RecommendationServicer(self.pipeline, self.model, settings.request_budget_s, cache)
        self.shedder = LoadShedder(settings.shedding, self.name) if settings.shedding.enabled else None
        self.watcher: ExperimentsWatcher | None = None
        self._watch_task: asyncio.Task | None = None

    def shadow_config(self) -> Shadow | None:
        return self.experiments.shadow if self.experiments is not None else None

    def apply_experiments(self, config: ExperimentsConfig, digest: str) -> None:
        """Swap the active config (one attribute each: a request sees the old or the new one, whole)."""
        assigner = Assigner(config)
        self.experiments = config
        self.servicer.assigner = assigner
        metrics.EXPERIMENT_INFO.clear()
        for e in config.experiments:
            for v in e.variants:
                traffic = "" if v.traffic is None else f"{v.traffic:g}"
                metrics.EXPERIMENT_INFO.labels(e.name, e.type, v.name, v.ranker_version, traffic).set(1)
        metrics.EXPERIMENT_CONFIG_INFO.clear()
        metrics.EXPERIMENT_CONFIG_INFO.labels(digest).set(1)

    def load_experiments(self) -> tuple[ExperimentsConfig, str]:
        path = self.settings.experiments_file
        if path is None:
            return ExperimentsConfig.default(), "default"
        audit_log = AuditLog(self.settings.audit_log) if self.settings.audit_log is not None else None
        self.watcher = ExperimentsWatcher(
            path, self.apply_experiments, self.settings.experiments_poll_s, audit_log=audit_log
        )
        try:
            return self.watcher.load()
        except ExperimentConfigError as e:
            raise SystemExit(f"CASCADE_EXPERIMENTS_FILE: {e}") from None

    async def start(self) -> None:
        experiments, digest = self.load_experiments()
        self.servicer.shedder = self.shedder  # here, not in __init__: subclasses replace the servicer
        self.servicer.num_candidates = self.settings.num_candidates
        self.model.load()
        await self.pipeline.initialize()
        if self.servicer.cache_pipeline is not None:
            await self.servicer.cache_pipeline.initialize()
        if self.exposures is not None:
            self.exposures.start()
        platform_metrics.MODEL_INFO.labels("router", "registry", self.model.version_id).set(1)
        self.apply_experiments(experiments, digest)
        if self.watcher is not None:
            self._watch_task = asyncio.create_task(self.watcher.run())
        log.info(
            "router ready: registry %s, experiments %s (%s), exposures %s, batch %s",
            self.model.version_id,
            digest,
            experiments.summary(),
            f"{self.settings.exposures.bootstrap_servers}/{self.settings.exposures.topic}"
            if self.exposures
            else "off",
            f"{self.settings.batch_mode} from {self.settings.batch_predictions}"
            if self.settings.batch_predictions
            else "off",
            extra={"event": "ready"},
        )

    def interceptors(self) -> list[MethodInterceptor]:
        """Client authentication, then the client's rate limit, then load shedding (each off unless
        configured; see docs/security.md)."""
        out = client_auth_interceptors(self.name, self.settings.auth)
        if self.settings.rate_limit.enabled:
            out.append(RateLimitInterceptor(RateLimiter(self.settings.rate_limit)))
        if self.shedder is not None:
            out.append(SheddingInterceptor(self.shedder))
        return out

    def register(self, server: grpc.aio.Server) -> None:
        router_pb2_grpc.add_RecommendationServiceServicer_to_server(self.servicer, server)

    async def stop(self) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()
            await asyncio.gather(self._watch_task, return_exceptions=True)
        await self.pipeline.close()
        if self.servicer.cache_pipeline is not None:
            await self.servicer.cache_pipeline.close()
        if self.exposures is not None:
            await asyncio.to_thread(self.exposures.close)
