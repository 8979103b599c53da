"""Settings of the feature service (env prefix ``CASCADE_``, nested with ``__``).

Example: ``CASCADE_ONLINE_STORE__TYPE=redis CASCADE_ONLINE_STORE__HOST=redis``.
"""

from __future__ import annotations

from pydantic import Field

from cascade_features.config import DEFAULT_PROJECT, OnlineStoreConfig, SqliteStoreConfig
from cascade_features.definitions import DEFAULT_FEATURE_SERVICE
from cascade_platform.settings import ServiceSettings


class FeaturesSettings(ServiceSettings):
    port: int = Field(50053, ge=0, le=65535, description="gRPC port; 0 picks a free port.")
    metrics_port: int = Field(9103, ge=0, le=65535, description="Prometheus /metrics HTTP port; 0 disables.")
    online_store: OnlineStoreConfig = Field(default_factory=SqliteStoreConfig,
                                            description="Feast online store the fast reader reads.")
    feast_project: str = Field(DEFAULT_PROJECT, pattern=r"^[A-Za-z0-9_]{1,64}$")
    feature_service: str = Field(DEFAULT_FEATURE_SERVICE,
                                 description="Feast FeatureService served when a request names none.")
    max_items: int = Field(2000, ge=1, description="Most item_ids accepted in one GetFeatures request.")
