"""Registry authentication as an httpx auth flow: Basic, and the Bearer token challenge.

A token is fetched per scope (``repository:team/model:pull`` for reads,
``...:pull,push`` for writes) and cached until shortly before it expires; a request reuses
any cached token whose grants cover it. Once a registry has sent a Bearer challenge,
tokens for new scopes are fetched *before* the request is sent, so a streamed body (which
cannot be replayed after a 401) goes out with a valid token. Concurrent requests needing
the same scope share one token fetch. With an identity token (docker's ``identitytoken``)
tokens are fetched as docker does: a POST of the OAuth2 refresh-token grant to the realm.

Credentials are held in this object only and never formatted into messages. They go to
the registry itself after it asked for Basic, or to the token realm named by the
registry's own challenge (as docker does) -- never to a host met through a redirect, and
never over plain HTTP when the registry itself is reached over HTTPS."""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass, field

import httpx

from ocimodel.errors import AuthenticationError, PermissionDenied, printable
from ocimodel.transport import deadline
from ocimodel.transport.proxies import proxy_error
from ocimodel.transport.tls import tls_failure

_CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]+))')
_REPO_PATH = re.compile(r"^/v2/(?P<name>.+?)/(?:manifests|blobs|tags|referrers)(?:/|$)")
# Tokens expire; refresh a little early so a request does not race the expiry (at most
# half the token's lifetime, so a short-lived token is still used).
_EXPIRY_MARGIN_SECONDS = 10
_DEFAULT_TOKEN_LIFETIME = 60  # the token spec's default when expires_in is absent
_MAX_CACHED_TOKENS = 64
_MAX_TOKEN_RESPONSE = 1024 * 1024
_ENV_HINT = "run `ocimodel login REGISTRY`, or set OCIMODEL_USERNAME and OCIMODEL_PASSWORD (or pass credentials)"
# docker's OAuth2 flow for identity tokens names its client; the token spec requires one.
OAUTH_CLIENT_ID = "ocimodel"


@dataclass(frozen=True)
class Credentials:
    """A username and password, and/or an identity token: the long-lived OAuth2 refresh
    token some registries hand out at login (docker's ``identitytoken``). With an identity
    token, Bearer tokens are fetched with the refresh-token grant instead of the password.
    ``source`` says where they were found (for hints), never what they are."""

    username: str
    password: str
    identity_token: str | None = None
    source: str | None = field(default=None, compare=False)

    def __repr__(self) -> str:  # never show a secret, even in a debugger or traceback
        token = ", identity_token=***" if self.identity_token else ""
        return f"Credentials(username={self.username!r}, password=***{token})"


@dataclass(frozen=True)
class Scope:
    """One resource scope of the token spec: ``repository:team/model:pull,push``."""

    type: str
    name: str
    actions: frozenset[str]

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(sorted(self.actions))}"

    @classmethod
    def parse(cls, text: str) -> Scope | None:
        head, sep, actions = text.rpartition(":")
        type_, sep2, name = head.partition(":")
        if not sep or not sep2 or not type_ or not name:
            return None
        return cls(type_, name, frozenset(a for a in actions.split(",") if a))


@dataclass
class _Token:
    value: str = field(repr=False)  # a bearer token is a secret: never in a repr or log
    # (type, name) -> actions: from the JWT's `access` claim when it has one (read without
    # verification: only a cache hint, the registry decides), else what was asked for.
    grants: dict[tuple[str, str], frozenset[str]]
    expires_at: float
    key: str = field(default="", compare=False)  # realm, service and scopes it was fetched for

    def covers(self, scopes: tuple[Scope, ...]) -> bool:
        for scope in scopes:
            granted = self.grants.get((scope.type, scope.name), frozenset())
            if "*" not in granted and not scope.actions <= granted:
                return False
        return True


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """Split ``Bearer realm="...",service="...",scope="..."`` into scheme and parameters."""
    scheme, _, rest = header.strip().partition(" ")
    params = {
        key.lower(): (quoted if quoted is not None and quoted != "" else (bare or quoted or ""))
        for key, quoted, bare in _CHALLENGE_PARAM.findall(rest)
    }
    return scheme.lower(), params


def required_scope(request: httpx.Request) -> tuple[str, frozenset[str]] | None:
    """The repository and actions a registry request needs, from its path and method."""
    match = _REPO_PATH.match(request.url.path)
    if match is None:
        return None
    actions = {"pull"} if request.method in ("GET", "HEAD") else {"pull", "push"}
    if request.method == "DELETE":
        actions = {"delete"}
    return match.group("name"), frozenset(actions)


def required_scopes(request: httpx.Request) -> tuple[Scope, ...]:
    """Every scope a request needs: its repository's, the mount source's (``from=``) for a
    cross-repository mount, ``registry:catalog:*`` for the catalog; () for ``/v2/``."""
    if request.url.path.rstrip("/") == "/v2/_catalog":
        return (Scope("registry", "catalog", frozenset({"*"})),)
    needed = required_scope(request)
    if needed is None:
        return ()
    scopes = [Scope("repository", needed[0], needed[1])]
    source = request.url.params.get("from") if request.method == "POST" else None
    if source and source != needed[0]:
        scopes.append(Scope("repository", source, frozenset({"pull"})))
    return tuple(scopes)


class RegistryAuth(httpx.Auth):
    """Answers 401 challenges. Thread-safe: one instance serves all transfer workers."""

    def __init__(
        self, credentials: Credentials | None, token_client: httpx.Client, *, origin: str | None = None
    ) -> None:
        # Only requests to this scheme://host:port carry credentials or tokens. A registry
        # can send us elsewhere (an upload Location, a redirect); those go without them.
        self._origin = httpx.URL(origin) if origin is not None else None
        self._credentials = credentials
        # An identity token is a refresh token: a token service may hand out a new one
        # with each answer; the newest is used for the rest of this session (as docker does).
        self._refresh_token = credentials.identity_token if credentials is not None else None
        self._token_client = token_client
        self._tokens: list[_Token] = []  # newest first
        self._basic = False
        # realm and service of the registry's last Bearer challenge: lets a request for a
        # new scope get its token before it is sent.
        self._bearer: dict[str, str] | None = None
        self._lock = threading.Lock()
        self._fetch_locks: dict[str, threading.Lock] = {}

    # -- the flow ------------------------------------------------------------------------

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._origin is not None and not _same_origin(request.url, self._origin):
            yield request
            return
        scopes = required_scopes(request)
        token, fresh = self._authorize(request, scopes)
        response = yield request
        if response.status_code != 401 or not _same_origin(response.url, request.url):
            # A challenge from another origin (met through a redirect) is never answered:
            # the credentials are for this registry only.
            return
        scheme, params = parse_challenge(response.headers.get("www-authenticate", ""))
        if scheme == "basic":
            if not _has_password(self._credentials) or request.headers.get("authorization", "").startswith("Basic "):
                # anonymous (an identity token alone is for token services), or these
                # credentials were just refused: nothing to retry
                return
            with self._lock:
                self._basic = True
        elif scheme == "bearer":
            bearer = self._remember_challenge(params, request)
            if token is not None and params.get("error") == "insufficient_scope" and fresh:
                # A token fetched for exactly this request does not cover it: the token
                # service granted less. Asking again would get the same answer.
                raise self._denied(request, scopes, token)
            if token is not None:
                self._discard(token)  # expired or revoked at the registry
            challenged = tuple(
                s for s in (Scope.parse(t) for t in params.get("scope", "").split()) if s is not None
            )
            if not _replayable(request):
                return  # the caller sees the 401 and may restart the upload
            token = self._obtain(bearer, scopes, challenged)
            request.headers["Authorization"] = f"Bearer {token.value}"
        else:
            return
        if not _replayable(request):
            return
        response.read()
        if scheme == "basic":
            self._apply_basic(request)
        response = yield request
        if response.status_code == 401 and scheme == "bearer" and token is not None:
            _, params = parse_challenge(response.headers.get("www-authenticate", ""))
            if params.get("error") == "insufficient_scope":
                raise self._denied(request, scopes, token)

    def prepare(self, request: httpx.Request) -> bool:
        """Get now the token ``request`` will need (fetched and cached, not sent), so a
        request with a short deadline spends it on itself. False if the registry's way
        of authenticating is not known yet (no challenge seen): there is nothing to get."""
        if self._origin is not None and not _same_origin(request.url, self._origin):
            return True
        with self._lock:
            known = self._basic or self._bearer is not None
        if known:
            self._authorize(request, required_scopes(request))
        return known

    # -- helpers -------------------------------------------------------------------------

    def _authorize(self, request: httpx.Request, scopes: tuple[Scope, ...]) -> tuple[_Token | None, bool]:
        """Set Authorization from what is known. Returns (token used, whether it was
        fetched for this request)."""
        with self._lock:
            if self._basic and _has_password(self._credentials):
                basic = True
            else:
                basic = False
                token = self._find(scopes)
                bearer = dict(self._bearer) if self._bearer is not None else None
        if basic:
            self._apply_basic(request)
            return None, False
        if token is None and bearer is not None and scopes:
            # A Bearer registry and no token for this scope yet: get one first.
            token = self._obtain(bearer, scopes, ())
            fresh = True
        else:
            fresh = False
        if token is not None:
            request.headers["Authorization"] = f"Bearer {token.value}"
        return token, fresh

    def _apply_basic(self, request: httpx.Request) -> None:
        assert self._credentials is not None
        request.headers["Authorization"] = _basic_header(self._credentials)

    def _remember_challenge(self, params: dict[str, str], request: httpx.Request) -> dict[str, str]:
        realm = params.get("realm", "")
        if not realm:
            raise AuthenticationError("the registry sent a Bearer challenge without a realm", status=401)
        try:
            url = httpx.URL(realm)
        except httpx.InvalidURL:
            raise AuthenticationError("the registry sent a malformed token realm", status=401) from None
        if url.scheme not in ("http", "https") or not url.host or url.userinfo:
            raise AuthenticationError(
                f"the registry sent an unusable token realm ({printable(url.scheme)} URL)", status=401
            )
        if url.scheme == "http" and request.url.scheme == "https" and self._credentials is not None:
            # docs/threats.md 8: never send credentials over plain HTTP unless asked to.
            raise AuthenticationError(
                f"the registry's token service {url.host} uses plain HTTP; refusing to send "
                "credentials over it",
                status=401,
                hint="the registry is reached over HTTPS; its token realm must be HTTPS too",
            )
        bearer = {"realm": realm, "service": params.get("service", "")}
        with self._lock:
            self._bearer = bearer
        return bearer

    def _find(self, scopes: tuple[Scope, ...], key: str | None = None) -> _Token | None:
        """The newest unexpired cached token covering ``scopes`` (or fetched for ``key``).
        Caller holds ``self._lock``."""
        now = time.monotonic()
        for token in self._tokens:
            if token.expires_at > now and (token.covers(scopes) or token.key == key):
                return token
        return None

    def _discard(self, token: _Token) -> None:
        with self._lock:
            self._tokens = [t for t in self._tokens if t is not token]

    def _obtain(
        self,
        bearer: dict[str, str],
        scopes: tuple[Scope, ...],
        challenged: tuple[Scope, ...],
    ) -> _Token:
        """A token covering ``scopes``: from the cache, or fetched once for all threads
        that need the same scopes at the same time."""
        wanted = _merge(scopes + challenged)
        key = " ".join([bearer["realm"], bearer["service"], *sorted(str(s) for s in wanted)])
        with self._lock:
            fetch_lock = self._fetch_locks.setdefault(key, threading.Lock())
        with fetch_lock:
            with self._lock:
                token = self._find(wanted, key) if wanted else None
            if token is not None:
                # Another thread fetched it while this one waited -- or fetched it for the
                # same scopes and got less: asking again would get the same answer.
                return token
            token = self._fetch(bearer, wanted, key)
            with self._lock:
                now = time.monotonic()
                live = [t for t in self._tokens if t.expires_at > now]
                self._tokens = [token, *live][:_MAX_CACHED_TOKENS]
                if len(self._fetch_locks) > 4 * _MAX_CACHED_TOKENS:
                    self._fetch_locks = {key: fetch_lock}
            return token

    def _fetch(self, bearer: dict[str, str], scopes: tuple[Scope, ...], key: str) -> _Token:
        realm = httpx.URL(bearer["realm"])
        with self._lock:
            refresh_token = self._refresh_token
        headers = {}
        form: dict[str, str] | None = None
        if refresh_token is not None:
            # docker's identity-token flow: the OAuth2 refresh-token grant, POSTed as a form
            # (so the token is in no URL and no access log).
            method, url = "POST", realm
            form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": OAUTH_CLIENT_ID}
            if bearer["service"]:
                form["service"] = bearer["service"]
            if scopes:
                form["scope"] = " ".join(str(scope) for scope in scopes)
        else:
            query: list[tuple[str, str]] = []
            if bearer["service"]:
                query.append(("service", bearer["service"]))
            for scope in scopes:
                query.append(("scope", str(scope)))
            if self._credentials is not None:
                query.append(("account", self._credentials.username))
                headers["Authorization"] = _basic_header(self._credentials)
            method, url = "GET", realm.copy_merge_params(query)
        where = printable(realm.netloc.decode("ascii", "replace"))
        # The token is part of the request that needed it: it counts against that
        # request's deadline (a token service that never answers costs no more time).
        request_deadline = deadline.current()
        timeout = request_deadline.timeout(self._token_client.timeout.read or 300.0) if request_deadline else httpx.USE_CLIENT_DEFAULT
        try:
            # No redirects: the credentials go to the realm the registry named, nowhere else.
            with self._token_client.stream(
                method, url, headers=headers, data=form, follow_redirects=False, timeout=timeout
            ) as response:
                data = bytearray()
                for chunk in response.iter_bytes():
                    if request_deadline is not None and request_deadline.passed():
                        raise httpx.ReadTimeout("the request's deadline passed")
                    data += chunk
                    if len(data) > _MAX_TOKEN_RESPONSE:
                        raise AuthenticationError(
                            f"the token service at {where} sent an oversized answer", status=None
                        )
        except httpx.HTTPError as exc:
            proxied = proxy_error(exc, f"the token service at {where}", "a token request")
            if proxied is not None:
                raise proxied from None
            tls_error = tls_failure(exc, where, None)
            if tls_error is not None:
                raise tls_error from None
            if isinstance(exc, httpx.TimeoutException) and request_deadline is not None and request_deadline.passed():
                raise deadline.request_timed_out(f"the token service at {where}", "a token request", request_deadline.seconds or 0, 1) from None
            raise AuthenticationError(
                f"cannot reach the token service at {where}: {type(exc).__name__}", status=None
            ) from None
        if refresh_token is not None and response.status_code in (400, 401, 403):
            # RFC 6749 answers a bad refresh token with 400 invalid_grant; some services 401.
            oauth_error = _oauth_error(bytes(data))
            raise AuthenticationError(
                f"the token service at {where} refused the identity token "
                f"({response.status_code}{' ' + oauth_error if oauth_error else ''})",
                status=response.status_code, code="UNAUTHORIZED",
                hint="the stored login may have expired or been revoked: run `ocimodel login REGISTRY` again"
                + (f" (it came from {self._credentials.source})" if self._credentials and self._credentials.source else ""),
            )
        if response.status_code in (401, 403):
            if self._credentials is None:
                raise AuthenticationError(
                    f"the token service at {where} refused anonymous access ({response.status_code})",
                    status=response.status_code, code="UNAUTHORIZED", hint=_ENV_HINT,
                )
            error = AuthenticationError if response.status_code == 401 else PermissionDenied
            raise error(
                f"the token service at {where} refused the credentials ({response.status_code})",
                status=response.status_code,
                code="UNAUTHORIZED" if response.status_code == 401 else "DENIED",
                hint=(
                    f"check the username and password from {self._credentials.source}"
                    if self._credentials.source
                    else "check the username and password (OCIMODEL_USERNAME / OCIMODEL_PASSWORD)"
                ),
            )
        if response.status_code != 200:
            raise AuthenticationError(
                f"the token service at {where} answered {response.status_code}",
                status=response.status_code,
            )
        try:
            body = json.loads(bytes(data))
            value = body.get("token") or body.get("access_token")
            lifetime = float(body.get("expires_in") or _DEFAULT_TOKEN_LIFETIME)
        except (ValueError, AttributeError, TypeError):
            value = None
            lifetime = 0.0
        if not isinstance(value, str) or not value or not value.isprintable() or "\n" in value:
            raise AuthenticationError(f"the token service at {where} answered without a usable token", status=200)
        rotated = body.get("refresh_token") if refresh_token is not None else None
        if isinstance(rotated, str) and rotated and rotated.isprintable() and rotated != refresh_token:
            with self._lock:
                self._refresh_token = rotated
        lifetime = max(lifetime, 1.0)
        expires_at = time.monotonic() + lifetime - min(_EXPIRY_MARGIN_SECONDS, lifetime / 2)
        return _Token(value, _grants(value, scopes), expires_at, key)

    def _denied(self, request: httpx.Request, scopes: tuple[Scope, ...], token: _Token) -> Exception:
        host = printable(request.url.netloc.decode("ascii", "replace"))
        wanted = scopes[0] if scopes else None
        if wanted is None:
            what = f"{request.method} {printable(request.url.path)}"
            granted = ""
        else:
            what = f"{_verb(wanted.actions)} {wanted.name}"
            have = token.grants.get((wanted.type, wanted.name), frozenset())
            granted = f" (the token service granted {', '.join(sorted(have)) or 'nothing'})"
        if self._credentials is None:
            return AuthenticationError(
                f"{what} on {host}: anonymous access is not allowed{granted}",
                status=401, code="UNAUTHORIZED", hint=_ENV_HINT,
            )
        return PermissionDenied(
            f"{what} on {host}: denied for these credentials{granted}",
            status=401, code="DENIED",
            hint="ask the registry's administrator for access, or use other credentials",
        )


def _merge(scopes: tuple[Scope, ...]) -> tuple[Scope, ...]:
    """One scope per resource, with the union of the actions asked for."""
    merged: dict[tuple[str, str], frozenset[str]] = {}
    for scope in scopes:
        merged[(scope.type, scope.name)] = merged.get((scope.type, scope.name), frozenset()) | scope.actions
    return tuple(Scope(t, n, a) for (t, n), a in merged.items())


def _grants(value: str, asked: tuple[Scope, ...]) -> dict[tuple[str, str], frozenset[str]]:
    """What a token grants: its JWT ``access`` claim if it is a JWT with one, else what was
    asked for (an opaque token; the registry will say if it is not enough)."""
    fallback = {(s.type, s.name): s.actions for s in asked}
    parts = value.split(".")
    if len(parts) != 3:
        return fallback
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return fallback
    access = claims.get("access") if isinstance(claims, dict) else None
    if not isinstance(access, list):
        return fallback
    grants: dict[tuple[str, str], frozenset[str]] = {}
    for entry in access:
        if not isinstance(entry, dict):
            continue
        type_, name, actions = entry.get("type"), entry.get("name"), entry.get("actions")
        if isinstance(type_, str) and isinstance(name, str) and isinstance(actions, list):
            key = (type_, name)
            grants[key] = grants.get(key, frozenset()) | frozenset(a for a in actions if isinstance(a, str))
    return grants


def _replayable(request: httpx.Request) -> bool:
    """A body held in memory can be sent again; a generator or file stream cannot."""
    return isinstance(request.stream, httpx.ByteStream)


def _same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


def _verb(actions: frozenset[str]) -> str:
    if "delete" in actions:
        return "delete from"
    if "push" in actions:
        return "push to"
    if "pull" in actions:
        return "pull from"
    return "access"


def _has_password(credentials: Credentials | None) -> bool:
    """Whether Basic auth can be answered: an identity token alone is only for token services."""
    return credentials is not None and bool(credentials.password or not credentials.identity_token)


def _oauth_error(body: bytes) -> str | None:
    """The ``error`` code of an OAuth2 error answer (``invalid_grant``), if it is one."""
    try:
        code = json.loads(body[:_MAX_TOKEN_RESPONSE]).get("error")
    except (ValueError, AttributeError):
        return None
    return code if isinstance(code, str) and re.fullmatch(r"[a-z_]{1,40}", code) else None


def _basic_header(credentials: Credentials) -> str:
    raw = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(raw).decode()
