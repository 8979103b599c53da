"""Co-located mode settings: the router's settings plus what the in-process stages need.

The downstream ``*_target`` settings of the router are ignored (nothing is called over the network);
``*_timeout_s`` are unused too: the request budget (``CASCADE_REQUEST_BUDGET_S``) still applies.
"""

from __future__ import annotations

from cascade_features.config import DEFAULT_PROJECT, OnlineStoreConfig, SqliteStoreConfig
from cascade_ranking.backends.base import BackendConfig, OnnxRuntimeConfig
from cascade_router.settings import RouterSettings
from pydantic import Field


class ColocatedSettings(RouterSettings):
    port: int = Field(50055, ge=0, le=65535, description="gRPC port of RecommendationService.")
    metrics_port: int = Field(9105, ge=0, le=65535, description="Prometheus /metrics HTTP port; 0 disables.")
    online_store: OnlineStoreConfig = Field(
        default_factory=SqliteStoreConfig, description="Feast online store read by the features stage."
    )
    feast_project: str = Field(DEFAULT_PROJECT, pattern=r"^[A-Za-z0-9_]{1,64}$")
    backend: BackendConfig = Field(default=OnnxRuntimeConfig(), description="Ranker backend table entry.")
    preload_versions: list[str] = Field(
        default_factory=list,
        description="Extra ranker versions kept loaded (JSON list) for experiment variants.",
    )
