"""Gateway settings from the environment (prefix ``CASCADE_``), failing fast on bad values."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CASCADE_", extra="ignore", validate_default=True)

    host: str = Field("127.0.0.1", description="HTTP bind address (0.0.0.0 in containers).")
    port: int = Field(8080, ge=1, le=65535, description="HTTP port.")
    router_target: str = Field("127.0.0.1:50051", min_length=1, description="A/B router gRPC target.")
    request_timeout_s: float = Field(1.0, gt=0, le=60, description="Deadline of each Recommend call.")
    health_timeout_s: float = Field(0.5, gt=0, le=60, description="Deadline of the router health check.")
    log_level: str = Field("INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    log_json: bool = True
