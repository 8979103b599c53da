"""Settings of the stream components (env prefix ``CASCADE_``, nested with ``__``), failing fast.

Kafka clients (worker, producer SDK, gateway ingestion, CLI) all build their kafka-python arguments
from :class:`KafkaConfig`; e.g. ``CASCADE_KAFKA__BOOTSTRAP_SERVERS=kafka:9093
CASCADE_KAFKA__SECURITY_PROTOCOL=SASL_SSL CASCADE_KAFKA__SASL_MECHANISM=SCRAM-SHA-512``.

This module imports only pydantic (the gateway and CLI use it without the worker's dependencies);
the worker's own settings are :class:`cascade_stream.worker_settings.WorkerSettings`.

The consumer-group timings default to values that suit the Tansu broker used locally (a group join
takes about half the session timeout there); Apache Kafka clusters may raise them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"


class TopicConfig(BaseModel):
    """Topic names: the events, their dead letters, and the events re-keyed by item for item features."""

    events: str = "user-events"
    dlq: str = "user-events.dlq"
    by_item: str = "user-events.by-item"
    partitions: int = Field(3, ge=1, description="Partitions when the worker/broker helper creates topics.")
    replication_factor: int = Field(1, ge=1)


class KafkaConfig(BaseModel):
    """Connection and client options of every kafka-python client in Cascade."""

    bootstrap_servers: str = Field(DEFAULT_BOOTSTRAP, min_length=1, description="host:port[,host:port...]")
    client_id: str = "cascade-stream"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_check_hostname: bool = True
    request_timeout_ms: int = Field(30_000, ge=1000)
    bootstrap_timeout_ms: int = Field(
        10_000, ge=100, description="How long a client waits for the first broker."
    )
    # Consumer group timings (Tansu: joins take ~session_timeout/2).
    session_timeout_ms: int = Field(6000, ge=1000)
    heartbeat_interval_ms: int = Field(1000, ge=100)
    max_poll_interval_ms: int = Field(6000, ge=1000)
    max_poll_records: int = Field(2000, ge=1)
    fetch_max_wait_ms: int = Field(50, ge=0, description="Broker wait for fetch.min.bytes (latency bound).")
    # Producer
    linger_ms: int = Field(5, ge=0)
    send_timeout_s: float = Field(10.0, gt=0, description="How long a producer waits for the broker's acks.")

    @model_validator(mode="after")
    def _check(self) -> "KafkaConfig":
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError("heartbeat_interval_ms must be below session_timeout_ms")
        if self.security_protocol.startswith("SASL") and self.sasl_mechanism is None:
            raise ValueError(f"security_protocol {self.security_protocol} needs sasl_mechanism")
        if self.sasl_mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512") and (
            not self.sasl_username or self.sasl_password is None
        ):
            raise ValueError(f"sasl_mechanism {self.sasl_mechanism} needs sasl_username and sasl_password")
        return self

    def common(self) -> dict[str, Any]:
        """kafka-python arguments shared by consumers, producers and admin clients."""
        kw: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers.split(","),
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
            "request_timeout_ms": self.request_timeout_ms,
            "bootstrap_timeout_ms": self.bootstrap_timeout_ms,
        }
        if self.sasl_mechanism:
            kw["sasl_mechanism"] = self.sasl_mechanism
            if self.sasl_username:
                kw["sasl_plain_username"] = self.sasl_username
            if self.sasl_password is not None:
                kw["sasl_plain_password"] = self.sasl_password.get_secret_value()
        if self.security_protocol in ("SSL", "SASL_SSL"):
            kw["ssl_check_hostname"] = self.ssl_check_hostname
            for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
                value = getattr(self, name)
                if value is not None:
                    kw[name] = str(value)
        return kw

    def consumer(self, group_id: str | None, **extra: Any) -> dict[str, Any]:
        """Arguments of a consumer that commits manually (never auto-commits)."""
        kw = {
            **self.common(),
            "group_id": group_id,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "session_timeout_ms": self.session_timeout_ms,
            "heartbeat_interval_ms": self.heartbeat_interval_ms,
            "max_poll_interval_ms": self.max_poll_interval_ms,
            "max_poll_records": self.max_poll_records,
            "fetch_max_wait_ms": self.fetch_max_wait_ms,
        }
        kw.update(extra)
        return kw

    def producer(self, **extra: Any) -> dict[str, Any]:
        """Arguments of a durable producer: acks from all in-sync replicas, retried sends."""
        kw = {**self.common(), "acks": "all", "linger_ms": self.linger_ms, "retries": 5}
        kw.update(extra)
        return kw


class KafkaSettings(BaseSettings):
    """Just the Kafka part of the environment: for producers living in other processes (gateway, CLI)."""

    model_config = SettingsConfigDict(
        env_prefix="CASCADE_", env_nested_delimiter="__", extra="ignore", validate_default=True
    )

    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    topics: TopicConfig = Field(default_factory=TopicConfig)
    max_event_bytes: int = Field(64 * 1024, ge=256, description="Largest accepted event payload.")
    max_lateness_s: float = Field(3600.0, gt=0, description="Oldest accepted event time, before ingestion.")
    max_future_s: float = Field(300.0, ge=0, description="Newest accepted event time, after ingestion.")
