"""A test token service for a registry with Bearer token auth (distribution's token spec).

Stdlib http.server in a thread on a free loopback port; JWTs are signed RS256 with the
``cryptography`` package. The JWT header carries ``x5c`` = [the self-signed certificate],
and the same certificate is written to ``root_cert`` for the registry's ``rootcertbundle``.

    with TokenServer(users={"alice": "pw"}) as ts:
        with LocalRegistry(token_auth=ts.registry_auth()) as reg:
            ...
        ts.token_requests()   # recorded requests (never the password)

Policy (``policy(user, type, name) -> set of actions``; ``user`` is None for anonymous):
the default lets "alice" pull, push and delete anywhere, "reader" only pull, and anyone
(anonymous included) pull repositories under ``public/``. A request with wrong
credentials gets 401; a scope the user may not have is left out of the token (as the
spec says), so the registry answers ``insufficient_scope``.

Identity tokens: ``TokenServer(refresh_tokens={"rt-...": "alice"})`` also answers
``POST /token`` with the OAuth2 refresh-token grant docker uses for them
(``rotate_refresh_tokens=True``: each answer hands out a new one and retires the old).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

__all__ = ["REGISTRY_LEEWAY", "TokenRequest", "TokenServer", "default_policy"]

Policy = Callable[[str | None, str, str], set[str]]


def default_policy(user: str | None, type_: str, name: str) -> set[str]:
    if type_ != "repository":
        return {"*"} if user == "alice" and type_ == "registry" else set()
    if user == "alice":
        return {"pull", "push", "delete"}
    if user == "reader":
        return {"pull"}
    if name.startswith("public/"):
        return {"pull"}
    return set()


@dataclass(frozen=True)
class TokenRequest:
    """One request the token service received. The password is never recorded."""

    path: str
    query: tuple[tuple[str, str], ...]
    had_authorization: bool
    user: str | None  # the username when the credentials were right, else None
    status: int
    # "POST": the OAuth2 refresh-token grant; ``query`` then holds the form fields, without
    # the refresh token itself.
    method: str = "GET"

    @property
    def scopes(self) -> list[str]:
        return [v for k, v in self.query if k == "scope"]

    def param(self, key: str) -> str | None:
        return next((v for k, v in self.query if k == key), None)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# distribution 2.8.2 accepts a token until `exp + 60 s` (clock-skew leeway; measured:
# exp = now - 59 accepted, now - 61 refused with error="invalid_token").
REGISTRY_LEEWAY = 60


class TokenServer:
    """Issues registry tokens. ``expires_in`` is what the answer announces to the client.
    ``accepted_for`` (seconds), when set, is how long the registry will really accept the
    token (up to one second more): the JWT's ``exp`` is then backdated by the registry's
    60 s leeway. Without it,
    ``exp = now + expires_in`` (the registry accepts it 60 s longer)."""

    PATH = "/token"

    def __init__(
        self,
        users: Mapping[str, str] | None = None,
        *,
        service: str = "test-registry",
        issuer: str = "test-issuer",
        policy: Policy = default_policy,
        expires_in: int = 300,
        accepted_for: int | None = None,
        refresh_tokens: Mapping[str, str] | None = None,
        rotate_refresh_tokens: bool = False,
    ) -> None:
        self.users = dict(users or {})
        # identity tokens (OAuth2 refresh tokens) -> user, for `POST /token` with
        # grant_type=refresh_token. With rotation each answer carries a new refresh token
        # and the one used stops working.
        self.refresh_tokens = dict(refresh_tokens or {})
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.service = service
        self.issuer = issuer
        self.policy = policy
        self.expires_in = expires_in
        self.accepted_for = accepted_for
        self._requests: list[TokenRequest] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._tmp: Path | None = None
        self.root_cert: Path = Path()
        self.port = 0
        self.realm = ""
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._cert = self._self_signed(self._key)
        self._x5c = base64.b64encode(self._cert.public_bytes(serialization.Encoding.DER)).decode()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> "TokenServer":
        if self._server is not None:
            raise RuntimeError("TokenServer already started")
        self._tmp = Path(tempfile.mkdtemp(prefix="ocimodel-tokenserver-"))
        self.root_cert = self._tmp / "root.crt"
        self.root_cert.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))
        server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        server.daemon_threads = True
        self._server = server
        self.port = server.server_address[1]
        self.realm = f"http://127.0.0.1:{self.port}{self.PATH}"
        self._thread = threading.Thread(target=server.serve_forever, name="token-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._tmp is not None:
            for child in self._tmp.iterdir():
                child.unlink()
            self._tmp.rmdir()
            self._tmp = None

    def __enter__(self) -> "TokenServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- for tests -------------------------------------------------------------------------

    def registry_auth(self) -> dict[str, str]:
        """The ``token_auth`` argument of LocalRegistry for this server."""
        if self._server is None:
            raise RuntimeError("start the TokenServer first")
        return {
            "realm": self.realm,
            "service": self.service,
            "issuer": self.issuer,
            "rootcertbundle": str(self.root_cert),
        }

    def token_requests(self) -> list[TokenRequest]:
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    def issue(self, subject: str, access: list[dict], *, lifetime: int | None = None) -> str:
        """A signed JWT for ``subject`` granting ``access``; ``exp = now + lifetime``."""
        now = int(time.time())
        if lifetime is None:
            if self.accepted_for is None:
                lifetime = self.expires_in
            else:
                lifetime = self.accepted_for - REGISTRY_LEEWAY
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            # rounded up: the token lives at least `lifetime` seconds, at most one more
            "exp": math.ceil(time.time()) + lifetime,
            "nbf": now - 1,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": access,
        }
        signing_input = (
            _b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + _b64url(signature)

    # -- internals -------------------------------------------------------------------------

    @staticmethod
    def _self_signed(key: rsa.RSAPrivateKey) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ocimodel test token signer")])
        now = dt.datetime.now(dt.timezone.utc)
        return (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, crl_sign=True,
                    content_commitment=False, key_encipherment=False, data_encipherment=False,
                    key_agreement=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )

    def _authenticate(self, header: str | None) -> tuple[bool, str | None]:
        """(ok, user). No header -> anonymous (ok, None); wrong credentials -> (False, None)."""
        if not header:
            return True, None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False, None
        try:
            user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False, None
        if not sep or user not in self.users:
            return False, None
        if not secrets.compare_digest(self.users[user].encode(), password.encode()):
            return False, None
        return True, user

    def _redeem(self, refresh_token: str) -> tuple[str | None, str | None]:
        """(user, new refresh token or None) for a known refresh token; (None, None) if unknown."""
        with self._lock:
            user = next(
                (u for t, u in self.refresh_tokens.items() if secrets.compare_digest(t.encode(), refresh_token.encode())),
                None,
            )
            if user is None or not self.rotate_refresh_tokens:
                return user, None
            del self.refresh_tokens[refresh_token]
            rotated = "rt-" + secrets.token_urlsafe(24)
            self.refresh_tokens[rotated] = user
            return user, rotated

    def _grant(self, user: str | None, scopes: list[str]) -> list[dict]:
        access: dict[tuple[str, str], list[str]] = {}
        for scope_param in scopes:
            for scope in scope_param.split():
                # type:name:actions; the name may itself hold a ':' (host:port/...) -> rsplit
                head, sep, actions = scope.rpartition(":")
                type_, sep2, name = head.partition(":")
                if not sep or not sep2:
                    continue
                allowed = self.policy(user, type_, name)
                granted = [
                    a for a in actions.split(",") if a and (a in allowed or "*" in allowed)
                ]
                entry = access.setdefault((type_, name), [])
                entry.extend(a for a in granted if a not in entry)
        return [{"type": t, "name": n, "actions": a} for (t, n), a in access.items()]

    def _record(self, request: TokenRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                parts = urlsplit(self.path)
                query = tuple(parse_qsl(parts.query, keep_blank_values=True))
                header = self.headers.get("Authorization")
                if parts.path != owner.PATH:
                    owner._record(TokenRequest(parts.path, query, header is not None, None, 404))
                    self._send(404, {"error": "not found"})
                    return
                ok, user = owner._authenticate(header)
                if not ok:
                    owner._record(TokenRequest(parts.path, query, header is not None, None, 401))
                    self._send(
                        401, {"errors": [{"code": "UNAUTHORIZED", "message": "invalid credentials"}]},
                        {"WWW-Authenticate": 'Basic realm="token-service"'},
                    )
                    return
                service = next((v for k, v in query if k == "service"), None)
                if service is not None and service != owner.service:
                    owner._record(TokenRequest(parts.path, query, header is not None, user, 400))
                    self._send(400, {"error": "unknown service"})
                    return
                access = owner._grant(user, [v for k, v in query if k == "scope"])
                token = owner.issue(user or "", access)
                owner._record(TokenRequest(parts.path, query, header is not None, user, 200))
                self._send(
                    200,
                    {
                        "token": token,
                        "access_token": token,
                        "expires_in": owner.expires_in,
                        "issued_at": dt.datetime.now(dt.timezone.utc).isoformat(),
                    },
                )

            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                """The OAuth2 refresh-token grant docker uses for identity tokens: a form with
                grant_type=refresh_token, refresh_token, service, scope (space-separated),
                client_id. A bad refresh token gets 400 invalid_grant (RFC 6749 5.2)."""
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qsl(self.rfile.read(min(length, 1 << 16)).decode("utf-8", "replace"), keep_blank_values=True)
                fields = dict(form)
                recorded = tuple((k, v) for k, v in form if k != "refresh_token")  # never log a secret
                had_auth = self.headers.get("Authorization") is not None

                def answer(status: int, body: dict, user: str | None = None) -> None:
                    owner._record(TokenRequest(parts.path, recorded, had_auth, user, status, method="POST"))
                    self._send(status, body)

                if parts.path != owner.PATH:
                    answer(404, {"error": "not found"})
                elif fields.get("grant_type") != "refresh_token":
                    answer(400, {"error": "unsupported_grant_type"})
                elif not fields.get("client_id"):
                    answer(400, {"error": "invalid_request", "error_description": "client_id is required"})
                elif fields.get("service", owner.service) != owner.service:
                    answer(400, {"error": "invalid_request", "error_description": "unknown service"})
                else:
                    user, rotated = owner._redeem(fields.get("refresh_token", ""))
                    if user is None:
                        answer(400, {"error": "invalid_grant"})
                        return
                    access = owner._grant(user, [fields.get("scope", "")])
                    body = {
                        "access_token": owner.issue(user, access),
                        "token_type": "Bearer",
                        "expires_in": owner.expires_in,
                        "issued_at": dt.datetime.now(dt.timezone.utc).isoformat(),
                        "scope": fields.get("scope", ""),
                    }
                    if rotated is not None:
                        body["refresh_token"] = rotated
                    answer(200, body, user)

            def _send(self, status: int, body: dict, headers: Mapping[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        return Handler
