"""Physical floors and the services' own stage work, measured in one process on the same inputs.

Run by ``run_bench.py`` as a child process (``python scripts/bench/bench_floors.py --json-out ...``).
For every request of the bench mix it first derives the real per-hop inputs (the retrieval servicer's
candidates, the feature servicer's matrix), then measures, interleaved round by round so machine noise
hits every row alike, CPU-µs (this process, all threads, plus the dedicated redis-server's CPU where
Redis is involved) and wall latency per call of:

==================  ===============================================================================
stage               the service's servicer method called directly (validation, stage code, response
                    building; no transport): ``RetrievalServicer.Retrieve``, ``FeatureServicer.
                    GetFeatures``, ``RankingServicer.Rank``
floor               the bare operation on the same data: ``hnswlib.knn_query`` with the K the retrieval
                    pipeline asks for (0 for cold users, who get no ANN query), the same Lua ``HGET``
                    script on the same keys through a synchronous redis-py client (no decoding),
                    ``onnxruntime`` ``session.run`` on the same matrix (same session options)
feast sdk           ``FeatureStore.get_online_features(...).to_dict()`` for the same user and items
==================  ===============================================================================

It also re-measures ANN recall@100 against exact search at the served ``ef_search``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import numpy as np

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from bench_procstat import cpu_seconds  # noqa: E402


class Meter:
    """Accumulates CPU and wall time of one measured operation across interleaved rounds."""

    def __init__(self, redis_pid: int | None = None) -> None:
        self.redis_pid = redis_pid
        self.cpu = 0.0
        self.redis_cpu = 0.0
        self.walls: list[float] = []

    def summary(self) -> dict[str, float]:
        n = max(1, len(self.walls))
        w = np.asarray(self.walls) * 1e6
        return {
            "calls": len(self.walls),
            "cpu_us": self.cpu / n * 1e6,
            "redis_cpu_us": self.redis_cpu / n * 1e6,
            "total_cpu_us": (self.cpu + self.redis_cpu) / n * 1e6,
            "p50_us": float(np.percentile(w, 50)) if len(w) else float("nan"),
            "mean_us": float(w.mean()) if len(w) else float("nan"),
        }


async def measure(meter: Meter, fn: Callable[[int], Any] | Callable[[int], Awaitable[Any]], idx: list[int],
                  is_async: bool) -> None:
    r0 = cpu_seconds(meter.redis_pid) if meter.redis_pid else 0.0
    c0 = time.process_time()
    for i in idx:
        t0 = time.perf_counter()
        if is_async:
            await fn(i)  # type: ignore[misc]
        else:
            fn(i)
        meter.walls.append(time.perf_counter() - t0)
    meter.cpu += time.process_time() - c0
    if meter.redis_pid:
        meter.redis_cpu += cpu_seconds(meter.redis_pid) - r0


def recall_at_100(data, item_emb: np.ndarray, n_users: int = 200, seed: int = 0) -> float:  # noqa: ANN001
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(data.user_embeddings), size=n_users, replace=False)
    q = data.user_embeddings[rows]
    hits = 0
    for s in range(0, n_users, 20):
        scores = q[s:s + 20] @ item_emb.T
        exact = np.argpartition(-scores, 100, axis=1)[:, :100]
        labels, _ = data.ann.knn_query(q[s:s + 20], k=100, num_threads=1)
        hits += sum(len(np.intersect1d(a, e)) for a, e in zip(labels, exact))
    return hits / (100 * n_users)


async def run(a: argparse.Namespace) -> dict:
    import onnxruntime as ort
    import redis
    from cascade.features.v1 import features_pb2
    from cascade.ranking.v1 import ranking_pb2
    from cascade.retrieval.v1 import retrieval_pb2
    from cascade_core.stages import Query
    from cascade_features.codec import EntityKeyEncoder
    from cascade_features.config import FeastSettings, RedisStoreConfig, feast_repo_config
    from cascade_features.definitions import (
        DEFAULT_FEATURE_SERVICE, ITEM_JOIN_KEY, USER_JOIN_KEY,
    )
    from cascade_features.service import FeaturesApp, FeatureServicer
    from cascade_features.settings import FeaturesSettings
    from cascade_features.stores.redis import _FETCH_LUA  # the exact script the fast reader runs
    from cascade_ranking.service import RankingApp, RankingServicer
    from cascade_ranking.settings import RankingSettings
    from cascade_retrieval.service import RetrievalApp, RetrievalServicer
    from cascade_retrieval.settings import RetrievalSettings
    from cascade_retrieval.stages import fetch_size

    mix = json.loads(Path(a.mix).read_text())
    store_cfg = RedisStoreConfig(port=a.redis_port)
    common = {"artifacts_dir": Path(a.artifacts), "model_version": a.version, "port": 0, "metrics_port": 0}
    retrieval = RetrievalApp(RetrievalSettings(**common))
    features = FeaturesApp(FeaturesSettings(**common, online_store=store_cfg, feast_project=a.project))
    ranking = RankingApp(RankingSettings(**common))
    for app in (retrieval, features, ranking):
        await app.start()
    r_serv, r_rank = RetrievalServicer(retrieval), RankingServicer(ranking)
    assert features.hydrator is not None
    f_serv = FeatureServicer(features.hydrator, features.settings)
    data = retrieval.served("").artifacts.data
    model = ranking.manager.resolve("", "", "bench")

    # -- the real per-hop inputs of every mix request ---------------------------------------------
    r_reqs: list = []
    f_reqs: list = []
    k_reqs: list = []
    ann_k: list[tuple[int, int] | None] = []
    keys: list[list[bytes]] = []
    mats: list[np.ndarray] = []
    enc_u, enc_i = EntityKeyEncoder(USER_JOIN_KEY), EntityKeyEncoder(ITEM_JOIN_KEY)
    sfx = a.project.encode()
    for m in mix:
        rr = retrieval_pb2.RetrieveRequest(user_id=m["user_id"], num_candidates=a.candidates,
                                           exclude_item_ids=sorted(m["exclude_item_ids"]))
        resp = await r_serv.Retrieve(rr, None)
        scores = [s if src == "ann" else 0.0 for s, src in zip(resp.scores, resp.sources)]
        fr = features_pb2.GetFeaturesRequest(user_id=m["user_id"], item_ids=list(resp.item_ids),
                                             retrieval_scores=scores)
        fresp = await f_serv.GetFeatures(fr, None)
        kr = ranking_pb2.RankRequest(model_name=model.name, feature_names=list(fresp.feature_names),
                                     rows=fresp.rows, cols=fresp.cols, matrix=fresp.matrix)
        r_reqs.append(rr)
        f_reqs.append(fr)
        k_reqs.append(kr)
        q = Query(user_id=m["user_id"], num_items=a.candidates, request_id="",
                  exclude_item_ids=frozenset(m["exclude_item_ids"]))
        row = data.user_row(m["user_id"])
        ann_k.append((row, fetch_size(q, data)) if row is not None else None)
        uniq = list(dict.fromkeys(resp.item_ids))
        keys.append([enc_u.encode(m["user_id"]) + sfx, *(k + sfx for k in enc_i.encode_many(uniq))])
        mats.append(np.frombuffer(fresp.matrix, "<f4").reshape(fresp.rows, fresp.cols).copy())

    # -- floors ----------------------------------------------------------------------------------
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    reg_file = Path(a.artifacts) / "registry" / data.manifest.version_id / data.manifest.files.ranker
    sess = ort.InferenceSession(str(reg_file), opts, providers=["CPUExecutionProvider"])
    in_name, out_name = sess.get_inputs()[0].name, sess.get_outputs()[0].name
    rc = redis.Redis(port=a.redis_port)
    script = rc.register_script(_FETCH_LUA)
    # The reader's own ARGV (user field, item field, number of user real-time fields, real-time fields):
    # the floor runs exactly the script call the service makes, minus the client and the decoding.
    fields = list(features.hydrator.reader.script_args)
    from feast import FeatureStore

    fs = FeatureStore(config=feast_repo_config(FeastSettings(
        project=a.project, registry_path=a.feast_registry, online_store=store_cfg)))
    fservice = fs.get_feature_service(DEFAULT_FEATURE_SERVICE)
    feast_rows = [[{USER_JOIN_KEY: m["user_id"], ITEM_JOIN_KEY: i} for i in f.item_ids]
                  for m, f in zip(mix, f_reqs)]

    def hnsw(i: int) -> None:
        rk = ann_k[i]
        if rk is not None:
            row, k = rk
            data.ann.knn_query(data.user_embeddings[row], k=k, num_threads=1)

    ops: dict[str, tuple[Callable, bool, bool]] = {
        "retrieval_stage": (lambda i: r_serv.Retrieve(r_reqs[i], None), True, False),
        "ann_floor": (hnsw, False, False),
        "features_stage": (lambda i: f_serv.GetFeatures(f_reqs[i], None), True, True),
        "redis_floor": (lambda i: script(keys=keys[i], args=fields), False, True),
        "feast_sdk": (lambda i: fs.get_online_features(features=fservice, entity_rows=feast_rows[i]).to_dict(),
                      False, True),
        "ranking_stage": (lambda i: r_rank.Rank(k_reqs[i], None), True, False),
        "onnx_floor": (lambda i: sess.run([out_name], {in_name: mats[i]}), False, False),
    }
    meters = {name: Meter(a.redis_pid if uses_redis else None) for name, (_, _, uses_redis) in ops.items()}
    n = len(mix)
    for name, (fn, is_async, _) in ops.items():  # warm-up
        await measure(Meter(), fn, list(range(n)), is_async)
    for r in range(a.rounds):
        for name, (fn, is_async, _) in ops.items():
            reps = max(1, a.feast_calls // n) if name == "feast_sdk" else a.calls // n
            await measure(meters[name], fn, [i % n for i in range(reps * n)], is_async)

    ks = [x[1] for x in ann_k if x is not None]
    item_emb = np.load(Path(a.artifacts) / "registry" / data.manifest.version_id / data.manifest.files.item_embeddings)
    message_bytes = {
        "retrieve_req": float(np.mean([len(r.SerializeToString()) for r in r_reqs])),
        "features_req": float(np.mean([len(r.SerializeToString()) for r in f_reqs])),
        "rank_req": float(np.mean([len(r.SerializeToString()) for r in k_reqs])),
    }
    out: dict[str, Any] = {
        "ops": {k: m.summary() for k, m in meters.items()},
        "ann": {"ef_search": data.manifest.ann.ef_search, "recall_at_100": recall_at_100(data, item_emb),
                "mean_k": float(np.mean(ks)) if ks else 0.0},
        "rows": float(np.mean([m.shape[0] for m in mats])), "cols": int(mats[0].shape[1]),
        "message_bytes": message_bytes,
    }
    resp_sizes = []
    for i in range(n):
        resp_sizes.append((len((await r_serv.Retrieve(r_reqs[i], None)).SerializeToString()),
                           len((await f_serv.GetFeatures(f_reqs[i], None)).SerializeToString()),
                           len((await r_rank.Rank(k_reqs[i], None)).SerializeToString())))
    rs = np.asarray(resp_sizes, dtype=np.float64).mean(axis=0)
    message_bytes.update({"retrieve_resp": rs[0], "features_resp": rs[1], "rank_resp": rs[2]})
    for app in (retrieval, features, ranking):
        await app.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--artifacts", required=True)
    ap.add_argument("--version", required=True)
    ap.add_argument("--redis-port", type=int, required=True)
    ap.add_argument("--redis-pid", type=int, required=True)
    ap.add_argument("--project", required=True)
    ap.add_argument("--feast-registry", required=True)
    ap.add_argument("--mix", required=True, help="JSON list of {user_id, exclude_item_ids}")
    ap.add_argument("--candidates", type=int, default=100)
    ap.add_argument("--calls", type=int, default=480, help="calls per op per round")
    ap.add_argument("--feast-calls", type=int, default=48, help="Feast SDK calls per round (slow)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json-out", required=True)
    a = ap.parse_args()
    Path(a.json_out).write_text(json.dumps(asyncio.run(run(a)), indent=1))


if __name__ == "__main__":
    main()
