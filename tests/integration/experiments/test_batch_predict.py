"""Batch predictions with the serving code against the real services, then served by real router
processes from parquet and from Redis: as the fallback when retrieval is down, and as a cache."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pyarrow.parquet as pq
import pytest
import redis
from cascade.router.v1 import router_pb2, router_pb2_grpc
from cascade_router.batch import decode_list, redis_key
from expstack import GENEROUS, VERSION_A, Services
from router_procs import closed_target, start_router

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REDIS_URL = "redis://127.0.0.1:6379/13"  # a database of its own: the shared Redis is used by others
USERS = [f"u{i}" for i in range(10)]


@pytest.fixture(scope="module")
def batch(tmp_path_factory, services: Services) -> Iterator[tuple[Path, dict[str, list[dict]]]]:
    out = tmp_path_factory.mktemp("batch") / "predictions.parquet"
    t = services.targets()
    r = subprocess.run(
        [sys.executable, "-m", "cascade_pipelines.batch_predict", "--artifacts", str(services.registry.root),
         "--k", "5", "--retrieval-target", t["retrieval"], "--features-target", t["features"],
         "--ranking-target", t["ranking"], "--output", str(out), "--redis", REDIS_URL, "--concurrency", "4"],
        capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stderr
    assert "10/10 users written (0 degraded skipped" in r.stdout
    rows = pq.read_table(out).to_pylist()
    lists: dict[str, list[dict]] = {}
    for row in rows:
        lists.setdefault(row["user_id"], []).append(row)
    try:
        yield out, {u: sorted(rs, key=lambda x: x["rank"]) for u, rs in lists.items()}
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        client.delete(*(redis_key(u) for u in USERS))
        client.close()


def _recommend(target: str, user: str, n: int = 5) -> router_pb2.RecommendResponse:
    with grpc.insecure_channel(target) as ch:
        return router_pb2_grpc.RecommendationServiceStub(ch).Recommend(
            router_pb2.RecommendRequest(user_id=user, num_items=n), timeout=60)


def test_batch_lists_equal_what_the_router_serves(batch, services: Services, tmp_path: Path):
    _, lists = batch
    assert sorted(lists) == USERS
    router = start_router(tmp_path, services.registry.root, targets=services.targets(), **GENEROUS)
    try:
        for user in ("u1", "u4", "u8"):
            resp = _recommend(router.target, user)
            assert not resp.degraded and resp.model_version == VERSION_A
            rows = lists[user]
            assert [r["item_id"] for r in rows] == [i.item_id for i in resp.items]
            assert [r["score"] for r in rows] == pytest.approx([i.score for i in resp.items], rel=1e-5)
            assert [r["source"] for r in rows] == [i.source for i in resp.items]
            assert {r["model_version"] for r in rows} == {VERSION_A}
    finally:
        router.stop()
    client = redis.Redis.from_url(REDIS_URL)
    try:
        stored = decode_list(client.get(redis_key("u4")))
    finally:
        client.close()
    assert stored.items == [r["item_id"] for r in lists["u4"]] and stored.model_version == VERSION_A


@pytest.mark.parametrize("store", ["parquet", "redis"])
def test_router_falls_back_to_batch_lists_when_retrieval_is_down(batch, services: Services, tmp_path: Path, store):
    path, lists = batch
    targets = {**services.targets(), "retrieval": closed_target(), "ranking": closed_target()}
    router = start_router(tmp_path, services.registry.root, targets=targets,
                          CASCADE_BATCH_PREDICTIONS=str(path) if store == "parquet" else REDIS_URL, **GENEROUS)
    try:
        resp = _recommend(router.target, "u6")
        assert resp.degraded is True
        assert [i.item_id for i in resp.items] == [r["item_id"] for r in lists["u6"]]
        assert {i.source for i in resp.items} == {"batch"}
        # a user without a batch list still gets the popularity fallback
        other = _recommend(router.target, "stranger")
        assert other.degraded and {i.source for i in other.items} == {"popular"}
    finally:
        router.stop()


def test_router_serves_batch_lists_as_a_cache(batch, services: Services, tmp_path: Path):
    path, lists = batch
    router = start_router(tmp_path, services.registry.root, targets=services.targets(),
                          CASCADE_BATCH_PREDICTIONS=str(path), CASCADE_BATCH_MODE="cache", **GENEROUS)
    try:
        hit = _recommend(router.target, "u2")
        assert not hit.degraded and hit.model_version == VERSION_A
        assert [i.item_id for i in hit.items] == [r["item_id"] for r in lists["u2"]]
        assert {i.source for i in hit.items} == {"batch"}
        longer = _recommend(router.target, "u2", n=8)  # the batch list is too short: the live pipeline
        assert len(longer.items) == 8 and "batch" not in {i.source for i in longer.items}
        miss = _recommend(router.target, "stranger")
        assert not miss.degraded and "batch" not in {i.source for i in miss.items}
    finally:
        router.stop()
