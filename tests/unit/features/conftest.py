"""Fixtures of the feature-serving unit and contract tests: layouts, seeded tables, Feast stores."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import redis

from cascade_core.features import FeatureLayout
from cascade_features.config import RedisStoreConfig, SqliteStoreConfig

CATEGORIES = ("Action", "Comedy", "Drama")
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379


@pytest.fixture
def layout() -> FeatureLayout:
    return FeatureLayout(CATEGORIES)


@pytest.fixture
def feature_defaults(layout: FeatureLayout) -> list[float]:
    return [round(0.1 * (i + 1), 3) for i in range(layout.dim)]


def _purge_redis(project: str) -> int:
    r = redis.Redis(host=REDIS_HOST, port=REDIS_PORT)
    keys = list(r.scan_iter(match=b"*" + project.encode(), count=1000))
    if keys:
        r.delete(*keys)
    r.close()
    return len(keys)


@pytest.fixture(params=["sqlite", "redis"])
def online_store(request, tmp_path: Path):
    """(store config, unique Feast project) for each backend; Redis keys are purged afterwards."""
    project = f"cascade_t_{uuid.uuid4().hex[:10]}"
    if request.param == "sqlite":
        yield SqliteStoreConfig(path=str(tmp_path / "online.db")), project
    else:
        yield RedisStoreConfig(host=REDIS_HOST, port=REDIS_PORT), project
        _purge_redis(project)
