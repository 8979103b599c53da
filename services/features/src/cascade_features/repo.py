"""``feast apply`` + materialization of one registry version's feature tables (idempotent).

Usage (``make up`` and tests)::

    python -m cascade_features.repo apply-materialize --version latest [--online-store redis]

Steps: resolve the version in the model registry, validate its ``feast/*.parquet`` tables, apply
the Feast objects of :mod:`cascade_features.definitions` over them, and materialize the tables'
whole time range into the online store. Re-running for the same version rewrites the same rows.
Switching to another version first empties the online tables of the two views, so entities the
new version lacks fall back to defaults instead of serving the old version's rows.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from redis.exceptions import ConnectionError as RedisConnectionError

from cascade_core.errors import CascadeError
from cascade_core.registry import Registry
from cascade_features.config import (
    DEFAULT_PROJECT,
    FeastSettings,
    OnlineStoreConfig,
    RedisStoreConfig,
    SqliteStoreConfig,
    default_registry_path,
    feast_repo_config,
)
from cascade_features.definitions import (
    CREATED_COLUMN,
    ITEM_FEATURE,
    ITEM_JOIN_KEY,
    ITEM_TABLE_FILE,
    TIMESTAMP_COLUMN,
    USER_FEATURE,
    USER_JOIN_KEY,
    USER_TABLE_FILE,
    USER_VIEW,
    VERSION_TAG,
    build_definitions,
)

log = logging.getLogger("cascade.features.repo")


@dataclass(frozen=True)
class TableStats:
    rows: int
    dim: int
    min_ts: datetime
    max_ts: datetime


@dataclass(frozen=True)
class MaterializeReport:
    version: str
    project: str
    online_store: str
    source_dir: str
    users: int
    items: int
    user_dim: int
    item_dim: int
    previous_version: str | None
    cleared: bool
    seconds: float


def inspect_table(path: Path, key: str, vec: str, expected_dim: int | None = None) -> TableStats:
    """Check one offline table has the contract's columns and one vector length; return its stats."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: feature table missing (written by the training pipeline)")
    t = pq.read_table(path)
    want = {key: "string", TIMESTAMP_COLUMN: "timestamp", CREATED_COLUMN: "timestamp", vec: "list<float>"}
    for col, kind in want.items():
        if col not in t.column_names:
            raise ValueError(f"{path}: column {col!r} missing (have {t.column_names})")
    for col in (TIMESTAMP_COLUMN, CREATED_COLUMN):
        typ = t.schema.field(col).type
        if not pa.types.is_timestamp(typ) or typ.tz is None:
            raise ValueError(f"{path}: column {col!r} must be a tz-aware UTC timestamp, got {typ}")
    vtype = t.schema.field(vec).type
    if not (pa.types.is_list(vtype) or pa.types.is_large_list(vtype)) or vtype.value_type != pa.float32():
        raise ValueError(f"{path}: column {vec!r} must be list<float32>, got {vtype}")
    if not pa.types.is_string(t.schema.field(key).type) and not pa.types.is_large_string(t.schema.field(key).type):
        raise ValueError(f"{path}: column {key!r} must be string, got {t.schema.field(key).type}")
    if t.num_rows == 0:
        raise ValueError(f"{path}: table is empty")
    if t.column(key).null_count or t.column(vec).null_count:
        raise ValueError(f"{path}: null {key!r} or {vec!r} values")
    lengths = pc.unique(pc.list_value_length(t.column(vec))).to_pylist()
    if len(lengths) != 1:
        raise ValueError(f"{path}: column {vec!r} has vectors of several lengths {sorted(lengths)}")
    dim = int(lengths[0])
    if expected_dim is not None and dim != expected_dim:
        raise ValueError(f"{path}: {vec!r} has length {dim}, the manifest layout expects {expected_dim}")
    ts = t.column(TIMESTAMP_COLUMN)
    return TableStats(t.num_rows, dim, pc.min(ts).as_py(), pc.max(ts).as_py())


def _clear_online_tables(store: Any, views: list[Any]) -> None:
    """Drop and recreate the online tables of ``views`` through Feast's own online-store API."""
    online = store._get_provider().online_store  # the provider owns the configured OnlineStore
    online.update(store.config, tables_to_delete=views, tables_to_keep=[], entities_to_delete=[],
                  entities_to_keep=[], partial=True)
    online.update(store.config, tables_to_delete=[], tables_to_keep=views, entities_to_delete=[],
                  entities_to_keep=[], partial=True)


def apply_and_materialize(
    version: str | None = "latest",
    online_store: OnlineStoreConfig | None = None,
    *,
    project: str = DEFAULT_PROJECT,
    registry_path: str | None = None,
    artifacts_dir: Path | str | None = None,
    source_dir: Path | str | None = None,
) -> MaterializeReport:
    """Apply the Feast repo for ``version`` and load its tables into the online store.

    ``source_dir`` overrides where the parquet tables are (default: ``<registry>/<version>/feast``;
    then ``version`` is only a label and no manifest is needed).
    """
    t0 = time.perf_counter()
    expected_user = expected_item = None
    if source_dir is None:
        reg = Registry(artifacts_dir)
        version = reg.resolve(version)
        manifest = reg.manifest(version)
        source_dir = reg.path(version) / manifest.files.feast_dir
        from cascade_core.features import FeatureLayout

        layout = FeatureLayout.from_names(manifest.ranker.feature_names)
        expected_user, expected_item = layout.user_dim, layout.item_dim
    version = version or "unknown"
    src = Path(source_dir).resolve()
    users = inspect_table(src / USER_TABLE_FILE, USER_JOIN_KEY, USER_FEATURE, expected_user)
    items = inspect_table(src / ITEM_TABLE_FILE, ITEM_JOIN_KEY, ITEM_FEATURE, expected_item)

    from feast import FeatureStore
    from feast.errors import FeatureViewNotFoundException

    settings = FeastSettings(project=project, registry_path=registry_path or default_registry_path(),
                             online_store=online_store or SqliteStoreConfig())
    store = FeatureStore(config=feast_repo_config(settings))
    try:
        previous = store.get_feature_view(USER_VIEW).tags.get(VERSION_TAG)
    except FeatureViewNotFoundException:
        previous = None
    defs = build_definitions(src, version)
    store.apply(defs.objects())
    cleared = previous is not None and previous != version
    if cleared:
        log.info("switching online store from version %s to %s: clearing", previous, version)
        _clear_online_tables(store, defs.feature_views)
    start = min(users.min_ts, items.min_ts) - timedelta(seconds=1)
    end = max(users.max_ts, items.max_ts) + timedelta(seconds=1)
    # Only the version's batch views: the stream views are filled by the stream worker.
    store.materialize(start_date=start, end_date=end, feature_views=[v.name for v in defs.feature_views])
    return MaterializeReport(
        version=version, project=project, online_store=settings.online_store.describe(), source_dir=str(src),
        users=users.rows, items=items.rows, user_dim=users.dim, item_dim=items.dim,
        previous_version=previous, cleared=cleared, seconds=round(time.perf_counter() - t0, 3),
    )


def _store_from_args(a: argparse.Namespace) -> OnlineStoreConfig:
    if a.online_store == "redis":
        return RedisStoreConfig(host=a.redis_host, port=a.redis_port, db=a.redis_db)
    return SqliteStoreConfig(path=a.sqlite_path) if a.sqlite_path else SqliteStoreConfig()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cascade_features.repo", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    am = sub.add_parser("apply-materialize", help="feast apply + materialize one registry version")
    am.add_argument("--version", default="latest", help="registry version ('latest' = LATEST pointer)")
    am.add_argument("--artifacts-dir", default=None, help="model registry root (default $CASCADE_ARTIFACTS_DIR)")
    am.add_argument("--source-dir", default=None, help="parquet tables dir (default <registry>/<version>/feast)")
    am.add_argument("--project", default=DEFAULT_PROJECT)
    am.add_argument("--registry-path", default=None, help="Feast registry file (default $CASCADE_DATA_DIR/feast)")
    am.add_argument("--online-store", choices=("sqlite", "redis"), default="sqlite")
    am.add_argument("--sqlite-path", default=None)
    am.add_argument("--redis-host", default="127.0.0.1")
    am.add_argument("--redis-port", type=int, default=6379)
    am.add_argument("--redis-db", type=int, default=0)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        report = apply_and_materialize(
            a.version, _store_from_args(a), project=a.project, registry_path=a.registry_path,
            artifacts_dir=a.artifacts_dir, source_dir=a.source_dir,
        )
    except (FileNotFoundError, ValueError, CascadeError, RedisConnectionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for k, v in asdict(report).items():
        print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
