"""The worker with Redis as the online store (unique Feast project; its keys are deleted afterwards)."""

from __future__ import annotations

import pytest
import redis
from cascade_features.config import RedisStoreConfig
from cascade_stream import simulator
from cascade_stream.producer import EventProducer
from streamtest import diff, expected, feast_store, read_online, ready, wait_until

pytestmark = pytest.mark.integration

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379


def _project_keys(r: redis.Redis, project: str) -> list[bytes]:
    return list(r.scan_iter(match=b"*" + project.encode(), count=1000))  # Feast: <entity key><project>


@pytest.fixture
def redis_client():
    r = redis.Redis(host=REDIS_HOST, port=REDIS_PORT)
    r.ping()
    yield r
    r.close()


def test_simulated_traffic_lands_in_redis(lane, catalog, workers, tmp_path, redis_client):
    env = lane.env(
        CASCADE_ONLINE_STORE__TYPE="redis",
        CASCADE_ONLINE_STORE__HOST=REDIS_HOST,
        CASCADE_ONLINE_STORE__PORT=str(REDIS_PORT),
    )
    try:
        worker = workers(env, tmp_path / "worker.log").start()
        wait_until(lambda: ready(worker), 180, "the worker to own all partitions", worker)
        sent: list[dict] = []
        with EventProducer(lane.kafka, lane.topics.events) as p:
            stats = simulator.run(
                p, simulator.synthetic(catalog[1], n_users=40, seed=5), rate=300, count=1500, sink=sent
            )
            focus = list(simulator.focus(catalog[1], "focus-user", "Comedy", 6))
            simulator.run(p, focus, rate=None, sink=sent)
        assert stats.sent == 1500 and len(sent) == 1500 + 12
        assert len({e["event_id"] for e in sent}) == len(sent)

        store = feast_store(lane, RedisStoreConfig(host=REDIS_HOST, port=REDIS_PORT))
        want_users = expected(sent, "user", catalog[1])
        want_items = expected(sent, "item", catalog[1])
        wait_until(
            lambda: (
                not diff(read_online(store, "user", sorted(want_users)), want_users)
                and not diff(read_online(store, "item", sorted(want_items)), want_items)
            ),
            180,
            "Redis to hold the simulated events' features",
            worker,
        )
        focus_row = read_online(store, "user", ["focus-user"])["focus-user"]
        assert focus_row["click_count_5m"] == 6 and focus_row["view_count_5m"] == 6
        assert focus_row["last_categories"] == ["Comedy"] * 6
        assert len(_project_keys(redis_client, lane.project)) == len(want_users) + len(want_items)
    finally:
        keys = _project_keys(redis_client, lane.project)
        if keys:
            redis_client.delete(*keys)
    assert _project_keys(redis_client, lane.project) == []
