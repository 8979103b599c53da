"""mTLS between services (off by default; the chart's ``security.mtls.enabled`` turns it on).

* Server (``CASCADE_TLS__*``): the gRPC port serves TLS with the pod's certificate and, with
  ``require_client_cert`` (default), only accepts clients presenting a certificate signed by
  ``ca_file``. Kubelet's native gRPC probes cannot speak TLS, so ``health_port`` (when set) serves
  ``grpc.health.v1`` alone in plaintext for them (nothing else is reachable on it).
* Client (``CASCADE_CLIENT_TLS__*``): every channel from :func:`cascade_platform.client.make_channel`
  verifies the server against ``ca_file`` and presents ``cert_file``/``key_file``.
  ``server_name`` overrides the name checked against the server certificate's SANs (default: the
  target's host, e.g. ``<release>-retrieval-headless``).

Files are read when the server starts / a channel is made: rotating the certificate Secret takes a
rolling restart (the chart's checksum annotation does it when the Secret name changes; cert-manager
users add a reloader).
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

import grpc
from pydantic import BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cascade_platform.auth import InternalAuthConfig, ServiceTokenAuthenticator, ServiceTokenClientInterceptor

log = logging.getLogger("cascade.tls")


class TlsConfig(BaseModel):
    enabled: bool = False
    cert_file: Path | None = Field(None, description="PEM certificate (chain) of this service.")
    key_file: Path | None = Field(None, description="PEM private key of cert_file.")
    ca_file: Path | None = Field(None, description="PEM CA bundle that peers' certificates must chain to.")
    require_client_cert: bool = Field(True, description="Server: refuse clients without a CA-signed certificate.")
    health_port: int | None = Field(
        None, ge=0, le=65535, description="Server: plaintext grpc.health.v1-only port for kubelet probes."
    )
    server_name: str = Field("", description="Client: name checked against the server certificate (SAN).")

    @model_validator(mode="after")
    def _files(self) -> "TlsConfig":
        if self.enabled:
            missing = [n for n in ("cert_file", "key_file", "ca_file") if getattr(self, n) is None]
            if missing:
                raise ValueError(f"TLS enabled but {', '.join(missing)} not set")
        return self


def server_credentials(cfg: TlsConfig) -> grpc.ServerCredentials:
    assert cfg.cert_file and cfg.key_file and cfg.ca_file
    return grpc.ssl_server_credentials(
        [(cfg.key_file.read_bytes(), cfg.cert_file.read_bytes())],
        root_certificates=cfg.ca_file.read_bytes(),
        require_client_auth=cfg.require_client_cert,
    )


def channel_credentials(cfg: TlsConfig) -> grpc.ChannelCredentials:
    assert cfg.cert_file and cfg.key_file and cfg.ca_file
    return grpc.ssl_channel_credentials(
        root_certificates=cfg.ca_file.read_bytes(),
        private_key=cfg.key_file.read_bytes(),
        certificate_chain=cfg.cert_file.read_bytes(),
    )


class ClientSecurity(BaseSettings):
    """What every outbound channel of this process uses: mTLS and the internal service token.

    Read from the same variables as the server side (``CASCADE_CLIENT_TLS__*``,
    ``CASCADE_INTERNAL_AUTH__TOKEN_FILE``), once per process.
    """

    model_config = SettingsConfigDict(env_prefix="CASCADE_", env_nested_delimiter="__", extra="ignore")

    client_tls: TlsConfig = Field(default_factory=TlsConfig)
    internal_auth: InternalAuthConfig = Field(default_factory=InternalAuthConfig)


@lru_cache(maxsize=1)
def _client_parts() -> tuple[grpc.ChannelCredentials | None, tuple[Any, ...], str]:
    sec = ClientSecurity()
    creds = channel_credentials(sec.client_tls) if sec.client_tls.enabled else None
    interceptors: tuple[Any, ...] = ()
    if sec.internal_auth.token_file is not None:
        tokens = ServiceTokenAuthenticator(sec.internal_auth.token_file, sec.internal_auth.reload_poll_s)
        interceptors = (ServiceTokenClientInterceptor(tokens),)
    return creds, interceptors, sec.client_tls.server_name


def reset_client_security() -> None:
    """Forget the cached client settings (tests that change the environment in-process)."""
    _client_parts.cache_clear()


def secure_channel(target: str, options: list[tuple[str, Any]]) -> grpc.aio.Channel:
    """An aio channel with this process's client security (plaintext and no interceptor when off)."""
    creds, interceptors, server_name = _client_parts()
    ics = list(interceptors) or None
    if creds is None:
        return grpc.aio.insecure_channel(target, options=options, interceptors=ics)
    if server_name:
        options = [*options, ("grpc.ssl_target_name_override", server_name)]
    return grpc.aio.secure_channel(target, creds, options=options, interceptors=ics)


def add_port(server: grpc.aio.Server, address: str, cfg: TlsConfig) -> int:
    if cfg.enabled:
        log.info("serving mTLS (client certificate %s)", "required" if cfg.require_client_cert else "optional")
        return server.add_secure_port(address, server_credentials(cfg))
    return server.add_insecure_port(address)


__all__ = [
    "ClientSecurity", "TlsConfig", "add_port", "channel_credentials", "reset_client_security",
    "secure_channel", "server_credentials",
]
