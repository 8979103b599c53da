"""gRPC ``RetrievalService``: validates the request, runs the version's pipeline, records metrics."""

from __future__ import annotations

import logging

import grpc

from cascade.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from cascade_core.errors import InvalidArgumentError, NotFoundError
from cascade_core.registry import Registry
from cascade_core.stages import Pipeline, Query
from cascade_platform import metrics
from cascade_platform.context import deadline_var, request_id_var
from cascade_platform.server import ServiceApp
from cascade_retrieval.artifacts import VersionArtifacts
from cascade_retrieval.pipeline import build_pipeline
from cascade_retrieval.settings import MAX_CANDIDATES, RetrievalSettings

log = logging.getLogger("cascade.retrieval")
SERVICE_NAME = retrieval_pb2.DESCRIPTOR.services_by_name["RetrievalService"].full_name


class _Served:
    """One served version: its artifacts handle, pipeline and pre-bound metric children."""

    def __init__(self, artifacts: VersionArtifacts, pipeline: Pipeline) -> None:
        self.artifacts = artifacts
        self.pipeline = pipeline
        self.stage_seconds = {
            s.name: metrics.STAGE_SECONDS.labels("retrieval", s.name) for s in pipeline.stages()
        }
        self.selected = metrics.CANDIDATES.labels("retrieval", "selected")


def validate(request: retrieval_pb2.RetrieveRequest, max_exclude: int) -> None:
    if not request.user_id:
        raise InvalidArgumentError("user_id", "must not be empty")
    n = request.num_candidates
    if not 1 <= n <= MAX_CANDIDATES:
        raise InvalidArgumentError("num_candidates", f"must be 1-{MAX_CANDIDATES}, got {n}")
    if len(request.exclude_item_ids) > max_exclude:
        raise InvalidArgumentError(
            "exclude_item_ids", f"at most {max_exclude} ids, got {len(request.exclude_item_ids)}"
        )


class RetrievalServicer(retrieval_pb2_grpc.RetrievalServiceServicer):
    def __init__(self, app: "RetrievalApp") -> None:
        self.app = app

    async def Retrieve(self, request, context: grpc.aio.ServicerContext):
        validate(request, self.app.settings.max_exclude_ids)
        served = self.app.served(request.model_version)
        query = Query(
            user_id=request.user_id,
            num_items=request.num_candidates,
            request_id=request.request_id or request_id_var.get(),
            exclude_item_ids=frozenset(request.exclude_item_ids),
            deadline=deadline_var.get(),
        )
        result = await served.pipeline.run(query)
        for stage, seconds in result.stage_seconds.items():
            served.stage_seconds[stage].observe(seconds)
        cands = result.candidates
        served.selected.observe(len(cands))
        data = served.artifacts.data
        return retrieval_pb2.RetrieveResponse(
            item_ids=cands.item_ids,
            scores=cands.column("score").tolist() if len(cands) else [],
            sources=cands.column("source").tolist() if len(cands) else [],
            model_version=data.manifest.version_id,
            cold_start=data.user_row(request.user_id) is None,
        )


class RetrievalApp(ServiceApp):
    name = "retrieval"
    service_names = (SERVICE_NAME,)

    def __init__(self, settings: RetrievalSettings) -> None:
        super().__init__(settings)
        self.settings: RetrievalSettings = settings
        self.registry = Registry(settings.artifacts_dir)
        self.default_version = ""
        self._served: dict[str, _Served] = {}

    async def start(self) -> None:
        self.default_version = self.registry.resolve(self.settings.model_version)
        versions = [self.default_version, *(self.registry.resolve(v) for v in self.settings.preload_versions)]
        for version in dict.fromkeys(versions):
            artifacts = VersionArtifacts(self.registry, version)
            pipeline = build_pipeline(artifacts)
            await pipeline.initialize()
            self._served[version] = _Served(artifacts, pipeline)
            metrics.MODEL_INFO.labels("retrieval", "two_tower", version).set(1)
            d = artifacts.data
            log.info(
                "loaded %s: %d items, %d users, dim %d\n%s", version, d.n_items, len(d.user_index),
                d.manifest.embedding_dim, pipeline.tree(), extra={"event": "model_loaded"},
            )

    def served(self, model_version: str) -> _Served:
        """The pipeline for a request's ``model_version`` (empty / "latest" = the default)."""
        if not model_version or model_version == "latest":
            return self._served[self.default_version]
        served = self._served.get(model_version)
        if served is None:
            raise NotFoundError(
                f"model_version {model_version!r} is not served by retrieval "
                f"(serving: {', '.join(self._served)}; add it to CASCADE_PRELOAD_VERSIONS)"
            )
        return served

    def register(self, server: grpc.aio.Server) -> None:
        retrieval_pb2_grpc.add_RetrievalServiceServicer_to_server(RetrievalServicer(self), server)

    async def stop(self) -> None:
        for served in self._served.values():
            await served.pipeline.close()
