"""Contract suite of the fast online-store readers, run against SQLite AND real Redis.

Feast writes (``apply_and_materialize``), Feast's SDK reads (``get_online_features``) are the
reference, and each fast reader must return exactly the same vectors and the same missing rows —
so a Feast upgrade that changes a storage layout fails here instead of in production.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from feast import FeatureStore

from cascade_core.errors import UnavailableError
from cascade_features.config import FeastSettings, RedisStoreConfig, SqliteStoreConfig, feast_repo_config
from cascade_features.definitions import DEFAULT_FEATURE_SERVICE
from cascade_features.repo import MaterializeReport, apply_and_materialize
from cascade_features.stores import OnlineReader, make_reader
from cascade_features.stream_definitions import ITEM_REALTIME_VIEW, USER_REALTIME_VIEW
from cascade_features.synthetic import SyntheticTables, write_feature_tables

UDIM, IDIM = 6, 7


def as_matrix(values: list, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Feast ``to_dict()`` column (lists or None) -> (float32 [n, dim] with zero rows, found mask)."""
    out = np.zeros((len(values), dim), dtype=np.float32)
    found = np.zeros(len(values), dtype=bool)
    for i, v in enumerate(values):
        if v is not None:
            out[i] = np.asarray(v, dtype=np.float32)
            found[i] = True
    return out, found


@dataclass
class Ctx:
    config: SqliteStoreConfig | RedisStoreConfig
    project: str
    registry_path: str
    root: Path

    def materialize(self, version: str, tables_dir: Path) -> MaterializeReport:
        return apply_and_materialize(version, self.config, project=self.project,
                                     registry_path=self.registry_path, source_dir=tables_dir)

    def sdk(self) -> FeatureStore:
        return FeatureStore(config=feast_repo_config(FeastSettings(
            project=self.project, registry_path=self.registry_path, online_store=self.config)))

    async def reader(self) -> OnlineReader:
        r = make_reader(self.config, self.project, UDIM, IDIM)
        await r.initialize()
        return r


def write(ctx: Ctx, name: str, *, n_users: int = 12, n_items: int = 150, seed: int = 1) -> tuple[Path, SyntheticTables]:
    d = ctx.root / name
    return d, write_feature_tables(d, n_users=n_users, n_items=n_items, user_dim=UDIM, item_dim=IDIM, seed=seed)


@pytest.fixture
def ctx(online_store, tmp_path: Path) -> Ctx:
    config, project = online_store
    return Ctx(config, project, str(tmp_path / "registry.db"), tmp_path)


def sdk_vectors(fs: FeatureStore, user_id: str, item_ids: list[str]):
    u = fs.get_online_features(features=["user_features:user_vec"], entity_rows=[{"user_id": user_id}]).to_dict()
    umat, ufound = as_matrix(u["user_vec"], UDIM)
    if not item_ids:
        return umat[0], bool(ufound[0]), np.zeros((0, IDIM), np.float32), np.zeros(0, bool)
    it = fs.get_online_features(features=["item_features:item_vec"],
                                entity_rows=[{"item_id": i} for i in item_ids]).to_dict()
    imat, ifound = as_matrix(it["item_vec"], IDIM)
    return umat[0], bool(ufound[0]), imat, ifound


async def assert_reader_matches_sdk(ctx: Ctx, user_id: str, item_ids: list[str]):
    uvec, ufound, imat, ifound = sdk_vectors(ctx.sdk(), user_id, item_ids)
    reader = await ctx.reader()
    try:
        got = await reader.fetch(user_id, item_ids)
    finally:
        await reader.close()
    assert got.user_found == ufound
    np.testing.assert_array_equal(got.user_vec, uvec)
    np.testing.assert_array_equal(got.item_found, ifound)
    np.testing.assert_array_equal(got.item_mat, imat)
    assert got.item_mat.dtype == np.float32 and got.item_mat.shape == (len(item_ids), IDIM)
    return got


async def test_reader_matches_feast_sdk(ctx: Ctx):
    d, t = write(ctx, "v1")
    report = ctx.materialize("v1", d)
    assert (report.users, report.items, report.user_dim, report.item_dim) == (12, 150, UDIM, IDIM)
    items = [*t.item_ids[:100], "no-such-item", "i3", "ünïcødé-missing", t.item_ids[149]]
    got = await assert_reader_matches_sdk(ctx, "u5", items)
    # and the values are the table's values, not just whatever both sides agree on
    assert got.user_found
    np.testing.assert_array_equal(got.user_vec, t.user("u5"))
    np.testing.assert_array_equal(got.item_mat[:100], t.item_vecs[:100])
    assert got.item_found.tolist() == [True] * 100 + [False, True, False, True]
    np.testing.assert_array_equal(got.item_mat[101], t.item_vecs[3])  # duplicate id: same row again
    assert not got.item_mat[100].any() and not got.item_mat[102].any()


async def test_reader_matches_feature_service_rows(ctx: Ctx):
    d, t = write(ctx, "v1")
    ctx.materialize("v1", d)
    fs = ctx.sdk()
    ids = ["i0", "i7", "missing"]
    res = fs.get_online_features(features=fs.get_feature_service(DEFAULT_FEATURE_SERVICE),
                                 entity_rows=[{"user_id": "u1", "item_id": i} for i in ids]).to_dict()
    reader = await ctx.reader()
    try:
        got = await reader.fetch("u1", ids)
    finally:
        await reader.close()
    imat, ifound = as_matrix(res["item_vec"], IDIM)
    np.testing.assert_array_equal(got.item_mat, imat)
    np.testing.assert_array_equal(got.item_found, ifound)
    np.testing.assert_array_equal(np.asarray(res["user_vec"][0], np.float32), got.user_vec)


async def test_missing_user_and_no_items(ctx: Ctx):
    d, _ = write(ctx, "v1")
    ctx.materialize("v1", d)
    got = await assert_reader_matches_sdk(ctx, "nobody", [])
    assert not got.user_found and not got.user_vec.any()
    got = await assert_reader_matches_sdk(ctx, "nobody", ["x1", "x2"])
    assert not got.item_found.any()


async def test_rematerialize_same_version_overwrites_values(ctx: Ctx):
    """Same version, same event timestamps, new values: the new values are served (no dedup)."""
    d, old = write(ctx, "v1", seed=1)
    ctx.materialize("v1", d)
    _, new = write(ctx, "v1", seed=2)
    report = ctx.materialize("v1", d)
    assert report.previous_version == "v1" and not report.cleared
    got = await assert_reader_matches_sdk(ctx, "u0", ["i0", "i1"])
    np.testing.assert_array_equal(got.user_vec, new.user("u0"))
    np.testing.assert_array_equal(got.item_mat, new.item_vecs[:2])
    assert not np.array_equal(new.item_vecs[:2], old.item_vecs[:2])


async def test_switching_version_drops_rows_the_new_version_lacks(ctx: Ctx):
    d1, _ = write(ctx, "v1", n_users=12, n_items=150, seed=1)
    ctx.materialize("v1", d1)
    d2, t2 = write(ctx, "v2", n_users=5, n_items=100, seed=3)
    report = ctx.materialize("v2", d2)
    assert report.previous_version == "v1" and report.cleared
    got = await assert_reader_matches_sdk(ctx, "u9", ["i5", "i120"])
    assert not got.user_found  # u9 only existed in v1
    assert got.item_found.tolist() == [True, False]
    np.testing.assert_array_equal(got.item_mat[0], t2.item_vecs[5])


async def test_idempotent_apply(ctx: Ctx):
    d, t = write(ctx, "v1")
    ctx.materialize("v1", d)
    ctx.materialize("v1", d)
    fs = ctx.sdk()
    views = {v.name for v in fs.list_feature_views()}
    # batch views of the version + the stream worker's real-time views, registered by one apply
    assert {"user_features", "item_features", USER_REALTIME_VIEW, ITEM_REALTIME_VIEW} <= views
    assert fs.get_feature_view("item_features").tags["cascade_version"] == "v1"
    got = await assert_reader_matches_sdk(ctx, "u2", t.item_ids[:20])
    assert got.item_found.all()


async def test_reader_with_other_layout_fails_loudly(ctx: Ctx):
    d, _ = write(ctx, "v1")
    ctx.materialize("v1", d)
    reader = make_reader(ctx.config, ctx.project, UDIM, IDIM + 1)
    await reader.initialize()
    try:
        with pytest.raises(ValueError, match="item_features:item_vec.*7 values, expected 8"):
            await reader.fetch("u0", ["i0"])
    finally:
        await reader.close()


async def test_sqlite_not_materialized_is_unavailable(tmp_path: Path):
    reader = make_reader(SqliteStoreConfig(path=str(tmp_path / "absent.db")), "cascade", UDIM, IDIM)
    await reader.initialize()
    with pytest.raises(UnavailableError, match="apply-materialize"):
        await reader.fetch("u0", ["i0"])


async def test_sqlite_missing_tables_is_unavailable(tmp_path: Path):
    import sqlite3

    p = tmp_path / "empty.db"
    sqlite3.connect(p).close()
    reader = make_reader(SqliteStoreConfig(path=str(p)), "cascade", UDIM, IDIM)
    await reader.initialize()
    with pytest.raises(UnavailableError, match="no such table"):
        await reader.fetch("u0", ["i0"])
    await reader.close()


async def test_redis_down_is_unavailable():
    from cascade_platform.procs import free_port

    reader = make_reader(RedisStoreConfig(port=free_port(), socket_timeout_s=0.2), "cascade", UDIM, IDIM)
    await reader.initialize()
    try:
        with pytest.raises(UnavailableError, match="Redis online store"):
            await reader.fetch("u0", ["i0"])
    finally:
        await reader.close()
