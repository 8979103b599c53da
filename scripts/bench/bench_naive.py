"""The naive baseline: RecommendationService written the obvious way, one process, same model and data.

Per request, nothing shared across requests and nothing batched across them:

1. retrieval: exact search, ``item_embeddings @ user_embedding`` over the whole catalog (numpy, one
   BLAS thread), consumed and excluded items masked, ``argpartition`` top ``num_candidates``; unknown
   users get the most popular items;
2. features: Feast SDK ``FeatureStore.get_online_features(feature_service, entity_rows=[{user_id,
   item_id} per candidate]).to_dict()`` against the same Redis, defaults for missing rows, then
   :meth:`FeatureLayout.assemble` (the same matrix as the real pipeline);
3. ranking: one ``onnxruntime`` run of the same ranker over the candidate matrix, top ``num_items``.

It runs on the platform server (same interceptor, health and metrics as every service), so only the
pipeline differs from the co-located mode. Settings: ``CASCADE_*`` (see :class:`NaiveSettings`).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import grpc  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from cascade.router.v1 import router_pb2, router_pb2_grpc  # noqa: E402
from cascade_core.features import FeatureLayout  # noqa: E402
from cascade_core.registry import Registry  # noqa: E402
from cascade_features.config import FeastSettings, RedisStoreConfig, feast_repo_config  # noqa: E402
from cascade_features.definitions import (  # noqa: E402
    DEFAULT_FEATURE_SERVICE, ITEM_FEATURE, ITEM_JOIN_KEY, USER_FEATURE, USER_JOIN_KEY,
)
from cascade_platform.server import ServiceApp, main  # noqa: E402
from cascade_platform.settings import ServiceSettings  # noqa: E402
from cascade_router.validation import to_query  # noqa: E402
from pydantic import Field  # noqa: E402


class NaiveSettings(ServiceSettings):
    online_store: RedisStoreConfig = Field(default_factory=RedisStoreConfig)
    feast_project: str = "cascade_bench"
    feast_registry_path: Path = Path("artifacts/bench/feast/registry.db")
    num_candidates: int = Field(100, ge=1)


class NaiveApp(ServiceApp):
    name = "naive"
    service_names = (router_pb2.DESCRIPTOR.services_by_name["RecommendationService"].full_name,)

    def __init__(self, settings: NaiveSettings) -> None:
        super().__init__(settings)
        self.settings: NaiveSettings = settings

    def _load(self) -> None:
        s = self.settings
        reg = Registry(s.artifacts_dir)
        m = reg.manifest(s.model_version)
        d = reg.path(m.version_id)
        self.version = m.version_id
        self.item_ids = pq.read_table(d / m.files.items, columns=["item_id"]).column("item_id").to_pylist()
        self.item_row = {iid: i for i, iid in enumerate(self.item_ids)}
        self.user_row = {u: i for i, u in enumerate(json.loads((d / m.files.user_ids).read_text()))}
        self.item_emb = np.load(d / m.files.item_embeddings)
        self.user_emb = np.load(d / m.files.user_embeddings)
        with np.load(d / m.files.consumed) as z:
            self.indptr, self.indices = z["indptr"], z["indices"]
        self.popular = [e["item_id"] for e in json.loads((d / m.files.popular).read_text())]
        self.layout = FeatureLayout.from_names(m.ranker.feature_names)
        defaults = np.asarray(m.ranker.feature_defaults, np.float32)
        self.user_default = defaults[: self.layout.user_dim]
        self.item_default = defaults[self.layout.user_dim: self.layout.user_dim + self.layout.item_dim]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(d / m.files.ranker), opts, providers=["CPUExecutionProvider"])
        from feast import FeatureStore

        fs = FeastSettings(project=s.feast_project, registry_path=str(s.feast_registry_path),
                           online_store=s.online_store)
        self.store = FeatureStore(config=feast_repo_config(fs))
        self.service = self.store.get_feature_service(DEFAULT_FEATURE_SERVICE)

    async def start(self) -> None:
        await asyncio.to_thread(self._load)

    def register(self, server: grpc.aio.Server) -> None:
        router_pb2_grpc.add_RecommendationServiceServicer_to_server(_Servicer(self), server)

    def recommend(self, req: router_pb2.RecommendRequest) -> router_pb2.RecommendResponse:
        q = to_query(req)
        k = self.settings.num_candidates
        excluded = [self.item_row[i] for i in q.exclude_item_ids if i in self.item_row]
        u = self.user_row.get(q.user_id)
        if u is None:
            cand = [i for i in self.popular if i not in q.exclude_item_ids][:k]
            rscore = np.zeros(len(cand), np.float32)
            source = "popular"
        else:
            scores = self.item_emb @ self.user_emb[u]
            scores[self.indices[self.indptr[u]:self.indptr[u + 1]]] = -np.inf
            scores[excluded] = -np.inf
            top = np.argpartition(-scores, k)[:k]
            top = top[np.argsort(-scores[top])]
            cand = [self.item_ids[i] for i in top]
            rscore = scores[top].astype(np.float32)
            source = "ann"
        rows = [{USER_JOIN_KEY: q.user_id, ITEM_JOIN_KEY: i} for i in cand]
        got = self.store.get_online_features(features=self.service, entity_rows=rows).to_dict()
        uvec = got[USER_FEATURE][0] if got[USER_FEATURE] and got[USER_FEATURE][0] is not None else None
        user_vec = np.asarray(uvec, np.float32) if uvec is not None else self.user_default
        item_mat = np.stack([np.asarray(v, np.float32) if v is not None else self.item_default
                             for v in got[ITEM_FEATURE]]) if cand else np.zeros((0, self.layout.item_dim))
        x = self.layout.assemble(user_vec, item_mat, rscore)
        (out,) = self.session.run(None, {self.session.get_inputs()[0].name: x})
        order = np.argsort(-out.reshape(-1), kind="stable")[: q.num_items]
        return router_pb2.RecommendResponse(
            request_id=q.request_id, model_version=self.version, variant="naive",
            items=[router_pb2.RecommendedItem(item_id=cand[i], score=float(out[i]), rank=r + 1, source=source)
                   for r, i in enumerate(order.tolist())],
        )


class _Servicer(router_pb2_grpc.RecommendationServiceServicer):
    def __init__(self, app: NaiveApp) -> None:
        self.app = app

    async def Recommend(self, request, context):  # noqa: N802
        return self.app.recommend(request)  # blocking on purpose: the naive server does not offload


if __name__ == "__main__":
    main(NaiveApp, NaiveSettings)
