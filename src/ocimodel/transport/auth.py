"""Registry authentication as an httpx auth flow: Basic, and the Bearer token challenge.

A token is fetched per scope (``repository:team/model:pull`` or ``...:pull,push``) and
cached; a request reuses any cached token whose actions cover it. Credentials are held in
this object only and never formatted into messages."""

from __future__ import annotations

import base64
import re
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass

import httpx

from ocimodel.errors import AuthenticationError, PermissionDenied

_CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]+))')
_REPO_PATH = re.compile(r"^/v2/(?P<name>.+?)/(?:manifests|blobs|tags|referrers)(?:/|$)")
# Tokens expire; refresh a little early so a request does not race the expiry.
_EXPIRY_MARGIN_SECONDS = 10
_DEFAULT_TOKEN_LIFETIME = 60


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def __repr__(self) -> str:  # never show the secret, even in a debugger or traceback
        return f"Credentials(username={self.username!r}, password=***)"


@dataclass
class _Token:
    value: str
    actions: frozenset[str]
    expires_at: float


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


class RegistryAuth(httpx.Auth):
    """Answers 401 challenges. Thread-safe: one instance serves all transfer workers."""

    def __init__(self, credentials: Credentials | None, token_client: httpx.Client) -> None:
        self._credentials = credentials
        self._token_client = token_client
        self._tokens: dict[str, list[_Token]] = {}
        self._basic = False
        self._lock = threading.Lock()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        scope = required_scope(request)
        self._apply_cached(request, scope)
        response = yield request
        if response.status_code != 401:
            return
        header = response.headers.get("www-authenticate", "")
        scheme, params = parse_challenge(header)
        if scheme == "basic":
            if self._credentials is None:
                return
            with self._lock:
                self._basic = True
        elif scheme == "bearer":
            self._fetch_token(params, scope)
        else:
            return
        # A streamed body cannot be sent twice; callers obtain auth with a bodiless request
        # first (see RegistryClient.start_upload), so a 401 here only hits replayable requests.
        response.read()
        self._apply_cached(request, scope)
        yield request

    def _apply_cached(self, request: httpx.Request, scope) -> None:
        with self._lock:
            if self._basic and self._credentials is not None:
                request.headers["Authorization"] = _basic_header(self._credentials)
                return
            if scope is None:
                tokens = self._tokens.get("", [])
                needed: frozenset[str] = frozenset()
            else:
                tokens = self._tokens.get(scope[0], [])
                needed = scope[1]
            now = time.monotonic()
            for token in tokens:
                if needed <= token.actions and token.expires_at > now:
                    request.headers["Authorization"] = f"Bearer {token.value}"
                    return

    def _fetch_token(self, params: dict[str, str], scope) -> None:
        realm = params.get("realm")
        if not realm:
            raise AuthenticationError("registry sent a Bearer challenge without a realm", status=401)
        query: list[tuple[str, str]] = []
        if params.get("service"):
            query.append(("service", params["service"]))
        repository = scope[0] if scope else ""
        actions = scope[1] if scope else frozenset()
        challenged = params.get("scope")
        if challenged:
            query.append(("scope", challenged))
        elif scope is not None:
            query.append(("scope", f"repository:{repository}:{','.join(sorted(actions))}"))
        headers = {}
        if self._credentials is not None:
            headers["Authorization"] = _basic_header(self._credentials)
        try:
            response = self._token_client.get(realm, params=query, headers=headers)
        except httpx.HTTPError as exc:
            raise AuthenticationError(
                f"cannot reach the token service at {httpx.URL(realm).host}: {type(exc).__name__}",
                status=None,
            ) from None
        if response.status_code in (401, 403):
            error = AuthenticationError if response.status_code == 401 else PermissionDenied
            raise error(
                f"the token service refused the credentials ({response.status_code})",
                status=response.status_code,
                code="UNAUTHORIZED" if response.status_code == 401 else "DENIED",
                hint="check the username and password, or log in again",
            )
        if response.status_code != 200:
            raise AuthenticationError(
                f"the token service answered {response.status_code}", status=response.status_code
            )
        try:
            body = response.json()
            value = body.get("token") or body.get("access_token")
            lifetime = int(body.get("expires_in") or _DEFAULT_TOKEN_LIFETIME)
        except (ValueError, AttributeError, TypeError):
            value = None
            lifetime = 0
        if not isinstance(value, str) or not value:
            raise AuthenticationError("the token service answered without a token", status=200)
        expires_at = time.monotonic() + max(lifetime - _EXPIRY_MARGIN_SECONDS, 1)
        with self._lock:
            self._tokens.setdefault(repository, []).insert(0, _Token(value, actions, expires_at))


def _basic_header(credentials: Credentials) -> str:
    raw = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(raw).decode()
