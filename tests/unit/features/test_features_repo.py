"""Offline-table validation of ``apply_and_materialize`` and the CLI / yaml config agreement."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from feast.repo_config import load_repo_config

from cascade_features.config import FeastSettings, RedisStoreConfig, SqliteStoreConfig, feast_repo_config
from cascade_features.repo import apply_and_materialize, inspect_table, main
from cascade_features.settings import FeaturesSettings
from cascade_features.synthetic import DEFAULT_TS, table, write_feature_tables

REPO = Path(__file__).resolve().parents[3] / "feature_repo"


def _tables(tmp_path: Path) -> Path:
    write_feature_tables(tmp_path, n_users=3, n_items=4, user_dim=5, item_dim=6)
    return tmp_path


def test_inspect_table_reports_stats(tmp_path: Path):
    s = inspect_table(_tables(tmp_path) / "item_features.parquet", "item_id", "item_vec", expected_dim=6)
    assert (s.rows, s.dim) == (4, 6) and s.min_ts == s.max_ts == DEFAULT_TS


@pytest.mark.parametrize("mutate, msg", [
    (lambda t: t.drop_columns(["created"]), "column 'created' missing"),
    (lambda t: t.set_column(1, "event_timestamp", pa.array([DEFAULT_TS.replace(tzinfo=None)] * 4,
                                                           pa.timestamp("us"))), "tz-aware"),
    (lambda t: t.set_column(3, "item_vec", pa.array([[1.0, 2.0]] * 4, pa.list_(pa.float64()))), "list<float32>"),
    (lambda t: t.set_column(3, "item_vec", pa.array([[1.0] * 6, [1.0] * 6, [1.0] * 6, [1.0] * 5],
                                                    pa.list_(pa.float32()))), "several lengths"),
])
def test_inspect_table_rejects_bad_tables(tmp_path: Path, mutate, msg):
    p = tmp_path / "item_features.parquet"
    t = table("item_id", "item_vec", ["a", "b", "c", "d"], np.zeros((4, 6), np.float32), DEFAULT_TS)
    pq.write_table(mutate(t), p)
    with pytest.raises(ValueError, match=msg):
        inspect_table(p, "item_id", "item_vec")


def test_inspect_table_checks_manifest_dim(tmp_path: Path):
    with pytest.raises(ValueError, match="length 6, the manifest layout expects 9"):
        inspect_table(_tables(tmp_path) / "item_features.parquet", "item_id", "item_vec", expected_dim=9)


def test_missing_table_is_a_clear_error(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="user_features.parquet: feature table missing"):
        apply_and_materialize("v1", SqliteStoreConfig(path=str(tmp_path / "o.db")),
                              registry_path=str(tmp_path / "r.db"), source_dir=tmp_path)


def test_cli_unknown_version_exits_2(tmp_path: Path, capsys):
    rc = main(["apply-materialize", "--version", "nope", "--artifacts-dir", str(tmp_path)])
    assert rc == 2
    assert "model version 'nope' not found" in capsys.readouterr().err


def test_feature_store_yaml_matches_code_config(tmp_path: Path, monkeypatch):
    """``feast -c feature_repo`` and ``cascade_features.repo`` must configure the same store."""
    monkeypatch.setenv("CASCADE_DATA_DIR", str(tmp_path))
    from_yaml = load_repo_config(REPO, REPO / "feature_store.yaml")
    from_code = feast_repo_config(FeastSettings())
    assert from_yaml.project == from_code.project == "cascade"
    assert from_yaml.registry.path == from_code.registry.path == str(tmp_path / "feast" / "registry.db")
    assert from_yaml.online_store.type == from_code.online_store.type == "sqlite"
    assert from_yaml.online_store.path == from_code.online_store.path == str(tmp_path / "feast" / "online.db")
    assert from_yaml.entity_key_serialization_version == from_code.entity_key_serialization_version == 3


def test_settings_select_the_store_from_env(monkeypatch):
    monkeypatch.setenv("CASCADE_ONLINE_STORE__TYPE", "redis")
    monkeypatch.setenv("CASCADE_ONLINE_STORE__PORT", "6390")
    s = FeaturesSettings()
    assert isinstance(s.online_store, RedisStoreConfig) and s.online_store.port == 6390
    assert (s.port, s.metrics_port, s.feature_service) == (50053, 9103, "ranker_v1")
    monkeypatch.setenv("CASCADE_ONLINE_STORE__TYPE", "memcached")
    with pytest.raises(ValueError, match="online_store"):
        FeaturesSettings()
