"""Router settings (environment, prefix ``CASCADE_``), validated at start-up.

The request budget is split per stage: each downstream call gets ``min(stage timeout, what is left of
the request deadline)``, and the request deadline is ``min(caller deadline, now + request_budget_s)``.
Stage timeouts need not sum to the budget: they stop one slow stage from eating the time of the
next, and ranking (last) may use whatever its predecessors left.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from cascade_platform.auth import AuthConfig
from cascade_platform.ratelimit import RateLimitConfig
from cascade_platform.settings import ServiceSettings
from cascade_platform.shedding import SheddingConfig
from pydantic import BaseModel, Field, SecretStr


class ExposureSettings(BaseModel):
    """Exposure logging to Kafka (``CASCADE_EXPOSURES__*``); off while ``bootstrap_servers`` is empty."""

    bootstrap_servers: str = Field("", description="host:port[,host:port...]; '' disables exposure logging.")
    topic: str = Field("exposures", min_length=1, description="Kafka topic of the exposure events.")
    queue_size: int = Field(
        10_000, ge=1, le=10_000_000, description="Bounded in-memory queue; events beyond it are dropped."
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.bootstrap_servers.strip())

    def client_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.sasl_mechanism:
            kw["sasl_mechanism"] = self.sasl_mechanism
            kw["sasl_plain_username"] = self.sasl_username
            kw["sasl_plain_password"] = self.sasl_password.get_secret_value() if self.sasl_password else None
        if self.ssl_cafile:
            kw["ssl_cafile"] = str(self.ssl_cafile)
        return kw


class RouterSettings(ServiceSettings):
    port: int = Field(50051, ge=0, le=65535, description="gRPC port of RecommendationService.")
    metrics_port: int = Field(9101, ge=0, le=65535, description="Prometheus /metrics HTTP port; 0 disables.")
    retrieval_target: str = Field(
        "127.0.0.1:50052", min_length=1, description="Candidate retrieval gRPC target."
    )
    features_target: str = Field("127.0.0.1:50053", min_length=1, description="Feature serving gRPC target.")
    ranking_target: str = Field("127.0.0.1:50054", min_length=1, description="Ranking gRPC target.")
    request_budget_s: float = Field(
        0.3, gt=0, le=60, description="Whole-request deadline when the caller's is longer or unset."
    )
    retrieval_timeout_s: float = Field(0.12, gt=0, le=60, description="Deadline of the Retrieve call.")
    features_timeout_s: float = Field(0.1, gt=0, le=60, description="Deadline of the GetFeatures call.")
    ranking_timeout_s: float = Field(0.15, gt=0, le=60, description="Deadline of the Rank call.")
    num_candidates: int = Field(
        200, ge=1, le=2000, description="Candidates asked from retrieval per request."
    )
    feature_service: str = Field("", description="Feast FeatureService name sent to features ('' = default).")
    experiments_file: Path | None = Field(
        None,
        description="YAML experiment config (experiments, holdout, shadow), hot-reloaded; unset = 'control'.",
    )
    experiments_poll_s: float = Field(
        1.0, gt=0, le=3600, description="How often the experiment file is checked for changes."
    )
    audit_log: Path | None = Field(
        None,
        description="JSON-lines audit log of experiment-config loads and reloads (applied or rejected); "
        "unset = the audit records go to the structured log only (event: audit).",
    )
    exposures: ExposureSettings = Field(default_factory=ExposureSettings)
    batch_predictions: str = Field(
        "",
        description="Batch top-K lists: redis://host:port/db or a parquet path ('' = off). "
        "See cascade_pipelines.batch_predict.",
    )
    batch_mode: Literal["fallback", "cache"] = Field(
        "fallback",
        description="fallback: serve batch lists when retrieval is down; cache: also answer from them "
        "first for users on the default ranker (degraded=false).",
    )
    batch_timeout_s: float = Field(0.05, gt=0, le=10, description="Redis lookup timeout of a batch list.")
    auth: AuthConfig = Field(
        default_factory=AuthConfig, description="Client authentication (CASCADE_AUTH__*; default none)."
    )
    rate_limit: RateLimitConfig = Field(
        default_factory=RateLimitConfig, description="Per-client token buckets (CASCADE_RATE_LIMIT__*)."
    )
    shedding: SheddingConfig = Field(
        default_factory=SheddingConfig, description="In-flight bounds: shrink, then refuse (CASCADE_SHEDDING__*)."
    )
