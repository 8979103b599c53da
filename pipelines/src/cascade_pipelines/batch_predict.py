"""Batch predictions: top-K for every user (or a segment) with the serving code, to parquet and Redis.

    python -m cascade_pipelines.batch_predict --k 20                          # all users of LATEST
    python -m cascade_pipelines.batch_predict --users 1,2,3 --redis redis://127.0.0.1:6379/0
    python -m cascade_pipelines.batch_predict --users-file segment.txt --output /tmp/top20.parquet

Parity with online serving by construction: the job runs the router's own Recommend pipeline
(:func:`cascade_router.pipeline.build_pipeline` — the same stages, feature layout and ranker
version) in-process against the running retrieval, feature and ranking services, with generous
deadlines and ``--concurrency`` requests in flight. Lists that needed a fallback (``degraded``)
are not written: a batch list must never freeze an outage into the cache (they are counted).

Outputs: a parquet file (``user_id, rank, item_id, score, source, model_version, created_at``;
default ``<artifacts>/batch/<version>/predictions.parquet``) and, with ``--redis``, one key per user
(``cascade:batch:v1:<user_id>``, JSON, ``--ttl-s`` expiry) — the formats
:mod:`cascade_router.batch` reads. Point the router at either with ``CASCADE_BATCH_PREDICTIONS`` to
serve them as a fallback (retrieval down; ``degraded=true``) or as a cache (``CASCADE_BATCH_MODE=cache``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from cascade_core.registry import Registry, artifacts_dir


@dataclass
class BatchResult:
    users: int = 0
    written: int = 0
    degraded_skipped: int = 0
    failed: int = 0
    empty: int = 0
    seconds: float = 0.0
    output: Path | None = None
    redis_keys: int = 0
    model_versions: set[str] = field(default_factory=set)

    def summary(self) -> str:
        rate = self.users / self.seconds if self.seconds > 0 else 0.0
        return (f"{self.written}/{self.users} users written ({self.degraded_skipped} degraded skipped, "
                f"{self.failed} failed, {self.empty} empty) in {self.seconds:.1f}s ({rate:.0f} users/s); "
                f"model {','.join(sorted(self.model_versions)) or '-'}; parquet {self.output}; "
                f"redis keys {self.redis_keys}")


def _users(registry: Registry, version: str, users: str | None, users_file: Path | None,
           limit: int | None) -> list[str]:
    if users:
        out = [u.strip() for u in users.split(",") if u.strip()]
    elif users_file:
        out = [line.strip() for line in users_file.read_text().splitlines() if line.strip()]
    else:
        m = registry.manifest(version)
        out = [str(u) for u in json.loads((registry.path(version) / m.files.user_ids).read_text())]
    return out[:limit] if limit else out


async def predict(
    user_ids: list[str],
    *,
    artifacts: Path,
    version: str,
    k: int,
    retrieval_target: str,
    features_target: str,
    ranking_target: str,
    ranker_version: str = "",
    concurrency: int = 8,
    timeout_s: float = 10.0,
) -> tuple[list[dict], BatchResult]:
    """Run the router pipeline for every user; returns parquet rows and counters."""
    from cascade_core.errors import CascadeError
    from cascade_core.stages import Query
    from cascade_router import params
    from cascade_router.model import ServingModel
    from cascade_router.pipeline import build_pipeline
    from cascade_router.settings import RouterSettings

    settings = RouterSettings(
        artifacts_dir=artifacts, model_version=version, retrieval_target=retrieval_target,
        features_target=features_target, ranking_target=ranking_target, request_budget_s=timeout_s,
        retrieval_timeout_s=timeout_s, features_timeout_s=timeout_s, ranking_timeout_s=timeout_s,
        experiments_file=None, batch_predictions="",
    )
    model = ServingModel(artifacts, version)
    model.load()
    pipeline = build_pipeline(settings, model)
    await pipeline.initialize()
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    result = BatchResult(users=len(user_ids))
    rows: list[dict] = []
    sem = asyncio.Semaphore(concurrency)
    run_id = uuid.uuid4().hex[:8]

    async def one(uid: str) -> None:
        async with sem:
            q = Query(user_id=uid, num_items=k, request_id=f"batch-{run_id}-{uid}",
                      deadline=time.monotonic() + timeout_s)
            q.params[params.RANKER_VERSION] = ranker_version
            try:
                res = await pipeline.run(q)
            except CascadeError:
                result.failed += 1
                return
        stages = set(res.stage_seconds)
        if res.degraded or stages & {s.name for s in pipeline.fallback_sources}:
            result.degraded_skipped += 1
            return
        cands = res.candidates
        if not len(cands):
            result.empty += 1
            return
        version_used = str(q.params.get(params.SCORED_MODEL_VERSION, model.version_id))
        result.model_versions.add(version_used)
        scores, sources, ranks = cands.column("score"), cands.column("source"), cands.column("rank")
        for i, iid in enumerate(cands.item_ids):
            rows.append({"user_id": uid, "rank": int(ranks[i]), "item_id": iid, "score": float(scores[i]),
                         "source": str(sources[i]), "model_version": version_used, "created_at": created})
        result.written += 1

    t0 = time.perf_counter()
    try:
        await asyncio.gather(*(one(u) for u in user_ids))
    finally:
        await pipeline.close()
    result.seconds = time.perf_counter() - t0
    return rows, result


def write_parquet(rows: list[dict], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = ("user_id", "rank", "item_id", "score", "source", "model_version", "created_at")
    types = (pa.string(), pa.int32(), pa.string(), pa.float32(), pa.string(), pa.string(), pa.string())
    table = pa.table({c: pa.array([r[c] for r in rows], t) for c, t in zip(cols, types)})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.parquet")
    pq.write_table(table, tmp)
    tmp.replace(path)


def write_redis(rows: list[dict], url: str, ttl_s: int) -> int:
    """One key per user (the router's format); returns the number of keys written."""
    import redis
    from cascade_router.batch import encode_list, redis_key

    lists: dict[str, list[dict]] = {}
    for r in rows:
        lists.setdefault(r["user_id"], []).append(r)
    client = redis.Redis.from_url(url)
    try:
        pipe = client.pipeline(transaction=False)
        for uid, rs in lists.items():
            rs.sort(key=lambda r: r["rank"])
            value = encode_list([r["item_id"] for r in rs], [r["score"] for r in rs], rs[0]["model_version"],
                                rs[0]["created_at"])
            pipe.set(redis_key(uid), value, ex=ttl_s)
        pipe.execute()
    finally:
        client.close()
    return len(lists)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cascade_pipelines.batch_predict",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--artifacts", type=Path, default=None,
                    help="registry root (default $CASCADE_ARTIFACTS_DIR)")
    ap.add_argument("--model-version", default="latest", help="registry version (features layout, fallback)")
    ap.add_argument("--ranker-version", default="", help="ranker version to ask for ('' = ranking default)")
    ap.add_argument("--k", type=int, default=20, help="items per user (1-200)")
    seg = ap.add_mutually_exclusive_group()
    seg.add_argument("--users", default=None, help="comma-separated user ids (a segment)")
    seg.add_argument("--users-file", type=Path, default=None, help="one user id per line (a segment)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N users")
    ap.add_argument("--retrieval-target", default="127.0.0.1:50052")
    ap.add_argument("--features-target", default="127.0.0.1:50053")
    ap.add_argument("--ranking-target", default="127.0.0.1:50054")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--timeout-s", type=float, default=10.0, help="deadline of one user's pipeline run")
    ap.add_argument("--output", type=Path, default=None, help="parquet path")
    ap.add_argument("--redis", default=None, help="also write to Redis (redis://host:port/db)")
    ap.add_argument("--ttl-s", type=int, default=2 * 86400, help="Redis key expiry")
    a = ap.parse_args(argv)
    if not 1 <= a.k <= 200:
        ap.error("--k must be between 1 and 200")
    from cascade_core.errors import CascadeError

    errors: tuple[type[BaseException], ...] = (CascadeError, OSError, ValueError)
    try:
        import redis

        errors += (redis.RedisError,)
    except ImportError:  # pragma: no cover - redis is only needed with --redis
        pass
    root = (a.artifacts or artifacts_dir()).resolve()
    registry = Registry(root)
    try:
        version = registry.resolve(a.model_version)
        users = _users(registry, version, a.users, a.users_file, a.limit)
        if not users:
            raise ValueError("no users to predict for (empty segment)")
        rows, result = asyncio.run(predict(
            users, artifacts=root, version=version, k=a.k, retrieval_target=a.retrieval_target,
            features_target=a.features_target, ranking_target=a.ranking_target,
            ranker_version=a.ranker_version, concurrency=a.concurrency, timeout_s=a.timeout_s,
        ))
        out = a.output or root / "batch" / version / "predictions.parquet"
        write_parquet(rows, out)
        result.output = out
        if a.redis:
            result.redis_keys = write_redis(rows, a.redis, a.ttl_s)
    except errors as e:  # one line naming the problem; bugs keep their traceback
        print(f"batch_predict: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    print(result.summary())
    return 0 if result.written else 1


if __name__ == "__main__":
    sys.exit(main())
