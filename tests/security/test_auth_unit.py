"""Unit tests of the credential checks: API key hashing and lookup, JWT verification against a JWKS
file generated here (RSA), the internal service token, file rotation, bounded client labels."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import jwt
import pytest
from cascade_platform import auth
from cascade_platform.auth import (
    ApiKeyAuthenticator,
    AuthConfig,
    AuthFailure,
    ClientLabels,
    JwtAuthenticator,
    JwtConfig,
    KeyTable,
    ServiceTokenAuthenticator,
    hash_api_key,
    new_api_key,
)
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from pydantic import ValidationError

pytestmark = pytest.mark.security

ISS, AUD = "https://idp.example.test/", "cascade-recommend"


def run(coro):
    return asyncio.run(coro)


def bump(path: Path, text: str) -> None:
    """Rewrite a watched file so its signature certainly changes (mtime granularity varies)."""
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))


# -- API keys ----------------------------------------------------------------------------------------


def test_scrypt_and_sha256_hashes_verify_only_their_key() -> None:
    k1, k2 = new_api_key(), new_api_key()
    table = KeyTable({"alpha": [hash_api_key(k1)], "beta": [hash_api_key(k2, "sha256")]})
    assert table.verify(k1) == "alpha"
    assert table.verify(k2) == "beta"
    assert table.verify(k1[:-1] + ("A" if k1[-1] != "A" else "B")) is None  # same key id, wrong secret
    assert table.verify(new_api_key()) is None
    assert table.verify("") is None


def test_hashes_are_salted_and_never_contain_the_secret() -> None:
    k = new_api_key()
    h1, h2 = hash_api_key(k), hash_api_key(k)
    assert h1 != h2  # fresh salt each time
    secret = k.split("_", 2)[2]
    assert secret not in h1 and secret not in h2
    assert KeyTable({"c": [h1]}).verify(k) == KeyTable({"c": [h2]}).verify(k) == "c"
    with pytest.raises(ValueError, match="sha256"):
        hash_api_key("not-a-generated-key")  # scrypt needs the key id of a generated key


@pytest.mark.parametrize(
    "doc, msg",
    [
        ("- a\n- b\n", "must map"),
        ("'bad id!': sha256:00\n", "bad client id"),
        ("c: md5:abcd\n", "unknown hash format"),
        ("c: sha256:abcd\n", "64 hex"),
        ("c: scrypt$abc$1\n", "scrypt"),
        ("c: {x: 1}\n", "expected a hash"),
    ],
)
def test_keys_file_errors_name_the_problem(doc: str, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        KeyTable.parse(doc.encode())


def test_api_key_authenticator_headers_errors_and_rotation(tmp_path: Path) -> None:
    old, new = new_api_key(), new_api_key()
    keys = tmp_path / "keys.yaml"
    keys.write_text(f"clients:\n  storefront: {json.dumps(hash_api_key(old))}\n")
    a = ApiKeyAuthenticator(keys, poll_s=0.01)
    assert run(a.authenticate({"authorization": f"Bearer {old}"})) == "storefront"
    assert run(a.authenticate({"x-api-key": old})) == "storefront"
    with pytest.raises(AuthFailure, match="missing credential") as e:
        run(a.authenticate({}))
    assert e.value.reason == "missing" and e.value.grpc_code_name == "UNAUTHENTICATED"
    with pytest.raises(AuthFailure, match="unknown API key"):
        run(a.authenticate({"x-api-key": new}))
    # Rotation: the new key is added next to the old one (both valid), then the old one is dropped.
    bump(keys, f"storefront:\n  - {json.dumps(hash_api_key(old))}\n  - {json.dumps(hash_api_key(new, 'sha256'))}\n")
    time.sleep(0.02)
    assert run(a.authenticate({"x-api-key": new})) == "storefront"
    assert run(a.authenticate({"x-api-key": old})) == "storefront"
    bump(keys, f"storefront: {json.dumps(hash_api_key(new, 'sha256'))}\n")
    time.sleep(0.02)
    with pytest.raises(AuthFailure, match="unknown API key"):
        run(a.authenticate({"x-api-key": old}))  # a cached verification does not survive the change
    # A broken file after a change keeps the last good keys.
    bump(keys, "storefront: [unclosed\n")
    time.sleep(0.02)
    assert run(a.authenticate({"x-api-key": new})) == "storefront"


def test_wrong_secrets_for_a_known_key_id_are_limited_and_never_evict_a_good_key(tmp_path: Path) -> None:
    good = new_api_key()
    keys = tmp_path / "keys.yaml"
    keys.write_text(f"clients:\n  storefront: {json.dumps(hash_api_key(good))}\n")
    a = ApiKeyAuthenticator(keys, poll_s=60)
    a.CACHE = 1  # one cached key: any cached miss would evict it
    a.MISS_RATE_PER_S = 0.0  # no refill while the test runs (each scrypt takes a while here)
    assert run(a.authenticate({"x-api-key": good})) == "storefront"
    key_id = good.split("_")[1]
    hashed = []
    real_verify = KeyTable.verify

    def counting_verify(self, key):  # noqa: ANN001
        hashed.append(key)
        return real_verify(self, key)

    KeyTable.verify = counting_verify
    try:
        for i in range(int(a.MISS_BURST) + 5):
            with pytest.raises(AuthFailure, match="unknown API key"):
                run(a.authenticate({"x-api-key": f"cas_{key_id}_wrong-secret-guess-{i:06d}"}))
        assert len(hashed) == int(a.MISS_BURST)  # beyond the burst: refused without hashing
        assert run(a.authenticate({"x-api-key": good})) == "storefront"  # still cached: no eviction
        assert len(hashed) == int(a.MISS_BURST)
    finally:
        KeyTable.verify = real_verify


def test_a_key_revoked_while_its_slow_check_runs_is_not_cached(tmp_path: Path) -> None:
    key = new_api_key()
    keys = tmp_path / "keys.yaml"
    keys.write_text(f"clients:\n  storefront: {json.dumps(hash_api_key(key))}\n")
    a = ApiKeyAuthenticator(keys, poll_s=0.0)
    real_verify = KeyTable.verify

    def verify_then_revoke(self, k):  # noqa: ANN001 - the reload lands while scrypt runs
        out = real_verify(self, k)
        bump(keys, "clients:\n  other: " + json.dumps(hash_api_key(new_api_key(), "sha256")) + "\n")
        return out

    KeyTable.verify = verify_then_revoke
    try:
        assert run(a.authenticate({"x-api-key": key})) == "storefront"  # it was valid when checked
    finally:
        KeyTable.verify = real_verify
    with pytest.raises(AuthFailure, match="unknown API key"):
        run(a.authenticate({"x-api-key": key}))  # not served from a cache entry of the old file


def test_auth_config_validates_mode_requirements(tmp_path: Path) -> None:
    assert AuthConfig().mode == "none"
    with pytest.raises(ValidationError, match="api_keys_file"):
        AuthConfig(mode="api_key")
    with pytest.raises(ValidationError, match="jwks_file"):
        AuthConfig(mode="jwt", jwt=JwtConfig(issuer=ISS, audience=AUD))
    with pytest.raises(ValidationError, match="not allowed"):
        JwtConfig(algorithms=["RS256", "HS256"])
    with pytest.raises(ValidationError, match="not allowed"):
        JwtConfig(algorithms=["none"])


# -- JWT ---------------------------------------------------------------------------------------------------


class Idp:
    """An identity provider made here: an RSA key, its JWKS file, and tokens signed with it."""

    def __init__(self, tmp: Path, kid: str = "k1") -> None:
        self.kid = kid
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.jwks_file = tmp / "jwks.json"
        self.jwks_file.write_text(json.dumps({"keys": [self.jwk()]}))

    def jwk(self, key=None, kid: str | None = None) -> dict:
        d = json.loads(RSAAlgorithm.to_jwk((key or self.key).public_key()))
        d.update(kid=kid or self.kid, use="sig", alg="RS256")
        return d

    def token(self, *, key=None, kid: str | None = None, alg: str = "RS256", **claims) -> str:
        now = int(time.time())
        body = {"iss": ISS, "aud": AUD, "sub": "storefront", "iat": now, "exp": now + 300, **claims}
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(body, key or self.key, algorithm=alg, headers={"kid": kid or self.kid})


def verifier(idp: Idp, **kw) -> JwtAuthenticator:
    return JwtAuthenticator(JwtConfig(jwks_file=idp.jwks_file, issuer=ISS, audience=AUD, leeway_s=0, **kw), 0.01)


def test_jwt_valid_token_gives_the_client_claim(tmp_path: Path) -> None:
    idp = Idp(tmp_path)
    v = verifier(idp)
    assert run(v.authenticate({"authorization": f"Bearer {idp.token()}"})) == "storefront"
    assert verifier(idp, client_id_claim="azp").verify(idp.token(azp="mobile-app")) == "mobile-app"


@pytest.mark.parametrize(
    "make, reason, msg",
    [
        (lambda idp: idp.token(exp=int(time.time()) - 60), "expired", "JWT expired"),
        (lambda idp: idp.token(aud="another-api"), "wrong_audience", "wrong audience"),
        (lambda idp: idp.token(iss="https://evil.test/"), "wrong_issuer", "wrong issuer"),
        (lambda idp: idp.token(nbf=int(time.time()) + 600), "invalid", "not valid yet"),
        (lambda idp: idp.token(exp=None), "invalid", "'exp'"),
        (lambda idp: idp.token(sub=None), "invalid", "claim 'sub'"),
        # Same kid, different private key: the signature cannot verify.
        (lambda idp: idp.token(key=rsa.generate_private_key(public_exponent=65537, key_size=2048)),
         "bad_signature", "signature does not verify"),
        (lambda idp: idp.token(kid="k-unknown"), "bad_signature", "unknown key id"),
        (lambda idp: jwt.encode({"iss": ISS, "aud": AUD, "sub": "x", "exp": int(time.time()) + 60},
                                "a-shared-secret-of-32-bytes-long!", algorithm="HS256", headers={"kid": "k1"}),
         "invalid", "'HS256' not accepted"),
        (lambda idp: "not.a.jwt", "invalid", "malformed JWT"),
    ],
)
def test_jwt_rejections_say_why(tmp_path: Path, make, reason: str, msg: str) -> None:
    idp = Idp(tmp_path)
    with pytest.raises(AuthFailure, match=msg) as e:
        verifier(idp).verify(make(idp))
    assert e.value.reason == reason


def test_jwt_unsigned_alg_none_is_refused(tmp_path: Path) -> None:
    idp = Idp(tmp_path)
    token = jwt.encode({"iss": ISS, "aud": AUD, "sub": "x", "exp": int(time.time()) + 60}, None, algorithm="none")
    with pytest.raises(AuthFailure, match="'none' not accepted"):
        verifier(idp).verify(token)
    with pytest.raises(AuthFailure, match="missing credential"):
        run(verifier(idp).authenticate({"x-api-key": "whatever"}))


def test_jwks_rotation_is_picked_up_without_restart(tmp_path: Path) -> None:
    idp = Idp(tmp_path)
    v = verifier(idp)
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = idp.token(key=new_key, kid="k2")
    with pytest.raises(AuthFailure, match="unknown key id"):
        v.verify(token)
    bump(idp.jwks_file, json.dumps({"keys": [idp.jwk(), idp.jwk(new_key, "k2")]}))
    time.sleep(0.02)
    assert v.verify(token) == "storefront"
    assert v.verify(idp.token()) == "storefront"


# -- internal service token --------------------------------------------------------------------------


def test_service_token_accepts_every_listed_token_and_sends_the_first(tmp_path: Path) -> None:
    f = tmp_path / "token"
    f.write_text("first-token-0123456789\nsecond-token-0123456789\n")
    t = ServiceTokenAuthenticator(f, 0.01)
    assert t.current() == "first-token-0123456789"
    assert run(t.authenticate({"x-cascade-service-token": "second-token-0123456789"})) == "service"
    assert run(t.authenticate({"authorization": "Bearer first-token-0123456789"})) == "service"
    with pytest.raises(AuthFailure, match="wrong service credential"):
        run(t.authenticate({"x-cascade-service-token": "first-token-012345678X"}))
    with pytest.raises(AuthFailure, match="missing service credential"):
        run(t.authenticate({}))
    with pytest.raises(ValueError, match="at least 16"):
        auth._parse_tokens(b"short\n")


# -- misc ----------------------------------------------------------------------------------------------


def test_client_labels_are_bounded() -> None:
    labels = ClientLabels(3, known=["storefront"])
    got = [labels.label(f"c{i}") for i in range(10)]
    assert got[:2] == ["c0", "c1"] and set(got[2:]) == {"other"}
    assert labels.label("storefront") == "storefront" and labels.label("c1") == "c1"


def test_hash_key_cli_prints_a_working_key_and_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert auth.main(["hash-key", "--client", "storefront"]) == 0
    key, line = capsys.readouterr().out.strip().splitlines()
    assert key.startswith("cas_") and line.startswith("storefront: ")
    assert KeyTable.parse(line.encode()).verify(key) == "storefront"
    assert auth.main(["service-token"]) == 0
    assert len(capsys.readouterr().out.strip()) >= 32
