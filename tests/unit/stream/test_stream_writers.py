"""The three online-store writers store identical values (read back with Feast), on SQLite and Redis."""

from __future__ import annotations

import uuid

import pytest
import redis
from cascade_features.config import FeastSettings, RedisStoreConfig, SqliteStoreConfig, feast_repo_config
from cascade_features.stream_definitions import stream_objects
from cascade_stream.features import EntityState, Event
from cascade_stream.writer import WRITERS, FeatureRow, make_writer

T0 = 1_800_000_000_000


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path):
    from feast import FeatureStore

    project = f"st_w_{uuid.uuid4().hex[:10]}"
    online = (
        SqliteStoreConfig(path=str(tmp_path / "online.db"))
        if request.param == "sqlite"
        else RedisStoreConfig()
    )
    fs = FeatureStore(
        config=feast_repo_config(
            FeastSettings(project=project, registry_path=str(tmp_path / "reg.db"), online_store=online)
        )
    )
    fs.apply(stream_objects(tmp_path / "offline"))
    yield fs
    if request.param == "redis":
        r = redis.Redis()
        keys = list(r.scan_iter(match=b"*" + project.encode()))
        if keys:
            r.delete(*keys)
        r.close()


def _rows(kind: str, prefix: str) -> list[FeatureRow]:
    rows = []
    for n in range(3):
        st = EntityState(kind)  # type: ignore[arg-type]
        for k in range(n + 2):
            st.add(Event(f"{prefix}{n}-{k}", k % 5, f"u{n}", f"i{k}", T0 + k * 1000), f"cat{k}")
        rows.append(FeatureRow(f"{prefix}{n}", st.last_ms, st.features()))
    return rows


@pytest.mark.parametrize("kind", ["user", "item"])
def test_writers_store_the_same_values(store, kind):
    view = "user_realtime" if kind == "user" else "item_realtime"
    for name in WRITERS:
        rows = _rows(kind, f"{name}-")
        make_writer(name, store, kind).write(rows)  # type: ignore[arg-type]
        names = list(rows[0].values)
        got = store.get_online_features(
            features=[f"{view}:{n}" for n in names], entity_rows=[{f"{kind}_id": r.entity} for r in rows]
        ).to_dict()
        for i, r in enumerate(rows):
            assert {n: got[n][i] for n in names} == r.values, name


def test_unknown_writer_is_a_clear_error(store):
    with pytest.raises(
        ValueError, match="writer 'kafka': expected one of online_store, write_to_online_store, push"
    ):
        make_writer("kafka", store, "user")
