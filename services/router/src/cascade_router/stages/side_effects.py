"""Side effects: exposure logging and shadow ranking. Neither can delay or change a response.

Both first await ``params.RESPONDED`` — a future the servicer resolves with the built
RecommendResponse — so they run only after the answer exists, and read it instead of recomputing it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
from cascade.ranking.v1 import ranking_pb2, ranking_pb2_grpc
from cascade_core.errors import CascadeError
from cascade_core.stages import CandidateSet, Query, SideEffect
from cascade_platform.context import deadline_var

from cascade_router import metrics, params
from cascade_router.experiments import Assignment, Shadow, bucket
from cascade_router.exposures import ExposureLogger, exposure_event
from cascade_router.model import ServingModel
from cascade_router.stages import columns as col
from cascade_router.stages.downstream import Downstream

log = logging.getLogger("cascade.router.side_effects")
# A side effect gives up waiting for the response after this long (the request failed in a way that
# never resolved the future: a bug; never reached in normal operation).
RESPONSE_WAIT_S = 60.0


async def responded(query: Query) -> Any:
    """The RecommendResponse of ``query`` once built, or None when the request failed."""
    fut = query.params.get(params.RESPONDED)
    if fut is None:
        return None
    try:
        return await asyncio.wait_for(asyncio.shield(fut), RESPONSE_WAIT_S)
    except (asyncio.TimeoutError, asyncio.CancelledError):
        return None


class ExposureLogging(SideEffect):
    """Builds the exposure event of the response and hands it to the bounded queue (never blocks)."""

    name: ClassVar[str] = "exposure_log"
    inputs: ClassVar[tuple[str, ...]] = (col.RANK, col.SOURCE)

    def __init__(self, exposures: ExposureLogger) -> None:
        self.exposures = exposures

    async def apply(self, query: Query, candidates: CandidateSet) -> None:
        resp = await responded(query)
        if resp is None:
            return
        a: Assignment | None = query.params.get(params.ASSIGNMENT)
        teams = candidates.columns.get(col.TEAM)
        self.exposures.offer(exposure_event(
            request_id=resp.request_id,
            user_id=query.user_id,
            experiment=a.experiment if a else "",
            variant=resp.variant,
            kind=a.kind if a else "none",
            forced=a.forced if a else False,
            traffic=a.traffic if a else None,
            model_version=resp.model_version,
            degraded=resp.degraded,
            items=[it.item_id for it in resp.items],
            sources=[it.source for it in resp.items],
            teams=list(teams) if teams is not None else None,
            arms=query.params.get(params.ARM_VERSIONS) if teams is not None else None,
        ))


# -- shadow ranking --------------------------------------------------------------------------------
def _rankdata(x: np.ndarray) -> np.ndarray:
    """Average ranks (1-based), ties share their mean rank."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    sx = x[order]
    ranks = np.empty(len(x), dtype=np.float64)
    boundaries = np.flatnonzero(np.diff(sx)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [len(x)]))
    for s, e in zip(starts.tolist(), ends.tolist()):
        ranks[order[s:e]] = (s + e + 1) / 2.0
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho (Pearson correlation of average ranks); 1.0 for fewer than 2 rows or constants."""
    if len(a) < 2:
        return 1.0
    ra, rb = _rankdata(a), _rankdata(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = float(np.sqrt((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / denom) if denom > 0 else 1.0


def kendall_tau_b(a: np.ndarray, b: np.ndarray, max_rows: int = 500) -> float:
    """Kendall's tau-b over all pairs (O(n²) vectorised; the first ``max_rows`` rows by ``a`` when
    longer). 1.0 for fewer than 2 rows or when either side is constant."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if len(a) > max_rows:
        keep = np.argsort(-a, kind="stable")[:max_rows]
        a, b = a[keep], b[keep]
    n = len(a)
    if n < 2:
        return 1.0
    iu = np.triu_indices(n, k=1)
    da = np.sign(a[:, None] - a[None, :])[iu]
    db = np.sign(b[:, None] - b[None, :])[iu]
    s = float((da * db).sum())
    n0 = len(da)
    ta, tb = float(np.count_nonzero(da == 0)), float(np.count_nonzero(db == 0))
    denom = np.sqrt((n0 - ta) * (n0 - tb))
    return s / denom if denom > 0 else 1.0


def overlap_at_k(a: np.ndarray, b: np.ndarray, k: int = 10) -> float:
    """|top-k by a ∩ top-k by b| / min(k, n)."""
    n = len(a)
    if n == 0:
        return 1.0
    k = min(k, n)
    ta = set(np.argsort(-np.asarray(a, np.float64), kind="stable")[:k].tolist())
    tb = set(np.argsort(-np.asarray(b, np.float64), kind="stable")[:k].tolist())
    return len(ta & tb) / k


class ShadowRanking(SideEffect):
    """Scores the served request's candidates with the shadow ranker and records list agreement.

    Reads the active :class:`~cascade_router.experiments.Shadow` config on every request (hot reload);
    samples requests by ``bucket("shadow", request_id)``; skips when ``max_in_flight`` calls are
    already running; its Rank call has its own deadline (``timeout_s``), detached from the request's.
    Failures are counted, never raised: the response was sent already and is never touched.
    """

    name: ClassVar[str] = "shadow_ranking"
    inputs: ClassVar[tuple[str, ...]] = (col.FEATURES,)

    def __init__(self, model: ServingModel, target: str, config: Callable[[], Shadow | None]) -> None:
        self.model = model
        self.config = config
        self.downstream = Downstream(
            target=target,
            target_name="ranking_shadow",
            stub_factory=ranking_pb2_grpc.RankingServiceStub,
            method="Rank",
            timeout_s=1.0,
        )
        self.in_flight = 0
        self._names: list[str] = []
        self._model_name = ""

    async def initialize(self) -> None:
        self.model.load()
        self._names = self.model.feature_names
        self._model_name = self.model.manifest.ranker.name
        await self.downstream.open()

    async def close(self) -> None:
        await self.downstream.close()

    async def apply(self, query: Query, candidates: CandidateSet) -> None:
        cfg = self.config()
        if cfg is None:
            return
        if await responded(query) is None:
            return
        version = cfg.ranker_version
        if params.QUALITY_FACTOR in query.params:  # load shedding: no extra ranking work
            metrics.SHADOW_REQUESTS.labels(version, "skipped_shed").inc()
            return
        if cfg.sample_percent < 100 and bucket("shadow", query.request_id) >= cfg.sample_percent * 100:
            metrics.SHADOW_REQUESTS.labels(version, "skipped_sample").inc()
            return
        scored: CandidateSet | None = query.params.get(params.SCORED_CANDIDATES)
        primary = query.params.get(params.PRIMARY_SCORES)
        if scored is None or primary is None or len(scored) == 0 or len(primary) != len(scored):
            metrics.SHADOW_REQUESTS.labels(version, "no_primary").inc()
            return
        if self.in_flight >= cfg.max_in_flight:
            metrics.SHADOW_REQUESTS.labels(version, "skipped_busy").inc()
            return
        self.in_flight += 1
        deadline_var.set(None)  # this task's own context: the request's deadline no longer applies
        try:
            matrix = np.ascontiguousarray(scored.column(col.FEATURES), dtype="<f4")
            req = ranking_pb2.RankRequest(
                model_name=self._model_name, model_version=version, feature_names=self._names,
                rows=matrix.shape[0], cols=matrix.shape[1], matrix=matrix.tobytes(),
                request_id=query.request_id,
            )
            t0 = time.perf_counter()
            try:
                resp = await self.downstream.call(req, stage=self.name, timeout_s=cfg.timeout_s)
            except CascadeError:
                metrics.SHADOW_REQUESTS.labels(version, "failed").inc()
                return
            metrics.SHADOW_SECONDS.labels(version).observe(time.perf_counter() - t0)
        finally:
            self.in_flight -= 1
        shadow = np.asarray(resp.scores, dtype=np.float32)
        if len(shadow) != len(primary) or not np.isfinite(shadow).all():
            metrics.SHADOW_REQUESTS.labels(version, "failed").inc()
            return
        metrics.SHADOW_OVERLAP.labels(version).observe(overlap_at_k(primary, shadow, 10))
        metrics.SHADOW_KENDALL.labels(version).observe(kendall_tau_b(primary, shadow))
        metrics.SHADOW_SPEARMAN.labels(version).observe(spearman(primary, shadow))
        metrics.SHADOW_REQUESTS.labels(version, "scored").inc()
