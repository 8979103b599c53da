"""Online-store configuration table and the Feast ``RepoConfig`` built from it.

One pydantic config per online store, selected by ``type`` (``sqlite`` | ``redis``). The same object
drives both sides of the store: Feast (``apply``/``materialize`` write through the SDK) and the
thin fast readers in :mod:`cascade_features.stores` (read the rows Feast wrote, directly).

Paths default under ``$CASCADE_DATA_DIR`` (default ``data/``): the Feast registry is
``<data>/feast/registry.db`` and the SQLite online store ``<data>/feast/online.db``.
``feature_repo/feature_store.yaml`` mirrors :func:`feast_repo_config` for the ``feast`` CLI.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Field, field_validator

DEFAULT_PROJECT = "cascade"
PROJECT_RE = re.compile(r"^[A-Za-z0-9_]{1,64}$")


def data_dir() -> Path:
    """``$CASCADE_DATA_DIR`` (default ``data``), resolved to an absolute path."""
    return Path(os.environ.get("CASCADE_DATA_DIR", "data")).resolve()


def _default_sqlite_path() -> str:
    return str(data_dir() / "feast" / "online.db")


def default_registry_path() -> str:
    return str(data_dir() / "feast" / "registry.db")


class SqliteStoreConfig(BaseModel):
    """Feast's SQLite online store (the local default): one file, one table per feature view."""

    type: Literal["sqlite"] = "sqlite"
    path: str = Field(default_factory=_default_sqlite_path)

    def feast_dict(self) -> dict[str, Any]:
        return {"type": "sqlite", "path": str(Path(self.path).resolve())}

    def describe(self) -> str:
        return f"sqlite:{self.path}"


class RedisStoreConfig(BaseModel):
    """Feast's Redis online store: one hash per entity key, one field per feature."""

    type: Literal["redis"] = "redis"
    host: str = "127.0.0.1"
    port: int = Field(default=6379, ge=1, le=65535)
    db: int = Field(default=0, ge=0)
    password: str | None = None
    # TLS (e.g. ElastiCache in-transit encryption); the chart sets CASCADE_ONLINE_STORE__SSL.
    ssl: bool = False
    # Seconds a fast-path read may take before the store counts as down.
    socket_timeout_s: float = Field(default=0.5, gt=0)

    def feast_dict(self) -> dict[str, Any]:
        conn = f"{self.host}:{self.port},db={self.db}"
        if self.password:
            conn += f",password={self.password}"
        if self.ssl:
            conn += ",ssl=true"
        # skip_dedup: every materialization writes the served version's full snapshot. Feast's
        # default dedup would keep the *old* version's values whenever the new version's rows
        # carry the same event timestamp (a retrain on the same data), silently serving stale rows.
        return {"type": "redis", "connection_string": conn, "skip_dedup": True}

    def describe(self) -> str:
        return f"{'rediss' if self.ssl else 'redis'}://{self.host}:{self.port}/{self.db}"


OnlineStoreConfig = Annotated[Union[SqliteStoreConfig, RedisStoreConfig], Field(discriminator="type")]


class FeastSettings(BaseModel):
    """Where the Feast project lives: its name, registry file and online store."""

    project: str = DEFAULT_PROJECT
    registry_path: str = Field(default_factory=default_registry_path)
    online_store: OnlineStoreConfig = Field(default_factory=SqliteStoreConfig)

    @field_validator("project")
    @classmethod
    def _check_project(cls, v: str) -> str:
        if not PROJECT_RE.match(v):
            raise ValueError(f"project {v!r}: use 1-64 letters, digits or '_'")
        return v


def feast_repo_config(settings: FeastSettings, repo_path: Path | None = None) -> Any:
    """The Feast ``RepoConfig`` for ``settings`` (feast is imported lazily: it is slow to import)."""
    from feast.repo_config import RepoConfig

    Path(settings.registry_path).parent.mkdir(parents=True, exist_ok=True)
    if isinstance(settings.online_store, SqliteStoreConfig):
        Path(settings.online_store.path).parent.mkdir(parents=True, exist_ok=True)
    return RepoConfig(
        project=settings.project,
        provider="local",
        registry={"registry_type": "file", "path": str(Path(settings.registry_path).resolve())},
        online_store=settings.online_store.feast_dict(),
        offline_store={"type": "file"},
        entity_key_serialization_version=3,
        repo_path=repo_path,
    )
