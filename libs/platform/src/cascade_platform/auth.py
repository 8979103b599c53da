"""Authentication: client API keys or JWTs at the router, and the internal service credential.

Three pieces, all off by default (``make up`` and the tests run unauthenticated):

* **Client authentication** (:class:`AuthConfig`, ``CASCADE_AUTH__*``, used by the router):
  ``mode=api_key`` checks ``authorization: Bearer <key>`` or ``x-api-key: <key>`` against a keys file
  of *hashes* (client id -> ``scrypt$...`` or ``sha256:...``; never the keys themselves);
  ``mode=jwt`` verifies ``authorization: Bearer <jwt>`` against a JWKS *file* (signature, ``iss``,
  ``aud``, ``exp``/``nbf``) and takes the client id from a claim (``sub`` by default).
* **Internal service credential** (:class:`InternalAuthConfig`, ``CASCADE_INTERNAL_AUTH__*``, every
  service): with ``token_file`` set, retrieval/features/ranking refuse calls without
  ``x-cascade-service-token: <token>`` (or ``authorization: Bearer <token>``), and every channel made
  by :func:`cascade_platform.client.make_channel` sends it.
* :class:`AuthInterceptor`: a server-side method wrapper (:class:`~cascade_platform.interceptors.MethodInterceptor`,
  applied once per method at registration) that authenticates before the handler
  runs (``grpc.health.v1.Health`` and reflection are exempt). A refused call raises
  :class:`~cascade_core.errors.UnauthenticatedError`, which the platform interceptor turns into
  UNAUTHENTICATED with the reason (missing credential, unknown key, bad signature, expired, wrong
  audience...). The authenticated client id is in :data:`cascade_platform.context.client_id_var`
  while the handler runs (JSON logs carry it as ``client_id``).

Keys files, JWKS files and token files are re-read when they change (mtime/size/inode checked at
most every ``reload_poll_s``), so rotating the Kubernetes Secret they are mounted from needs no
restart. A file that fails to parse after a change is rejected and the previous content kept.

``python -m cascade_platform.auth hash-key --client storefront`` prints a new random key and the
line to add to the keys file; ``python -m cascade_platform.auth service-token`` prints a new internal
token. See docs/security.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import sys
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import grpc
from cascade_core.errors import UnauthenticatedError
from prometheus_client import Counter
from pydantic import BaseModel, Field, model_validator

from cascade_platform.context import client_id_var
from cascade_platform.interceptors import EXEMPT_PREFIXES, MethodInterceptor  # noqa: F401 - re-exported

log = logging.getLogger("cascade.auth")

SERVICE_TOKEN_HEADER = "x-cascade-service-token"
API_KEY_HEADER = "x-api-key"
ANONYMOUS = "anonymous"
# Methods that never need a credential: kubelet/LB health checks and server reflection.
_CLIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")

AUTH_FAILURES = Counter(
    "cascade_auth_failures_total",
    "Calls refused with UNAUTHENTICATED, by service and reason (missing, unknown_key, bad_signature, "
    "expired, wrong_audience, wrong_issuer, invalid).",
    ["service", "reason"],
)
AUTH_RELOADS = Counter(
    "cascade_auth_reloads_total",
    "Credential files (keys, JWKS, service token) re-read after a change: applied or rejected.",
    ["kind", "outcome"],
)
AUTHENTICATED = Counter(
    "cascade_authenticated_requests_total",
    "Authenticated calls by client id (bounded: clients past the label limit count as 'other').",
    ["service", "client"],
)


# -- configuration ---------------------------------------------------------------------------------


class JwtConfig(BaseModel):
    """``CASCADE_AUTH__JWT__*``."""

    jwks_file: Path | None = Field(None, description="JWKS (JSON) with the issuer's public keys, mounted from a Secret/ConfigMap.")
    issuer: str = Field("", description="Required `iss` claim.")
    audience: str = Field("", description="Required `aud` claim (this API).")
    client_id_claim: str = Field("sub", min_length=1, description="Claim holding the client id.")
    algorithms: list[str] = Field(
        default_factory=lambda: ["RS256", "ES256", "PS256", "EdDSA"],
        description="Accepted asymmetric algorithms ('none' and HMAC are never accepted).",
    )
    leeway_s: float = Field(30.0, ge=0, le=600, description="Clock skew tolerated on exp/nbf/iat.")

    @model_validator(mode="after")
    def _no_symmetric(self) -> "JwtConfig":
        bad = [a for a in self.algorithms if a.lower() == "none" or a.upper().startswith("HS")]
        if bad:
            raise ValueError(f"algorithms {bad} are not allowed: use asymmetric keys published in a JWKS")
        return self


class AuthConfig(BaseModel):
    """Client authentication at the edge (``CASCADE_AUTH__*``). ``mode=none`` (default) accepts every
    call as client ``anonymous``."""

    mode: Literal["none", "api_key", "jwt"] = "none"
    api_keys_file: Path | None = Field(
        None, description="YAML/JSON mapping client id -> key hash (or list of hashes, for rotation)."
    )
    jwt: JwtConfig = Field(default_factory=JwtConfig)
    reload_poll_s: float = Field(5.0, gt=0, le=3600, description="How often changed credential files are re-read.")
    max_client_labels: int = Field(
        100, ge=1, le=10_000, description="Distinct client ids used as metric labels; the rest are 'other'."
    )

    @model_validator(mode="after")
    def _files_for_mode(self) -> "AuthConfig":
        if self.mode == "api_key" and self.api_keys_file is None:
            raise ValueError("mode=api_key needs api_keys_file (CASCADE_AUTH__API_KEYS_FILE)")
        if self.mode == "jwt":
            missing = [n for n, v in (("jwks_file", self.jwt.jwks_file), ("issuer", self.jwt.issuer),
                                      ("audience", self.jwt.audience)) if not v]
            if missing:
                raise ValueError(f"mode=jwt needs jwt.{', jwt.'.join(missing)} (CASCADE_AUTH__JWT__*)")
        return self


class InternalAuthConfig(BaseModel):
    """The shared service credential (``CASCADE_INTERNAL_AUTH__*``). Unset ``token_file`` = off."""

    token_file: Path | None = Field(
        None,
        description="File with the service token(s), one per line: the first is sent, all are accepted "
        "(add the new token as a second line, roll, move it first, roll, drop the old one).",
    )
    reload_poll_s: float = Field(5.0, gt=0, le=3600)


# -- helpers -----------------------------------------------------------------------------------------

T = TypeVar("T")


class WatchedFile(Generic[T]):
    """A file parsed once and again whenever it changes (checked at most every ``poll_s``).

    The first load raises (misconfiguration stops the process at start-up); a later change that fails
    to parse is logged, counted and ignored: the last good content stays in force.
    """

    def __init__(self, path: Path, parse: Callable[[bytes], T], kind: str, poll_s: float) -> None:
        self.path = Path(path)
        self.kind = kind
        self.poll_s = poll_s
        self._parse = parse
        self._lock = threading.Lock()
        self._sig = self._signature()
        self._value: T = parse(self.path.read_bytes())
        self._checked = time.monotonic()
        self.version = 0

    def _signature(self) -> tuple[int, int, int]:
        st = os.stat(self.path)  # follows the ..data symlink of a Secret volume
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def get(self) -> T:
        now = time.monotonic()
        if now - self._checked < self.poll_s:
            return self._value
        with self._lock:
            if now - self._checked < self.poll_s:
                return self._value
            self._checked = now
            try:
                sig = self._signature()
                if sig != self._sig:
                    self._value = self._parse(self.path.read_bytes())
                    self._sig = sig
                    self.version += 1
                    AUTH_RELOADS.labels(self.kind, "applied").inc()
                    log.info("reloaded %s from %s", self.kind, self.path, extra={"event": "auth_reload"})
            except Exception as e:  # noqa: BLE001 - keep the last good credentials
                AUTH_RELOADS.labels(self.kind, "rejected").inc()
                log.error("keeping the previous %s: %s: %s", self.kind, self.path, e,
                          extra={"event": "auth_reload_rejected"})
        return self._value


class ClientLabels:
    """Bounded metric label values: known clients and the first ``limit`` seen; others are 'other'."""

    def __init__(self, limit: int, known: Iterable[str] = ()) -> None:
        self.limit = limit
        self._seen: set[str] = set()
        for k in known:
            self.label(k)

    def label(self, client: str) -> str:
        if client in self._seen:
            return client
        if len(self._seen) < self.limit:
            self._seen.add(client)
            return client
        return "other"


def bearer(md: Mapping[str, str]) -> str | None:
    auth = md.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return None


class AuthFailure(UnauthenticatedError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# -- API keys ------------------------------------------------------------------------------------------

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 1 << 14, 8, 1
_KEY = re.compile(r"^cas_([0-9a-f]{12})_([A-Za-z0-9_-]{20,})$")


def new_api_key() -> str:
    """``cas_<key id>_<secret>``: the key id (public) finds the stored hash; the secret is 256 random bits."""
    return f"cas_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, maxmem=128 * r * (n + p + 2) * 2, dklen=32)


def hash_api_key(key: str, algo: Literal["scrypt", "sha256"] = "scrypt") -> str:
    """The at-rest form of ``key``: ``scrypt$<key id>$<n>$<r>$<p>$<salt>$<hash>`` (salted, slow; needs a
    key made by :func:`new_api_key`) or ``sha256:<hex>`` (fast; fine for random high-entropy keys)."""
    if algo == "sha256":
        return "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    m = _KEY.match(key)
    if not m:
        raise ValueError("scrypt hashes need a key made by `hash-key` (cas_<12 hex>_<secret>); use --algo sha256")
    salt = secrets.token_bytes(16)
    dk = _scrypt(m.group(2), salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    return f"scrypt${m.group(1)}${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(dk)}"


class KeyTable:
    """Parsed keys file: sha256 digests and scrypt entries by key id, each -> client id."""

    def __init__(self, clients: Mapping[str, list[str]]) -> None:
        self.clients = sorted(clients)
        self.sha256: dict[bytes, str] = {}
        self.scrypt: dict[str, tuple[str, int, int, int, bytes, bytes]] = {}
        for client, hashes in clients.items():
            for h in hashes:
                if h.startswith("sha256:"):
                    digest = bytes.fromhex(h[7:])
                    if len(digest) != 32:
                        raise ValueError(f"client {client!r}: sha256 hash must be 64 hex digits")
                    self.sha256[digest] = client
                elif h.startswith("scrypt$"):
                    parts = h.split("$")
                    if len(parts) != 7:
                        raise ValueError(f"client {client!r}: scrypt$<kid>$<n>$<r>$<p>$<salt>$<hash> expected")
                    _, kid, n, r, p, salt, dk = parts
                    self.scrypt[kid] = (client, int(n), int(r), int(p), _unb64(salt), _unb64(dk))
                else:
                    raise ValueError(f"client {client!r}: unknown hash format {h[:10]!r}... (sha256: or scrypt$)")

    @classmethod
    def parse(cls, raw: bytes) -> "KeyTable":
        import yaml

        doc = yaml.safe_load(raw.decode()) or {}
        if isinstance(doc, dict) and set(doc) == {"clients"} and isinstance(doc["clients"], dict):
            doc = doc["clients"]
        if not isinstance(doc, dict):
            raise ValueError("keys file must map client id -> hash or list of hashes")
        clients: dict[str, list[str]] = {}
        for client, v in doc.items():
            client = str(client)
            if not _CLIENT_ID.match(client):
                raise ValueError(f"bad client id {client!r} (letters, digits, . _ : @ -; at most 128)")
            hashes = [v] if isinstance(v, str) else v
            if not isinstance(hashes, list) or not all(isinstance(h, str) for h in hashes):
                raise ValueError(f"client {client!r}: expected a hash string or a list of them")
            clients[client] = hashes
        return cls(clients)

    def verify(self, key: str) -> str | None:
        """Client id of ``key``, or None. Constant-time comparisons; scrypt only for a known key id."""
        # A dict lookup by the digest: what it could leak through timing is a prefix of SHA-256 of a
        # high-entropy key, which says nothing about any key (and is constant per table size).
        client = self.sha256.get(hashlib.sha256(key.encode()).digest())
        if client is not None:
            return client
        m = _KEY.match(key)
        if m and (entry := self.scrypt.get(m.group(1))) is not None:
            client, n, r, p, salt, dk = entry
            if hmac.compare_digest(_scrypt(m.group(2), salt, n, r, p), dk):
                return client
        return None


class ApiKeyAuthenticator:
    """Keys file -> client id. Verified keys are cached in memory by their SHA-256 (bounded LRU, reset
    when the file changes), so the slow scrypt runs once per key and process."""

    CACHE = 4096
    MISS_BURST = 10.0  # wrong secrets tolerated per key id at once ...
    MISS_RATE_PER_S = 1.0  # ... then this many per second (each costs one scrypt)
    SCRYPT_THREADS = 2  # scrypt runs here, never in the default executor

    def __init__(self, path: Path, poll_s: float) -> None:
        self.file = WatchedFile(path, KeyTable.parse, "api_keys", poll_s)
        self._cache: OrderedDict[bytes, str] = OrderedDict()  # sha256(key) -> client id (hits only)
        self._cache_version = 0
        # Slow (scrypt) misses per public key id: a token bucket each, so guessing secrets for a known
        # key id costs the guesser, not the router (bounded: only key ids in the keys file get one).
        self._misses: dict[str, tuple[float, float]] = {}
        self._scrypt_pool: ThreadPoolExecutor | None = None

    @property
    def clients(self) -> list[str]:
        return self.file.get().clients

    def _miss_allowed(self, key_id: str, now: float) -> bool:
        tokens, last = self._misses.get(key_id, (self.MISS_BURST, now))
        tokens = min(self.MISS_BURST, tokens + (now - last) * self.MISS_RATE_PER_S)
        self._misses[key_id] = (tokens, now)
        return tokens >= 1.0

    def _record_miss(self, key_id: str) -> None:
        tokens, last = self._misses.get(key_id, (self.MISS_BURST, time.monotonic()))
        self._misses[key_id] = (tokens - 1.0, last)

    async def authenticate(self, md: Mapping[str, str]) -> str:
        key = bearer(md) or md.get(API_KEY_HEADER, "").strip()
        if not key:
            raise AuthFailure("missing", "missing credential: send `authorization: Bearer <api key>` or `x-api-key`")
        table = self.file.get()
        version = self.file.version  # the version of `table` (no await in between)
        if self._cache_version != version:
            self._cache.clear()
            self._misses.clear()
            self._cache_version = version
        h = hashlib.sha256(key.encode()).digest()
        client = self._cache.get(h)
        if client is not None:
            self._cache.move_to_end(h)
            return client
        m = _KEY.match(key)
        key_id = m.group(1) if m is not None else None
        if key_id is not None and key_id in table.scrypt:
            if not self._miss_allowed(key_id, time.monotonic()):
                raise AuthFailure("unknown_key", "unknown API key: it is not (or no longer) in the keys file")
            if self._scrypt_pool is None:
                self._scrypt_pool = ThreadPoolExecutor(max_workers=self.SCRYPT_THREADS, thread_name_prefix="scrypt")
            client = await asyncio.get_running_loop().run_in_executor(self._scrypt_pool, table.verify, key)
            if client is None:
                self._record_miss(key_id)
        else:
            client = table.verify(key)
        if client is None:
            raise AuthFailure("unknown_key", "unknown API key: it is not (or no longer) in the keys file")
        # Cache only what the *current* keys file says: a reload during the slow verify may have revoked it.
        if self.file.version == version == self._cache_version:
            self._cache[h] = client
            if len(self._cache) > self.CACHE:
                self._cache.popitem(last=False)
        return client


# -- JWT -------------------------------------------------------------------------------------------------


def _parse_jwks(raw: bytes) -> dict[str | None, Any]:
    import jwt

    doc = json.loads(raw)
    if isinstance(doc, dict) and "keys" not in doc and "kty" in doc:
        doc = {"keys": [doc]}
    keys = jwt.PyJWKSet.from_dict(doc).keys
    if not keys:
        raise ValueError("JWKS has no usable keys")
    out: dict[str | None, Any] = {k.key_id: k for k in keys}
    if len(keys) == 1:
        out.setdefault(None, keys[0])
    return out


class JwtAuthenticator:
    def __init__(self, cfg: JwtConfig, poll_s: float) -> None:
        assert cfg.jwks_file is not None
        self.cfg = cfg
        self.file = WatchedFile(cfg.jwks_file, _parse_jwks, "jwks", poll_s)

    def verify(self, token: str) -> str:
        import jwt

        cfg = self.cfg
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthFailure("invalid", "malformed JWT: expected header.payload.signature") from None
        alg = header.get("alg")
        if alg not in cfg.algorithms:
            raise AuthFailure("invalid", f"JWT algorithm {alg!r} not accepted (allowed: {', '.join(cfg.algorithms)})")
        keys = self.file.get()
        kid = header.get("kid")
        jwk = keys.get(kid)
        if jwk is None:
            raise AuthFailure("bad_signature", f"JWT signed by unknown key id {kid!r}: not in the JWKS")
        try:
            claims = jwt.decode(
                token,
                key=jwk.key,
                algorithms=[alg],
                audience=cfg.audience,
                issuer=cfg.issuer,
                leeway=cfg.leeway_s,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthFailure("expired", "JWT expired (exp is in the past): get a new token") from None
        except jwt.ImmatureSignatureError:
            raise AuthFailure("invalid", "JWT not valid yet (nbf/iat in the future)") from None
        except jwt.InvalidAudienceError:
            raise AuthFailure("wrong_audience", f"JWT has the wrong audience: expected aud {cfg.audience!r}") from None
        except jwt.InvalidIssuerError:
            raise AuthFailure("wrong_issuer", f"JWT has the wrong issuer: expected iss {cfg.issuer!r}") from None
        except jwt.InvalidSignatureError:
            raise AuthFailure("bad_signature", "JWT signature does not verify against the JWKS") from None
        except jwt.MissingRequiredClaimError as e:
            raise AuthFailure("invalid", f"JWT lacks the required claim {e.claim!r}") from None
        except jwt.PyJWTError as e:
            raise AuthFailure("invalid", f"invalid JWT: {e}") from None
        client = claims.get(cfg.client_id_claim)
        if not isinstance(client, str) or not _CLIENT_ID.match(client):
            raise AuthFailure("invalid", f"JWT claim {cfg.client_id_claim!r} must hold the client id (a short string)")
        return client

    async def authenticate(self, md: Mapping[str, str]) -> str:
        token = bearer(md)
        if not token:
            raise AuthFailure("missing", "missing credential: send `authorization: Bearer <JWT>`")
        return self.verify(token)


# -- internal service token --------------------------------------------------------------------------------


def _parse_tokens(raw: bytes) -> list[str]:
    tokens = [t.strip() for t in raw.decode().splitlines() if t.strip() and not t.startswith("#")]
    if not tokens:
        raise ValueError("service token file is empty")
    if any(len(t) < 16 for t in tokens):
        raise ValueError("service tokens must be at least 16 characters")
    return tokens


class ServiceTokenAuthenticator:
    """Accepts any token in the file (rotation); :meth:`current` is the one clients send."""

    def __init__(self, path: Path, poll_s: float) -> None:
        self.file = WatchedFile(path, _parse_tokens, "service_token", poll_s)

    def current(self) -> str:
        return self.file.get()[0]

    async def authenticate(self, md: Mapping[str, str]) -> str:
        got = md.get(SERVICE_TOKEN_HEADER, "").strip() or bearer(md)
        if not got:
            raise AuthFailure("missing", f"missing service credential: internal services need `{SERVICE_TOKEN_HEADER}`")
        ok = False
        for t in self.file.get():  # no early exit: time does not tell which token matched
            ok |= hmac.compare_digest(t.encode(), got.encode())
        if not ok:
            raise AuthFailure("unknown_key", "wrong service credential: the token does not match this deployment's")
        return "service"


class ServiceTokenClientInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    """Adds ``x-cascade-service-token`` to every outbound unary call (read from the watched file)."""

    def __init__(self, tokens: ServiceTokenAuthenticator) -> None:
        self.tokens = tokens

    async def intercept_unary_unary(self, continuation, client_call_details, request):
        md = [(k, v) for k, v in (client_call_details.metadata or ()) if k != SERVICE_TOKEN_HEADER]
        md.append((SERVICE_TOKEN_HEADER, self.tokens.current()))
        details = grpc.aio.ClientCallDetails(
            client_call_details.method, client_call_details.timeout, grpc.aio.Metadata(*md),
            client_call_details.credentials, client_call_details.wait_for_ready,
        )
        return await continuation(details, request)


# -- server interceptor -------------------------------------------------------------------------------------


class Authenticator:
    """Anything with ``async authenticate(metadata) -> client id`` raising :class:`AuthFailure`."""

    authenticate: Callable[[Mapping[str, str]], Awaitable[str]]


class AuthInterceptor(MethodInterceptor):
    """Authenticates every call except health checks and reflection before its handler runs.

    Install it *after* the platform's :class:`~cascade_platform.interceptors.ServerInterceptor` (inside
    it), so refusals are counted in the RED metrics and mapped to UNAUTHENTICATED with their message.
    """

    def __init__(self, service: str, authenticator: Any, *, max_client_labels: int = 100,
                 known_clients: Iterable[str] = ()) -> None:
        self.service = service
        self.authenticator = authenticator
        self.labels = ClientLabels(max_client_labels, known_clients)

    def wrap_streaming(self, full_method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        # No streaming methods are served: refuse rather than skip authentication.
        async def refuse(request_or_iterator, context):
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "streaming methods are not served here")
        kind = "stream_stream" if handler.request_streaming else "unary_stream"
        if handler.request_streaming and not handler.response_streaming:
            kind = "stream_unary"
        return getattr(grpc, f"{kind}_rpc_method_handler")(refuse)

    def wrap_unary(self, full_method: str, inner):
        service, authenticator, labels = self.service, self.authenticator, self.labels

        async def wrapped(request, context):
            md = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
            try:
                client = await authenticator.authenticate(md)
            except AuthFailure as e:
                AUTH_FAILURES.labels(service, e.reason).inc()
                raise
            AUTHENTICATED.labels(service, labels.label(client)).inc()
            tok = client_id_var.set(client)
            try:
                return await inner(request, context)
            finally:
                client_id_var.reset(tok)

        return wrapped


def client_auth_interceptors(service: str, cfg: AuthConfig) -> list[MethodInterceptor]:
    """The edge's client authentication (empty for ``mode=none``)."""
    if cfg.mode == "none":
        return []
    if cfg.mode == "api_key":
        assert cfg.api_keys_file is not None
        a = ApiKeyAuthenticator(cfg.api_keys_file, cfg.reload_poll_s)
        log.info("client auth: API keys from %s (%d clients)", cfg.api_keys_file, len(a.clients))
        return [AuthInterceptor(service, a, max_client_labels=cfg.max_client_labels, known_clients=a.clients)]
    j = JwtAuthenticator(cfg.jwt, cfg.reload_poll_s)
    log.info("client auth: JWT iss=%s aud=%s keys from %s", cfg.jwt.issuer, cfg.jwt.audience, cfg.jwt.jwks_file)
    return [AuthInterceptor(service, j, max_client_labels=cfg.max_client_labels)]


def internal_auth_interceptors(service: str, cfg: InternalAuthConfig) -> list[MethodInterceptor]:
    """Internal services: require the service token when ``token_file`` is set."""
    if cfg.token_file is None:
        return []
    log.info("internal auth: service token required (%s)", cfg.token_file)
    return [AuthInterceptor(service, ServiceTokenAuthenticator(cfg.token_file, cfg.reload_poll_s), max_client_labels=1)]


# -- CLI ---------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cascade_platform.auth", description="Credentials for Cascade.")
    sub = p.add_subparsers(dest="cmd", required=True)
    hk = sub.add_parser("hash-key", help="make a new API key (or hash one from stdin) and print its keys-file line")
    hk.add_argument("--client", required=True, help="client id the key authenticates")
    hk.add_argument("--algo", choices=("scrypt", "sha256"), default="scrypt")
    hk.add_argument("--stdin", action="store_true", help="hash the key read from stdin instead of making one")
    sub.add_parser("service-token", help="print a new random internal service token")
    args = p.parse_args(argv)
    if args.cmd == "service-token":
        print(secrets.token_urlsafe(32))
        return 0
    if not _CLIENT_ID.match(args.client):
        p.error(f"bad client id {args.client!r}")
    key = sys.stdin.readline().strip() if args.stdin else new_api_key()
    line = f"{args.client}: {json.dumps(hash_api_key(key, args.algo))}"
    if not args.stdin:
        print(f"# API key for {args.client} (give it to the client; it is not stored anywhere):", file=sys.stderr)
        print(key)
        print("# add to the keys file (a list of hashes per client allows rotation):", file=sys.stderr)
    print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
