"""Service settings from the environment (prefix ``CASCADE_``; nested with ``__``), failing fast.

Example: ``CASCADE_PORT=50052 CASCADE_ONLINE_STORE__TYPE=redis``. A bad value stops the process at
start-up with one line per problem naming the environment variable to fix.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from cascade_platform.auth import InternalAuthConfig
from cascade_platform.tls import TlsConfig


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CASCADE_", env_nested_delimiter="__", extra="ignore", validate_default=True
    )

    host: str = Field("127.0.0.1", description="Interface the gRPC server binds (0.0.0.0 in containers).")
    port: int = Field(0, ge=0, le=65535, description="gRPC port; 0 picks a free port.")
    metrics_port: int = Field(0, ge=0, le=65535, description="Prometheus /metrics HTTP port; 0 disables.")
    artifacts_dir: Path = Field(Path("artifacts"), description="Root of the model registry.")
    model_version: str = Field("latest", description="Registry version to serve ('latest' = LATEST).")
    log_level: str = Field("INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    log_json: bool = True
    otlp_endpoint: str | None = Field(None, description="OTLP/gRPC collector; unset = tracing off.")
    trace_file: Path | None = Field(None, description="Write finished spans as JSON lines (tests, demos).")
    drain_seconds: float = Field(5.0, ge=0, description="Grace period for in-flight RPCs on SIGTERM.")
    grpc_max_connection_age_s: float | None = Field(
        None, gt=0, description="Server max connection age so client-side round_robin sees new pods."
    )
    grpc_max_concurrent_rpcs: int | None = Field(None, gt=0)
    internal_auth: InternalAuthConfig = Field(
        default_factory=InternalAuthConfig,
        description="Service token required from callers of internal services (CASCADE_INTERNAL_AUTH__TOKEN_FILE).",
    )
    tls: TlsConfig = Field(default_factory=TlsConfig, description="Server mTLS (CASCADE_TLS__*).")
    event_loop: Literal["uvloop", "asyncio"] = Field(
        "uvloop", description="Event loop implementation: uvloop (less CPU per RPC) or the stdlib's asyncio."
    )


S = TypeVar("S", bound=BaseSettings)


def load_settings(cls: type[S], **overrides) -> S:
    """Build settings or exit(2) with a message that names each variable to fix."""
    try:
        return cls(**overrides)
    except ValidationError as e:
        prefix = cls.model_config.get("env_prefix", "")
        lines = [f"invalid configuration for {cls.__name__}:"]
        for err in e.errors():
            var = prefix + "__".join(str(p) for p in err["loc"]).upper()
            lines.append(f"  {var}: {err['msg']} (got {err.get('input')!r})")
        print("\n".join(lines), file=sys.stderr)
        raise SystemExit(2) from None
