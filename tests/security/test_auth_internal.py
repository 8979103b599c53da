"""The internal service credential and mTLS, with real processes.

A retrieval process serves mTLS (client certificate required) and requires the service token; its
kubelet-style health port is plaintext. A throwaway CA and certificates are generated here. Direct
calls show each layer refusing; two routers show the outbound side: with client TLS and the token,
retrieval answers; with client TLS but no token, retrieval refuses (UNAUTHENTICATED) and the router
falls back.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cascade.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from cascade.router.v1 import router_pb2_grpc
from cascade_platform.procs import ServiceProcess, free_port, health_status
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sec_procs import build_registry, call, metric_value, scrape, start_router

pytestmark = [pytest.mark.security, pytest.mark.integration]

TOKEN = "svc-token-for-tests-0123456789abcdef"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(path: Path, key, cert: x509.Certificate) -> None:
    path.with_suffix(".key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def make_pki(d: Path) -> Path:
    """ca.crt, server.{crt,key} (SAN localhost, 127.0.0.1) and client.{crt,key}, all signed by the CA."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(_name("cascade-test-ca")).issuer_name(_name("cascade-test-ca"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    _write(d / "ca", ca_key, ca)
    for name, usage in (("server", ExtendedKeyUsageOID.SERVER_AUTH), ("client", ExtendedKeyUsageOID.CLIENT_AUTH)):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder().subject_name(_name(f"cascade-{name}")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        _write(d / name, key, cert)
    return d


@dataclass
class Secured:
    retrieval: ServiceProcess
    health_port: int
    pki: Path
    token_file: Path
    registry_root: Path
    tmp: Path

    def tls_channel(self, *, client_cert: bool = True) -> grpc.Channel:
        p = self.pki
        creds = grpc.ssl_channel_credentials(
            root_certificates=(p / "ca.crt").read_bytes(),
            private_key=(p / "client.key").read_bytes() if client_cert else None,
            certificate_chain=(p / "client.crt").read_bytes() if client_cert else None,
        )
        return grpc.secure_channel(self.retrieval.target, creds)

    def client_tls_env(self) -> dict[str, str]:
        return {
            "CASCADE_CLIENT_TLS__ENABLED": "true",
            "CASCADE_CLIENT_TLS__CA_FILE": str(self.pki / "ca.crt"),
            "CASCADE_CLIENT_TLS__CERT_FILE": str(self.pki / "client.crt"),
            "CASCADE_CLIENT_TLS__KEY_FILE": str(self.pki / "client.key"),
        }


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    tmp = tmp_path_factory.mktemp("internal")
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    reg = build_registry(tmp / "artifacts", full=True)
    token_file = tmp / "service-token"
    token_file.write_text(TOKEN + "\n")
    health_port = free_port()
    proc = ServiceProcess(
        "retrieval", "cascade_retrieval", free_port(),
        env={
            "CASCADE_ARTIFACTS_DIR": str(reg.root), "CASCADE_METRICS_PORT": "0", "CASCADE_DRAIN_SECONDS": "0.5",
            "CASCADE_INTERNAL_AUTH__TOKEN_FILE": str(token_file),
            "CASCADE_TLS__ENABLED": "true",
            "CASCADE_TLS__CA_FILE": str(pki / "ca.crt"),
            "CASCADE_TLS__CERT_FILE": str(pki / "server.crt"),
            "CASCADE_TLS__KEY_FILE": str(pki / "server.key"),
            "CASCADE_TLS__HEALTH_PORT": str(health_port),
        },
        log_path=tmp / "retrieval.log",
    ).start()
    try:
        deadline = time.monotonic() + 180  # a safety limit for a slow shared box, not a latency check
        while health_status(f"127.0.0.1:{health_port}") != "SERVING":
            if proc.proc is not None and proc.proc.poll() is not None:
                raise RuntimeError(f"retrieval exited:\n{(tmp / 'retrieval.log').read_text()[-3000:]}")
            assert time.monotonic() < deadline, (tmp / "retrieval.log").read_text()[-3000:]
            time.sleep(0.2)
        yield Secured(proc, health_port, pki, token_file, reg.root, tmp)
    finally:
        proc.stop()


def _retrieve(channel: grpc.Channel, md: tuple = ()):
    stub = retrieval_pb2_grpc.RetrievalServiceStub(channel)
    try:
        return grpc.StatusCode.OK, stub.Retrieve(retrieval_pb2.RetrieveRequest(user_id="u1", num_candidates=5),
                                                 metadata=md, timeout=30)
    except grpc.RpcError as e:
        return e.code(), e


def test_plaintext_and_certless_clients_cannot_connect(secured: Secured) -> None:
    assert health_status(secured.retrieval.target) == "UNREACHABLE"  # the gRPC port speaks TLS only
    with grpc.insecure_channel(secured.retrieval.target) as ch:
        code, _ = _retrieve(ch, (("x-cascade-service-token", TOKEN),))
        assert code == grpc.StatusCode.UNAVAILABLE
    with secured.tls_channel(client_cert=False) as ch:  # TLS, but no client certificate
        code, _ = _retrieve(ch, (("x-cascade-service-token", TOKEN),))
        assert code == grpc.StatusCode.UNAVAILABLE


def test_internal_service_requires_the_service_token(secured: Secured) -> None:
    with secured.tls_channel() as ch:
        code, err = _retrieve(ch)
        assert code == grpc.StatusCode.UNAUTHENTICATED and "missing service credential" in err.details()
        code, err = _retrieve(ch, (("x-cascade-service-token", "not-the-token-0123456789"),))
        assert code == grpc.StatusCode.UNAUTHENTICATED and "wrong service credential" in err.details()
        code, resp = _retrieve(ch, (("x-cascade-service-token", TOKEN),))
        assert code == grpc.StatusCode.OK, resp
        assert len(resp.item_ids) == 5
        code, resp = _retrieve(ch, (("authorization", f"Bearer {TOKEN}"),))
        assert code == grpc.StatusCode.OK, resp


def _router_retrieval_codes(secured: Secured, name: str, **env: str) -> dict[str, float]:
    metrics_port = free_port()
    (secured.tmp / name).mkdir()
    proc = start_router(
        secured.tmp / name, secured.registry_root,
        targets={"retrieval": secured.retrieval.target},
        CASCADE_METRICS_PORT=str(metrics_port), CASCADE_RETRIEVAL_TIMEOUT_S="10", CASCADE_REQUEST_BUDGET_S="30",
        **secured.client_tls_env(), **env,
    )
    try:
        with grpc.insecure_channel(proc.target) as ch:
            stub = router_pb2_grpc.RecommendationServiceStub(ch)
            for _ in range(2):
                code, resp = call(stub)
                assert code == grpc.StatusCode.OK, resp  # answered either way (fallback when refused)
        text = scrape(metrics_port)
        return {
            c: metric_value(text, "cascade_grpc_client_handled_total", f'code="{c}",service="router",target="retrieval"')
            for c in ("OK", "UNAUTHENTICATED")
        }
    finally:
        proc.stop()


def test_router_sends_the_token_over_mtls(secured: Secured) -> None:
    codes = _router_retrieval_codes(secured, "router-ok", CASCADE_INTERNAL_AUTH__TOKEN_FILE=str(secured.token_file))
    assert codes["OK"] >= 2 and codes["UNAUTHENTICATED"] == 0, codes


def test_router_without_the_token_is_refused_by_retrieval(secured: Secured) -> None:
    codes = _router_retrieval_codes(secured, "router-no-token")
    assert codes["UNAUTHENTICATED"] >= 1 and codes["OK"] == 0, codes
