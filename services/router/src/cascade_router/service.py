"""RecommendationService/Recommend: validate, assign the variant, run the pipeline, answer.

``model_version`` in the response is the ranker version that produced the scores. When ranking fell
back it is ``<version>+retrieval-order`` (``<version>`` = the variant's ranker version, or the router's
registry version when the variant uses the default), and the scores are the retrieval scores clamped
non-increasing in retrieval order. Interleaved lists carry ``interleave(<version A>,<version B>)``;
lists served from the batch cache carry the batch's version. ``degraded`` is true whenever any
fallback served, and when load shedding shrank the request (``params.QUALITY_FACTOR``).

After the response is built the servicer resolves ``params.RESPONDED`` with it: the side effects
(exposure log, shadow ranking) wait for that, so they never run ahead of or alter the answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable

import grpc
from cascade.router.v1 import router_pb2, router_pb2_grpc
from cascade_core.errors import UnavailableError
from cascade_core.stages import Pipeline, PipelineResult, Query
from cascade_platform import metrics as platform_metrics
from cascade_platform.context import deadline_var, request_id_var
from cascade_platform.shedding import LoadShedder, quality_var

from cascade_router import metrics, params
from cascade_router.experiments import Assigner, Assignment
from cascade_router.model import ServingModel
from cascade_router.stages import columns as col
from cascade_router.validation import to_query

log = logging.getLogger("cascade.router")
RETRIEVAL_ORDER_SUFFIX = "+retrieval-order"
Responder = Callable[[Query, PipelineResult], "router_pb2.RecommendResponse | None"]


def apply_assignment(query: Query, a: Assignment) -> None:
    """Write the assignment into the per-request params the stages read."""
    query.params[params.ASSIGNMENT] = a
    query.params[params.VARIANT] = a.variant.name
    query.params[params.RANKER_VERSION] = a.variant.ranker_version
    if a.variant.num_candidates is not None:
        query.params[params.NUM_CANDIDATES] = a.variant.num_candidates
    if a.arms is not None:
        query.params[params.INTERLEAVE_ARMS] = a.arms


class RecommendationServicer(router_pb2_grpc.RecommendationServiceServicer):
    shedder: LoadShedder | None = None  # set by RouterApp.start() when CASCADE_SHEDDING__* is configured
    num_candidates: int = 200  # the router's CASCADE_NUM_CANDIDATES (set by RouterApp.start())

    def __init__(
        self,
        pipeline: Pipeline,
        model: ServingModel,
        request_budget_s: float,
        cache_pipeline: Pipeline | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.cache_pipeline = cache_pipeline
        self.model = model
        self.request_budget_s = request_budget_s
        self.assigner: Assigner | None = None  # set by RouterApp.start(), swapped by hot reload
        self._fallback_names = {s.name for s in pipeline.fallback_sources}
        self._source_names = {s.name for s in (*pipeline.sources, *pipeline.fallback_sources)}
        self._scorer_name = pipeline.scorers[-1].name if pipeline.scorers else ""

    def _deadline(self) -> float:
        own = time.monotonic() + self.request_budget_s
        caller = deadline_var.get()
        return own if caller is None else min(own, caller)

    async def Recommend(self, request: router_pb2.RecommendRequest, context: grpc.aio.ServicerContext):
        t0 = time.perf_counter()
        assigner = self.assigner
        if assigner is None:
            raise UnavailableError("router is starting: experiment config not loaded yet")
        deadline = self._deadline()
        query = to_query(request, deadline=deadline, generated_request_id=request_id_var.get())
        assignment = assigner.assign(query.user_id, query.context)
        apply_assignment(query, assignment)
        quality = quality_var.get()
        if quality < 1.0 and self.shedder is not None:
            self._shrink(query, quality)
        metrics.ASSIGNMENTS.labels(
            assignment.experiment, assignment.variant.name, "true" if assignment.forced else "false"
        ).inc()
        tok_dl = deadline_var.set(deadline)
        tok_rid = request_id_var.set(query.request_id)
        try:
            resp = None
            if self.cache_pipeline is not None and self._cacheable(assignment):
                # A copy: the cache run's side effects keep their own (None on a miss) response future.
                cached = dataclasses.replace(query, params=dict(query.params))
                resp = await self._run(self.cache_pipeline, cached, self._respond_cached)
            if resp is None:
                resp = await self._run(self.pipeline, query, self._respond)
        finally:
            deadline_var.reset(tok_dl)
            request_id_var.reset(tok_rid)
        metrics.RECOMMEND_SECONDS.labels(resp.variant).observe(time.perf_counter() - t0)
        return resp

    def _shrink(self, query: Query, quality: float) -> None:
        """Load shedding: fewer retrieval candidates, one ranker (no interleave), no shadow call."""
        assert self.shedder is not None
        base = int(query.params.get(params.NUM_CANDIDATES) or self.num_candidates)
        query.params[params.NUM_CANDIDATES] = self.shedder.shrink(base, quality)
        query.params.pop(params.INTERLEAVE_ARMS, None)
        query.params[params.QUALITY_FACTOR] = quality

    @staticmethod
    def _cacheable(a: Assignment) -> bool:
        """Only requests on the default ranker and default retrieval may be answered from batch lists."""
        v = a.variant
        return a.arms is None and v.ranker_version in ("", "latest") and v.num_candidates is None

    async def _run(self, pipeline: Pipeline, query: Query, respond: Responder):
        responded: asyncio.Future = asyncio.get_running_loop().create_future()
        query.params[params.RESPONDED] = responded
        resp = None
        try:
            result = await pipeline.run(query)
            resp = respond(query, result)
            return resp
        finally:
            if not responded.done():
                responded.set_result(resp)

    def _observe(self, query: Query, result: PipelineResult) -> None:
        for stage, seconds in result.stage_seconds.items():
            platform_metrics.STAGE_SECONDS.labels("router", stage).observe(seconds)
        for stage in result.degraded_stages:
            platform_metrics.FALLBACKS.labels("router", stage).inc()
        scored = query.params.get(params.SCORED_CANDIDATES)
        if scored is not None:
            platform_metrics.CANDIDATES.labels("router", "retrieved").observe(
                len(scored) + sum(result.removed.values())
            )
            platform_metrics.CANDIDATES.labels("router", "ranked").observe(len(scored))
        platform_metrics.CANDIDATES.labels("router", "final").observe(len(result.candidates))

    def _respond_cached(self, query: Query, result: PipelineResult) -> router_pb2.RecommendResponse | None:
        cands = result.candidates
        if len(cands) < query.num_items:  # a miss (or too short after exclusions): run the pipeline
            return None
        self._observe(query, result)
        variant = str(query.params[params.VARIANT])
        metrics.RECOMMEND_TOTAL.labels(variant).inc()
        return self._build(query, cands, str(query.params.get(params.BATCH_MODEL_VERSION, "")), False)

    def _respond(self, query: Query, result: PipelineResult) -> router_pb2.RecommendResponse:
        variant = str(query.params[params.VARIANT])
        ran = set(result.stage_seconds)
        fallback_served = bool(ran & self._fallback_names)
        cands = result.candidates
        if not len(cands) and (ran & self._source_names) <= set(result.degraded_stages):
            raise UnavailableError(
                "no candidates: every candidate source failed "
                f"({', '.join(sorted(ran & self._source_names))}); check the retrieval service and the "
                "registry's popular.json"
            )
        self._observe(query, result)
        degraded = result.degraded or fallback_served or params.QUALITY_FACTOR in query.params
        metrics.RECOMMEND_TOTAL.labels(variant).inc()
        if degraded:
            metrics.RECOMMEND_DEGRADED_TOTAL.labels(variant).inc()
        assignment: Assignment = query.params[params.ASSIGNMENT]
        if assignment.arms is not None:
            interleaved = col.TEAM in cands.columns
            metrics.INTERLEAVED.labels(
                assignment.experiment, "interleaved" if interleaved else "fallback"
            ).inc()
        if self._scorer_name in result.scores:
            model_version = str(query.params[params.SCORED_MODEL_VERSION])
        else:
            model_version = (
                str(query.params[params.RANKER_VERSION]) or self.model.version_id
            ) + RETRIEVAL_ORDER_SUFFIX
        return self._build(query, cands, model_version, degraded)

    @staticmethod
    def _build(query: Query, cands, model_version: str, degraded: bool) -> router_pb2.RecommendResponse:
        scores = cands.columns.get(col.SCORE, ())
        sources = cands.columns.get(col.SOURCE, ())
        ranks = cands.columns.get(col.RANK, ())
        items = [
            router_pb2.RecommendedItem(
                item_id=iid, score=float(scores[i]), rank=int(ranks[i]), source=sources[i]
            )
            for i, iid in enumerate(cands.item_ids)
        ]
        return router_pb2.RecommendResponse(
            request_id=query.request_id,
            items=items,
            model_version=model_version,
            variant=str(query.params[params.VARIANT]),
            degraded=degraded,
        )
