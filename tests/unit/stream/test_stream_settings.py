"""Worker and Kafka settings from the environment: group timings, SASL/TLS, failing fast."""

from __future__ import annotations

import pytest
from cascade_platform.settings import load_settings
from cascade_stream.decode import Rules
from cascade_stream.settings import KafkaConfig, KafkaSettings
from cascade_stream.worker_settings import WorkerSettings
from pydantic import ValidationError


def test_defaults_suit_tansu_and_commit_manually(monkeypatch):
    monkeypatch.delenv("CASCADE_KAFKA__BOOTSTRAP_SERVERS", raising=False)
    s = WorkerSettings()
    kw = s.kafka.consumer("g")
    assert (kw["session_timeout_ms"], kw["heartbeat_interval_ms"], kw["max_poll_interval_ms"]) == (
        6000,
        1000,
        6000,
    )
    assert kw["enable_auto_commit"] is False and kw["auto_offset_reset"] == "earliest"
    assert s.kafka.producer()["acks"] == "all"
    assert s.metrics_port == 9105 and s.roles == ["users", "items"]
    assert s.topics.events == "user-events" and s.topics.dlq == "user-events.dlq"
    assert Rules.from_settings(s, "user_id") == Rules("user_id", 65536, 3_600_000, 300_000)


def test_environment_configures_a_sasl_ssl_cluster(monkeypatch, tmp_path):
    ca = tmp_path / "ca.pem"
    monkeypatch.setenv("CASCADE_KAFKA__BOOTSTRAP_SERVERS", "k1:9093,k2:9093")
    monkeypatch.setenv("CASCADE_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("CASCADE_KAFKA__SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("CASCADE_KAFKA__SASL_USERNAME", "cascade")
    monkeypatch.setenv("CASCADE_KAFKA__SASL_PASSWORD", "s3cret")
    monkeypatch.setenv("CASCADE_KAFKA__SSL_CAFILE", str(ca))
    monkeypatch.setenv("CASCADE_KAFKA__SESSION_TIMEOUT_MS", "45000")
    monkeypatch.setenv("CASCADE_KAFKA__HEARTBEAT_INTERVAL_MS", "3000")
    monkeypatch.setenv("CASCADE_ROLES", '["items"]')
    s = WorkerSettings()
    kw = s.kafka.consumer("g")
    assert kw["bootstrap_servers"] == ["k1:9093", "k2:9093"]
    assert (kw["security_protocol"], kw["sasl_mechanism"]) == ("SASL_SSL", "SCRAM-SHA-512")
    assert (kw["sasl_plain_username"], kw["sasl_plain_password"]) == ("cascade", "s3cret")
    assert kw["ssl_cafile"] == str(ca) and kw["session_timeout_ms"] == 45000
    assert s.roles == ["items"]
    assert "s3cret" not in repr(s.kafka)
    assert KafkaSettings().kafka.bootstrap_servers == "k1:9093,k2:9093"


def test_inconsistent_kafka_settings_are_rejected():
    with pytest.raises(ValidationError, match="needs sasl_mechanism"):
        KafkaConfig(security_protocol="SASL_SSL")
    with pytest.raises(ValidationError, match="needs sasl_username and sasl_password"):
        KafkaConfig(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN")
    with pytest.raises(ValidationError, match="heartbeat_interval_ms must be below session_timeout_ms"):
        KafkaConfig(session_timeout_ms=1000, heartbeat_interval_ms=1000)


def test_bad_environment_exits_naming_the_variable(monkeypatch, capsys):
    monkeypatch.setenv("CASCADE_KAFKA__SECURITY_PROTOCOL", "TLS")
    with pytest.raises(SystemExit) as exc:
        load_settings(WorkerSettings)
    assert exc.value.code == 2
    assert "CASCADE_KAFKA__SECURITY_PROTOCOL" in capsys.readouterr().err
