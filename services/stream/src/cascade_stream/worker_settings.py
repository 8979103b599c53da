"""Settings of the stream feature worker (env prefix ``CASCADE_``, nested with ``__``), failing fast."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from cascade_features.config import DEFAULT_PROJECT, OnlineStoreConfig, SqliteStoreConfig
from cascade_platform.settings import ServiceSettings
from pydantic import Field, model_validator

from cascade_stream.settings import KafkaConfig, TopicConfig


class WorkerSettings(ServiceSettings):
    """The stream feature worker (``python -m cascade_stream.worker``)."""

    metrics_port: int = Field(9105, ge=0, le=65535, description="Prometheus /metrics HTTP port; 0 disables.")
    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    topics: TopicConfig = Field(default_factory=TopicConfig)
    group_id: str = Field("cascade-stream", min_length=1, description="Consumer group prefix.")
    roles: list[Literal["users", "items"]] = Field(
        default_factory=lambda: ["users", "items"],
        description="Pipelines this process runs (split them across deployments to scale separately).",
    )
    create_topics: bool = Field(True, description="Create missing topics at start-up (local, tests).")
    online_store: OnlineStoreConfig = Field(default_factory=SqliteStoreConfig)
    feast_project: str = Field(DEFAULT_PROJECT, pattern=r"^[A-Za-z0-9_]{1,64}$")
    feast_registry_path: Path | None = Field(None, description="Feast registry file (default <data>/feast).")
    feast_apply: bool = Field(True, description="Register the stream feature views at start-up.")
    offline_dir: Path | None = Field(None, description="Offline tables of the stream views (default <data>).")
    writer: Literal["online_store", "write_to_online_store", "push"] = Field(
        "online_store", description="How rows reach the online store (see cascade_stream.writer)."
    )
    items_path: Path | None = Field(
        None,
        description="Catalog parquet (item_id, category); default: the "
        "served registry version's items.parquet.",
    )
    poll_timeout_ms: int = Field(50, ge=1, description="Longest wait for the next micro-batch.")
    max_event_bytes: int = Field(64 * 1024, ge=256)
    max_lateness_s: float = Field(3600.0, gt=0)
    max_future_s: float = Field(300.0, ge=0)
    write_retry_s: float = Field(1.0, gt=0, description="Pause before retrying a failed store write.")

    @model_validator(mode="after")
    def _check_roles(self) -> "WorkerSettings":
        if not self.roles:
            raise ValueError("roles: name at least one of users, items")
        return self
