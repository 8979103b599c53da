"""Ranking service settings (``CASCADE_`` environment variables; backend as ``CASCADE_BACKEND__TYPE``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from cascade_platform.settings import ServiceSettings
from cascade_ranking.backends.base import BackendConfig, OnnxRuntimeConfig

MAX_ROWS = 2000


class RankingSettings(ServiceSettings):
    port: int = Field(50054, ge=0, le=65535, description="gRPC port; 0 picks a free port.")
    metrics_port: int = Field(9104, ge=0, le=65535, description="Prometheus /metrics HTTP port; 0 disables.")
    backend: BackendConfig = Field(default=OnnxRuntimeConfig(), description="Ranker backend table entry.")
    model_routing_file: Path | None = Field(
        None, description="JSON ModelRouting file (default/canary versions), polled for hot reloads."
    )
    routing_poll_s: float = Field(1.0, gt=0, description="How often the routing file is checked.")
    unload_grace_s: float = Field(
        10.0, ge=0, description="Delay before a version dropped from routing is unloaded (in-flight calls)."
    )
    preload_versions: list[str] = Field(
        default_factory=list,
        description="Extra registry versions kept loaded (JSON list), e.g. for A/B arms.",
    )
