"""Retrieval service settings (``CASCADE_`` environment variables)."""

from __future__ import annotations

from pydantic import Field

from cascade_platform.settings import ServiceSettings

MAX_CANDIDATES = 2000


class RetrievalSettings(ServiceSettings):
    port: int = Field(50052, ge=0, le=65535, description="gRPC port; 0 picks a free port.")
    metrics_port: int = Field(9102, ge=0, le=65535, description="Prometheus /metrics HTTP port; 0 disables.")
    preload_versions: list[str] = Field(
        default_factory=list,
        description="Extra registry versions served besides model_version (JSON list), e.g. for A/B arms.",
    )
    max_exclude_ids: int = Field(10_000, ge=0, description="Most exclude_item_ids accepted per request.")
