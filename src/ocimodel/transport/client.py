"""An OCI distribution client on httpx.

One instance talks to one registry host and may be shared by transfer threads. Every
manifest it returns has been checked against the digest asked for or announced; blob
streams are checked by the caller (the copy engine), which knows the descriptor."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from urllib.parse import quote, urljoin

import httpx

from ocimodel import settings
from ocimodel.errors import (
    TRANSIENT_STATUS,
    AuthenticationError,
    DigestMismatch,
    InvalidDigest,
    InvalidManifest,
    InvalidReference,
    NotARegistry,
    NotFound,
    OcimodelError,
    PermissionDenied,
    RegistryError,
    RequestTimeout,
    SizeMismatch,
    TooManyRequests,
    TransportError,
    printable,
)
from ocimodel.oci import mediatypes as mt
from ocimodel.oci.digest import algorithm_of, digest_bytes, validate_digest
from ocimodel.oci.models import MAX_MANIFEST_BYTES, Descriptor, loads_strict, media_type_of
from ocimodel.oci.reference import RegistryReference, is_loopback_host, validate_tag
from ocimodel.transport import retry
from ocimodel.transport.auth import Credentials, RegistryAuth
from ocimodel.transport.body import body_chunks
from ocimodel.transport.deadline import (
    CONNECT_TIMEOUT,
    Deadline,
    WaitNotices,
    read_timed_out,
    request_timed_out,
)
from ocimodel.transport.proxies import ProxyConfig, ProxyRefused, proxied_transport, proxy_error
from ocimodel.transport.retry import RetryPolicy, RetryStats
from ocimodel.transport.tls import (
    TlsError,  # noqa: F401  (re-exported: TLS failures are typed)
    TlsOptions,
    build_tls,
    tls_failure,
)

# Error bodies and tag lists are small; a hostile registry must not make us buffer more.
MAX_ERROR_BODY = 64 * 1024
MAX_LIST_BODY = 8 * 1024 * 1024
MAX_LIST_PAGES = 1000
USER_AGENT = "ocimodel/0.1"
DOCKER_HUB_API_HOST = "registry-1.docker.io"
# Names from a registry's listings that we refuse, shown in a warning: at most this many.
MAX_SHOWN_REFUSED = 3
# Cancelling abandoned upload sessions is best effort and must not hold up an error or a
# Ctrl-C: this long in all (the copy engine waits 2 s for its workers after Ctrl-C).
CANCEL_DEADLINE = 1.5

log = logging.getLogger("ocimodel.transport")

# httpcore reads a socket 64 KiB at a time, and every read goes through h11 (copied into
# its buffer, out again, and once more by httpcore) with some Python per read: ~0.3 CPU-s
# per GiB of blob in h11 alone (benchmarks/README.md, "Profiling notes: pull"). A read
# takes what the socket holds, up to the size asked, so a larger size costs nothing for
# small answers and cuts the number of reads of a blob body up to 16 times: a 1 GiB pull
# used 3.2 CPU-s with 64 KiB reads and 2.7 with 1 MiB (docs/ranged-pulls.md). It is
# httpcore's per-connection read size, a class attribute its connections read through
# ``self``: set once for the process, checked so a renamed attribute changes nothing.
BODY_READ_BYTES = 1 << 20
try:
    from httpcore._sync.http11 import HTTP11Connection as _H11Connection

    if isinstance(getattr(_H11Connection, "READ_NUM_BYTES", None), int):
        _H11Connection.READ_NUM_BYTES = max(_H11Connection.READ_NUM_BYTES, BODY_READ_BYTES)
except ImportError:  # another httpcore layout: its default stands
    pass


def plain_http_wanted(registry: str, plain_http: bool | None) -> bool:
    """Plain HTTP only when asked (argument or OCIMODEL_PLAIN_HTTP=1) or for loopback hosts."""
    if plain_http is not None:
        return plain_http
    if settings.plain_http():
        return True
    return is_loopback_host(registry)


@dataclass
class ReferrerPages:
    """Raw pages of a referrers listing (each an image index, at most 4 MiB), and whether
    the registry applied the artifactType filter asked for (else the caller must)."""

    pages: list[bytes]
    filtered: bool


@dataclass(frozen=True)
class FetchedManifest:
    descriptor: Descriptor
    data: bytes


class RegistryClient:
    def __init__(
        self,
        registry: str,
        *,
        plain_http: bool | None = None,
        credentials: Credentials | None = None,
        transport: httpx.BaseTransport | None = None,
        max_connections: int = 16,
        retry: RetryPolicy | None = None,
        tls: TlsOptions | None = None,
        on_wait: Callable[[str], None] | None = None,
        read_timeout: float | None = None,
        request_timeout: float | None = None,
    ) -> None:
        """``tls``: CA file, insecure, client certificate (default: verify against the
        system's store and docker's ``certs.d`` directory of this registry). A file that
        cannot be used raises :class:`TlsError` here, before any request.

        ``on_wait``: called with one line of text when a request has waited a few seconds
        for an answer (see :mod:`ocimodel.transport.deadline`). ``read_timeout`` and
        ``request_timeout`` (seconds) override OCIMODEL_READ_TIMEOUT and
        OCIMODEL_REQUEST_TIMEOUT."""
        self.registry = registry
        self.retry = retry or RetryPolicy.from_environment()
        self.stats = RetryStats()
        scheme = "http" if plain_http_wanted(registry, plain_http) else "https"
        # Docker Hub's name and its API host differ, as docker and oras know.
        host = DOCKER_HUB_API_HOST if registry == "docker.io" else registry
        self.base_url = f"{scheme}://{host}"
        # A blob body that is still moving has no total cap (a 20 GB layer may take hours):
        # each read waits at most OCIMODEL_READ_TIMEOUT seconds for progress. Everything
        # else is a small request, done within OCIMODEL_REQUEST_TIMEOUT seconds in all,
        # retries included (see transport/deadline.py).
        self.read_timeout = read_timeout if read_timeout is not None else settings.read_timeout()
        self.request_timeout = request_timeout if request_timeout is not None else settings.request_timeout()
        self._notices = WaitNotices(on_wait, registry) if on_wait is not None else None
        timeout = Deadline(None).timeout(self.read_timeout)
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        # One context for the registry and its token service: the same trust for both.
        self._tls = build_tls(registry, tls)
        common = dict(timeout=timeout, headers={"User-Agent": USER_AGENT}, verify=self._tls.context)
        # HTTPS_PROXY / HTTP_PROXY / NO_PROXY, decided per request URL (transport/proxies.py).
        proxies = ProxyConfig.from_environment() if transport is None else None
        self._token_client = httpx.Client(
            transport=transport or proxied_transport(self._tls.context, httpx.Limits(), proxies), **common
        )
        self._auth = RegistryAuth(credentials, self._token_client, origin=self.base_url)
        self._http = httpx.Client(
            transport=transport or proxied_transport(self._tls.context, limits, proxies), limits=limits, auth=self._auth, **common
        )
        self._looks_like_registry: bool | None = None  # unknown until a strange answer makes us ask
        # Whether this registry has the OCI 1.1 referrers API: None until one of its answers
        # says (a referrers listing, or an OCI-Subject header on a push; see
        # targets/remote.py). Kept on the client, so the repositories of one client share one
        # probe, and another client (another configuration, another test) asks again.
        self.referrers_api: bool | None = None
        self._auth_asked = False  # whether /v2/ was asked for its challenge (authorize_manifest_put)
        self._v2_answer = ""
        # Upload sessions opened and not finished, by path: the current URL of each (its
        # _state query moves on with every step).
        self._sessions: dict[str, httpx.URL] = {}
        self._sessions_lock = threading.Lock()

    def close(self) -> None:
        """Cancel the upload sessions still open (a transfer stuck in a stalled socket when
        Ctrl-C came, a mount that opened an upload instead), then close the connections."""
        with self._sessions_lock:
            left, self._sessions = list(self._sessions.values()), {}
        deadline = Deadline(CANCEL_DEADLINE)
        for url in left:
            self._delete_session(url, deadline)
        self._http.close()
        self._token_client.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def small_request(self) -> Deadline:
        """The deadline of a new small request (all but a blob body): OCIMODEL_REQUEST_TIMEOUT."""
        return Deadline(self.request_timeout)

    def _send(
        self, method: str, url: str | httpx.URL, *, what: str, stream: bool = False, once: bool = False,
        deadline: Deadline | None = None, body_unbounded: bool = False, **kwargs,
    ):
        """Send a request; retry what may pass; map connection failures to TransportError.

        A request is retried only if its body can be sent again (none, or bytes): a
        streamed upload is restarted whole by the copy engine instead. With
        ``stream=False`` the body is read with a cap, so no answer can make us buffer an
        unbounded amount.

        ``deadline``: the time the request may take in all, its tries included (default:
        a new small-request deadline); ``Deadline(None)`` for blob uploads, which only the
        no-progress read timeout limits. ``body_unbounded``: the answer's head is waited
        for within the deadline, but its body (a blob, read by the caller later) keeps
        the full read timeout for each read."""
        if deadline is None:
            deadline = self.small_request()
        replayable = kwargs.get("content") is None or isinstance(kwargs.get("content"), bytes)
        attempt = 0
        read_timeout = self.read_timeout
        watching = self._notices.watch(deadline, read_timeout) if self._notices is not None else nullcontext()
        with watching, deadline.active():
            while True:
                attempt += 1
                if deadline.passed():
                    raise request_timed_out(self.registry, what, deadline.seconds or 0, attempt - 1)
                can_retry = replayable and not once and attempt < self.retry.attempts
                timeout = Deadline(None).timeout(read_timeout) if body_unbounded else deadline.timeout(read_timeout)
                request = self._http.build_request(method, url, timeout=timeout, **kwargs)
                try:
                    response = self._http.send(request, stream=True, follow_redirects=method in ("GET", "HEAD"))
                except httpx.HTTPError as exc:
                    if isinstance(exc, ProxyRefused):  # a proxy that refuses does not change its mind
                        raise proxy_error(exc, self.registry, what) from None
                    tls_error = tls_failure(exc, self.registry, self._tls)
                    if tls_error is not None:
                        raise tls_error from None  # an untrusted certificate does not pass by waiting
                    if isinstance(exc, httpx.TimeoutException) and deadline.passed():
                        raise request_timed_out(self.registry, what, deadline.seconds or 0, attempt) from None
                    # A refused connection is retried once (a registry restarting); more would
                    # only make "registry is down" slow to report.
                    if can_retry and (attempt < 2 or not isinstance(exc, httpx.ConnectError)):
                        self.stats.record(type(exc).__name__)
                        if retry.wait(self.retry, attempt, f"{method} {what}", type(exc).__name__, time_left=deadline.remaining()):
                            continue
                        if isinstance(exc, httpx.TimeoutException):
                            raise request_timed_out(self.registry, what, deadline.seconds or 0, attempt) from None
                    error = self._connection_error(exc, what, attempt)
                    # Retried here as often as the policy allows: not transient any more, or the
                    # copy engine would start the blob over and multiply the tries. A streamed
                    # body could not be retried here; starting that blob over is the engine's job.
                    error.transient = error.transient and not replayable
                    raise error from None
                if response.status_code in TRANSIENT_STATUS and replayable:
                    try:
                        _read_capped(response, MAX_ERROR_BODY, truncate=True)
                    except TransportError:
                        pass  # cut inside an error body: the answer is known
                    finally:
                        response.close()
                    after = retry.parse_retry_after(response.headers.get("retry-after"))
                    if can_retry:
                        self.stats.record(str(response.status_code))
                        if retry.wait(self.retry, attempt, f"{method} {what}", str(response.status_code), after,
                                      time_left=deadline.remaining()):
                            continue
                    # The registry answered, so its answer is the error, not the deadline.
                    error = error_from_response(response, what, self.registry)
                    error.transient = False  # the tries are spent (see above)
                    raise error
                if not stream:
                    # Read here, with a cap, so a cut inside a small body is retried like any cut.
                    try:
                        self._read_small(response, MAX_LIST_BODY, what, deadline, truncate=True)
                    except RequestTimeout:
                        raise
                    except TransportError as exc:
                        if can_retry:
                            self.stats.record("body")
                            if retry.wait(self.retry, attempt, f"{method} {what}", "cut body", time_left=deadline.remaining()):
                                continue
                        exc.transient = exc.transient and not replayable
                        raise
                    finally:
                        response.close()
                break
        return response

    def _read_small(self, response: httpx.Response, cap: int, what: str, deadline: Deadline, *, truncate: bool = False) -> bytes:
        """Read a small body within the request's deadline: a registry that sends its
        answer a byte at a time cannot keep a small request going past it."""
        with deadline.active():
            try:
                return _read_capped(response, cap, what=what, truncate=truncate, deadline=deadline)
            except _DeadlinePassed:
                raise request_timed_out(self.registry, what, deadline.seconds or 0, 1) from None

    def _connection_error(self, exc: httpx.HTTPError, what: str, tries: int) -> TransportError:
        proxied = proxy_error(exc, self.registry, what)
        if proxied is not None:
            return proxied
        if isinstance(exc, httpx.ConnectTimeout):
            return TransportError(
                f"cannot reach {self.registry} ({what}): no connection within {CONNECT_TIMEOUT:g} s",
                hint=_connection_hint(self.base_url),
            )
        if isinstance(exc, httpx.TimeoutException):
            return read_timed_out(self.registry, what, self.read_timeout, tries)
        return TransportError(
            f"cannot reach {self.registry} ({what}): {_describe_http_error(exc)}",
            hint=_connection_hint(self.base_url),
        )

    def _check(self, response: httpx.Response, what: str, ok: tuple[int, ...]) -> None:
        if response.status_code in ok:
            return
        raise self._error(response, what)

    def _error(self, response: httpx.Response, what: str) -> RegistryError:
        """The error an answer means; for an answer no registry gives (no OCI error code,
        no registry header), first whether the host is a registry at all: a web server
        on the wrong port must not be reported as a registry without the model."""
        error = error_from_response(response, what, self.registry)
        if response.status_code in (401, 403, 407, 429) or _registry_answer(response):
            return error
        return self._not_a_registry() or error

    def _not_a_registry(self) -> NotARegistry | None:
        """NotARegistry if ``GET /v2/`` shows no sign of a registry; asked once per client.
        None when the host looks like one, or when the question gets no answer (the
        original error then stands)."""
        if self._looks_like_registry is None:
            try:
                response = self._send("GET", self._url("/v2/"), what="registry check (/v2/)", once=True)
            except OcimodelError:
                return None
            content_type = response.headers.get("content-type", "").split(";", 1)[0].strip()
            signs = response.headers.get("docker-distribution-api-version") is not None or (
                response.status_code == 401 and "www-authenticate" in response.headers
            ) or (response.status_code == 200 and content_type == "application/json")
            self._looks_like_registry = signs
            self._v2_answer = f"{response.status_code}" + (f" {printable(content_type, 60)}" if content_type else "")
        if self._looks_like_registry:
            return None
        return NotARegistry(
            f"{self.registry} does not look like an OCI registry (it answered {self._v2_answer} to /v2/)",
            hint="check the host and port: a registry answers /v2/ with 200 or 401 and a Docker-Distribution-API-Version header",
        )

    # -- API ----------------------------------------------------------------------------

    def ping(self) -> None:
        response = self._send("GET", self._url("/v2/"), what="ping")
        self._check(response, "ping", (200,))

    def authorize_manifest_put(self, repository: str, reference: str) -> None:
        """Get the token a manifest PUT will need before it is sent, within a small
        request's deadline of its own: a PUT given a short deadline (a version tag's)
        must not spend it on the token service. A registry not heard from yet is asked
        for its challenge first (GET /v2/, as docker does)."""
        request = self._http.build_request("PUT", self._url(f"/v2/{repository}/manifests/{reference}"))
        with self.small_request().active():
            if self._auth.prepare(request) or self._auth_asked:
                return  # known, or the registry asks for nothing
        self._send("GET", self._url("/v2/"), what="registry check (/v2/)", once=True).close()
        self._auth_asked = True
        with self.small_request().active():
            self._auth.prepare(request)

    def get_manifest(self, repository: str, reference: str) -> FetchedManifest:
        """GET a manifest by tag or digest; its bytes are verified before they are returned."""
        url = self._url(f"/v2/{repository}/manifests/{reference}")
        what = f"manifest {repository}:{reference}" if ":" not in reference else f"manifest {repository}@{reference}"
        deadline = self.small_request()  # one for every try, body included
        for attempt in range(1, self.retry.attempts + 1):
            response = self._send(
                "GET", url, what=what, stream=True, deadline=deadline, headers={"Accept": mt.MANIFEST_ACCEPT}
            )
            try:
                self._check_streamed(response, what, (200,))
                if response.headers.get("content-type", "").startswith("text/html"):
                    stranger = self._not_a_registry()  # a web server answering every path with a page
                    if stranger is not None:
                        raise stranger
                declared = response.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) > MAX_MANIFEST_BYTES:
                    raise InvalidManifest(f"{what} is {declared} bytes, over the {MAX_MANIFEST_BYTES} limit")
                data = self._read_small(response, MAX_MANIFEST_BYTES, what, deadline)
                break
            except RequestTimeout:
                raise
            except TransportError as exc:  # cut inside the manifest body: ask again
                if attempt == self.retry.attempts:
                    exc.transient = False
                    raise
                self.stats.record("body")
                if not retry.wait(self.retry, attempt, f"GET {what}", "cut body", time_left=deadline.remaining()):
                    raise request_timed_out(self.registry, what, deadline.seconds or 0, attempt) from None
            finally:
                response.close()
        algorithm = algorithm_of(reference) if _looks_like_digest(reference) else "sha256"
        actual = digest_bytes(data, algorithm)
        if _looks_like_digest(reference) and actual != reference:
            raise DigestMismatch(reference, actual, what)
        announced = response.headers.get("docker-content-digest")
        if announced:
            try:
                validate_digest(announced)
            except InvalidDigest as exc:
                raise InvalidManifest(f"{what}: registry announced a malformed digest: {exc}") from None
            if algorithm_of(announced) == algorithm and announced != actual:
                raise DigestMismatch(announced, actual, what)
        media_type = _media_type(response) or media_type_of(data)
        return FetchedManifest(Descriptor(mediaType=media_type, digest=actual, size=len(data)), data)

    def head_manifest(self, repository: str, reference: str) -> Descriptor | None:
        url = self._url(f"/v2/{repository}/manifests/{reference}")
        response = self._send("HEAD", url, what="manifest check", headers={"Accept": mt.MANIFEST_ACCEPT})
        if response.status_code == 404:
            return None
        self._check(response, f"manifest {repository}:{reference}", (200,))
        digest = response.headers.get("docker-content-digest")
        size = response.headers.get("content-length")
        if not digest or size is None or not size.isdigit():
            return None
        try:
            validate_digest(digest)
        except InvalidDigest as exc:
            raise InvalidManifest(f"manifest {repository}:{reference}: registry announced a malformed digest: {exc}") from None
        return Descriptor(mediaType=_media_type(response) or mt.OCI_MANIFEST, digest=digest, size=int(size))

    def put_manifest(self, repository: str, reference: str, data: bytes, media_type: str, *, deadline: float | None = None) -> str:
        """PUT a manifest. With ``deadline`` (seconds) it is sent once, not retried, and
        given up after that long: a referrers-index write must land soon or not at all."""
        return self.put_manifest_indexed(repository, reference, data, media_type, deadline=deadline)[0]

    def put_manifest_indexed(
        self, repository: str, reference: str, data: bytes, media_type: str, *, deadline: float | None = None
    ) -> tuple[str, str | None]:
        """PUT a manifest; returns its digest and the ``OCI-Subject`` header, which a
        registry with the referrers API sends when it indexed the manifest's subject."""
        url = self._url(f"/v2/{repository}/manifests/{reference}")
        extra = {"once": True, "deadline": Deadline(deadline)} if deadline else {}
        response = self._send(
            "PUT", url, what=f"manifest upload to {repository}", content=data,
            headers={"Content-Type": media_type}, **extra,
        )
        self._check(response, f"manifest upload to {repository}", (201, 200, 202))
        expected = digest_bytes(data)
        announced = response.headers.get("docker-content-digest")
        if announced and announced.startswith("sha256:") and announced != expected:
            raise DigestMismatch(expected, announced, f"manifest stored in {repository}")
        return expected, response.headers.get("oci-subject")

    def get_referrers(self, repository: str, digest: str, artifact_type: str | None = None) -> ReferrerPages | None:
        """The referrers API (``GET /v2/<name>/referrers/<digest>``), page by page; None when
        the registry does not have it (it answers 404, as distribution 2.x does)."""
        validate_digest(digest)
        what = f"referrers of {repository}@{digest}"
        path = f"/v2/{repository}/referrers/{digest}"
        url: str | None = self._url(path) + (f"?artifactType={quote(artifact_type, safe='')}" if artifact_type else "")
        pages: list[bytes] = []
        filtered = True
        for _ in range(MAX_LIST_PAGES):
            if url is None:
                return ReferrerPages(pages, filtered)
            deadline = self.small_request()  # each page is a small request
            response = self._send("GET", url, what=what, stream=True, deadline=deadline, headers={"Accept": mt.OCI_INDEX})
            try:
                if response.status_code == 404 and not pages:
                    self._read_small(response, MAX_ERROR_BODY, what, deadline, truncate=True)
                    return None
                self._check_streamed(response, what, (200,))
                if _media_type(response) != mt.OCI_INDEX:
                    # A proxy or a registry without the API answering 200 with something else.
                    if not pages:
                        return None
                    raise RegistryError(f"registry sent a {what} page that is not an image index")
                pages.append(self._read_small(response, MAX_MANIFEST_BYTES, what, deadline))
                if sum(len(p) for p in pages) > MAX_LIST_BODY:
                    raise RegistryError(f"{what}: more than {MAX_LIST_BODY >> 20} MiB of listings; refusing to go on")
                applied = response.headers.get("oci-filters-applied", "")
                filtered = filtered and (artifact_type is None or "artifactType" in [f.strip() for f in applied.split(",")])
                url = _next_link(response, self.base_url)
            finally:
                response.close()
        raise RegistryError(f"registry sent more than {MAX_LIST_PAGES} pages of {what}")

    def delete_manifest(self, repository: str, digest: str) -> None:
        url = self._url(f"/v2/{repository}/manifests/{digest}")
        response = self._send("DELETE", url, what=f"delete {repository}@{digest}")
        if response.status_code == 405:
            # distribution's default: deletes are off unless its config enables them.
            error = error_from_response(response, f"delete {repository}@{digest}", self.registry)
            error.hint = (
                "this registry refuses deletes; on distribution (docker-registry) set "
                "storage.delete.enabled: true in its config; elsewhere ask its administrator"
            )
            raise error
        self._check(response, f"delete {repository}@{digest}", (202, 200))

    def blob_exists(self, repository: str, digest: str) -> bool:
        url = self._url(f"/v2/{repository}/blobs/{digest}")
        response = self._send("HEAD", url, what=f"blob check {digest}")
        if response.status_code == 404:
            return False
        self._check(response, f"blob {digest}", (200,))
        return True

    def fetch_range(self, repository: str, digest: str, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes of a blob from ``offset`` (fewer only at its end), by one
        HTTP Range request (distribution honours Range on blob GETs: docs/registry-facts.md).
        NOT verified, and it cannot be: a digest covers the whole blob. The caller decides
        what an unverified piece may be used for (docs/scanning-cli.md). A registry that
        ignores Range answers 200 with the whole blob: only the wanted piece is read off it
        and the connection is closed."""
        if offset < 0 or length <= 0:
            return b""
        url = self._url(f"/v2/{repository}/blobs/{digest}")
        what = f"blob {digest} bytes {offset}-{offset + length - 1}"
        headers = {"Accept-Encoding": "identity", "Range": f"bytes={offset}-{offset + length - 1}"}
        response = self._send("GET", url, what=what, stream=True, body_unbounded=True, headers=headers)
        try:
            if response.status_code == 416:
                return b""  # at or past the end
            self._check_streamed(response, what, (200, 206))
            skip = offset if response.status_code == 200 else 0
            if response.status_code == 206:
                _check_content_range(response, offset, what)
            piece = bytearray()
            try:
                for chunk in response.iter_raw():
                    if skip:
                        cut = min(skip, len(chunk))
                        chunk, skip = chunk[cut:], skip - cut
                    piece += chunk
                    if len(piece) >= length:
                        break
            except httpx.HTTPError as exc:
                raise TransportError(f"connection failed while reading {what}: {_describe_http_error(exc)}") from None
            return bytes(piece[:length])
        finally:
            response.close()

    def open_blob_range(self, repository: str, digest: str, start: int, end: int, size: int) -> httpx.Response | None:
        """GET bytes ``start``..``end`` (inclusive) of a blob of ``size`` bytes, streamed, for
        a download in parts (transport/ranged.py). The head is checked: a 206 must carry
        exactly that ``Content-Range`` (and ``Content-Length``), or the part would land in
        the wrong place. None when the server ignored Range (a 200 with the whole blob):
        the response is closed unread. Redirects are followed as for any blob GET
        (``_send``): our credentials never go to another host. NOT verified: the caller
        hashes the whole blob."""
        url = self._url(f"/v2/{repository}/blobs/{digest}")
        what = f"blob {digest} bytes {start}-{end}"
        headers = {"Accept-Encoding": "identity", "Range": f"bytes={start}-{end}"}
        response = self._send("GET", url, what=what, stream=True, body_unbounded=True, headers=headers)
        try:
            if response.status_code == 200:
                response.close()
                return None
            self._check_streamed(response, what, (206,))
            value = response.headers.get("content-range", "")
            if value not in (f"bytes {start}-{end}/{size}", f"bytes {start}-{end}/*"):
                raise RegistryError(f"{what}: the server sent another range ({printable(value, 60)!r})")
            declared = response.headers.get("content-length")
            if declared is not None and declared.strip() != str(end - start + 1):
                raise RegistryError(f"{what}: the server announced {printable(declared, 20)} bytes for the range")
        except BaseException:
            response.close()
            raise
        return response

    @contextmanager
    def stream_blob(self, repository: str, digest: str) -> Iterator[Iterator[bytes]]:
        """Yield an iterator over the blob's bytes. The caller verifies digest and size.

        A connection cut mid-body is resumed with a Range request from the last byte
        received (or, if the registry ignores Range, by skipping what was already read),
        so the caller sees one continuous stream and its hash covers every byte."""
        url = self._url(f"/v2/{repository}/blobs/{digest}")
        what = f"blob {digest}"
        open_responses: list[httpx.Response] = []

        def get(offset: int) -> httpx.Response:
            # identity: the digest is over the stored bytes, and a compressed answer could
            # hide a decompression bomb behind a small size.
            headers = {"Accept-Encoding": "identity"}
            if offset:
                headers["Range"] = f"bytes={offset}-"
            # The answer's head within a small request's deadline; the body, read by the
            # caller, only under the no-progress read timeout.
            response = self._send("GET", url, what=what, stream=True, body_unbounded=True, headers=headers)
            open_responses.append(response)
            self._check_streamed(response, what, (200, 206) if offset else (200,))
            return response

        def body() -> Iterator[bytes]:
            received = 0
            response = get(0)
            resumes = 0
            while True:
                skip = 0
                if received and response.status_code == 200:
                    skip = received  # the registry ignored Range: drop what we already have
                elif received:
                    _check_content_range(response, received, what)
                try:
                    # The pieces as they come off the socket; a large body straight from
                    # it, past httpcore and h11 (transport/body.py).
                    for chunk in body_chunks(response, self.read_timeout):
                        if skip:
                            cut = min(skip, len(chunk))
                            chunk, skip = chunk[cut:], skip - cut
                            if not chunk:
                                continue
                        received += len(chunk)
                        yield chunk
                    return
                except httpx.HTTPError as exc:
                    response.close()
                    resumes += 1
                    if resumes >= self.retry.attempts:
                        if isinstance(exc, httpx.TimeoutException):
                            error = read_timed_out(self.registry, what, self.read_timeout, resumes)
                        else:
                            error = TransportError(
                                f"connection to {self.registry} failed while reading {what}: {_describe_http_error(exc)}",
                                hint="check the network, or retry",
                            )
                        error.transient = False  # this blob's tries are spent: no restart on top
                        raise error from None
                    self.stats.record("resume")
                    retry.wait(self.retry, resumes, f"GET {what} from byte {received}", type(exc).__name__)
                    response = get(received)

        try:
            yield body()
        finally:
            for response in open_responses:
                response.close()

    def start_upload(self, repository: str) -> httpx.URL:
        """POST an upload session. Bodiless, so it also obtains push auth before any stream."""
        url = self._url(f"/v2/{repository}/blobs/uploads/")
        response = self._send("POST", url, what=f"blob upload to {repository}")
        self._check(response, f"blob upload to {repository}", (202,))
        if not response.headers.get("location"):
            raise RegistryError(f"registry started an upload to {repository} without a Location")
        location = _follow_location(response, httpx.URL(url), self.base_url)
        self._session_moved(location)
        return location

    # An upload session the registry keeps for us holds its partial data until it
    # expires (distribution: a week). One we abandon is cancelled (DELETE): at once when
    # its upload fails or is interrupted in this thread, else when the client closes.

    def _session_moved(self, location: httpx.URL) -> None:
        with self._sessions_lock:
            self._sessions[location.path] = location

    def _session_done(self, location: httpx.URL) -> httpx.URL | None:
        """Forget a session; its current URL if it was still open (exactly one caller gets it)."""
        with self._sessions_lock:
            return self._sessions.pop(location.path, None)

    @contextmanager
    def _upload_session(self, location: httpx.URL) -> Iterator[None]:
        """Around the steps of one upload: on any failure (Ctrl-C included) the session is
        cancelled before the failure goes on; on success it is forgotten."""
        try:
            yield
        except (AuthenticationError, PermissionDenied):
            # Credentials the registry just refused will not cancel anything (a cancel
            # needs the delete right, which push-only credentials lack anyway).
            self._session_done(location)
            raise
        except BaseException:
            current = self._session_done(location)
            if current is not None:
                self._delete_session(current, Deadline(CANCEL_DEADLINE))
            raise
        self._session_done(location)

    def _delete_session(self, url: httpx.URL, deadline: Deadline) -> None:
        """Best effort, within ``deadline``: never raises (the failure that made us give the
        session up is the one to report)."""
        if deadline.passed():
            return
        try:
            self._send("DELETE", url, what="upload cancel", once=True, deadline=deadline)
        except Exception as exc:  # noqa: BLE001
            log.debug("could not cancel the upload session %s: %s", url.path, exc)

    def mount_blob(self, repository: str, digest: str, from_repository: str) -> bool:
        """Ask the registry to link a blob it already holds in another repository (no bytes
        move). True if it did (201); False if it opened an ordinary upload instead (202),
        which registries do when the source does not hold the blob (distribution answers a
        token without pull on the source with 401, raised here). That upload session is not used here: the client cancels it when it closes, unless
        it is handed to :meth:`upload_blob` (see :meth:`mount_or_start_upload`)."""
        return self.mount_or_start_upload(repository, digest, from_repository)[0]

    def mount_or_start_upload(self, repository: str, digest: str, from_repository: str) -> tuple[bool, httpx.URL | None]:
        """A cross-repository mount: (True, None) if the registry linked the blob (201),
        else (False, the upload session it opened instead, if it named one): a session
        :meth:`upload_blob` can use (``location=``), or the client cancels when it closes."""
        url = httpx.URL(self._url(f"/v2/{repository}/blobs/uploads/")).copy_merge_params(
            {"mount": digest, "from": from_repository}
        )
        response = self._send("POST", url, what=f"blob mount {digest} from {from_repository}")
        if response.status_code == 201:
            return True, None
        self._check(response, f"blob mount {digest} from {from_repository}", (202,))
        if not response.headers.get("location"):
            return False, None
        location = _follow_location(response, httpx.URL(url), self.base_url)
        self._session_moved(location)
        return False, location

    def upload_blob(
        self, repository: str, digest: str, size: int, chunks: Iterable[bytes], *, location: httpx.URL | None = None
    ) -> None:
        """Monolithic upload: POST a session (or use ``location``, one a declined mount
        opened), then PUT the whole body with ?digest=.

        The registry hashes what it receives and refuses a body whose digest differs."""
        location = location if location is not None else self.start_upload(repository)
        with self._upload_session(location):
            # copy_merge_params keeps the registry's own query (_state); params= would drop it.
            url = location.copy_merge_params({"digest": digest})
            try:
                response = self._send(
                    "PUT", url, what=f"blob upload {digest}", content=_body_in_hand(chunks), deadline=Deadline(None),
                    headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
                )
            finally:
                _close(chunks)
            try:
                self._check(response, f"blob upload {digest}", (201, 204))
            except AuthenticationError as exc:
                # The token expired or was revoked during a long upload. The auth flow has
                # dropped it and cannot replay a stream; starting this blob over will work.
                exc.transient = True
                raise

    def upload_unhashed(self, repository: str, size: int, chunks: Iterable[bytes]) -> str:
        """Upload bytes whose digest is not known yet, hashing them on the way; returns the
        digest. POST a session, PATCH the body in one stream, then PUT ?digest= with no
        body: the registry compares its own hash with ours before it keeps the blob, so
        the file is read once instead of twice (hash, then upload)."""
        location = self.start_upload(repository)
        hasher = hashlib.sha256()
        sent = [0]
        last = [b""]

        def hashed() -> Iterator[bytes]:
            # Bounded by the size announced in Content-Length: a file that grows or shrinks
            # while it is sent is our error to report, not the HTTP library's.
            for chunk in chunks:
                if sent[0] + len(chunk) > size:
                    raise SizeMismatch(f"upload to {repository}", size, f"more than {size}")
                hasher.update(chunk)
                sent[0] += len(chunk)
                if sent[0] == size:
                    last[0] = chunk  # held back: released below only if nothing follows
                    continue
                yield chunk
            if sent[0] != size:
                raise SizeMismatch(f"upload to {repository}", size, sent[0])
            if size:
                yield last[0]

        with self._upload_session(location):
            try:
                response = self._send(
                    "PATCH", location, what=f"blob upload to {repository}", content=_body_in_hand(hashed()),
                    deadline=Deadline(None),
                    headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
                )
            finally:
                _close(chunks)
            try:
                self._check(response, f"blob upload to {repository}", (202, 204))
            except AuthenticationError as exc:
                exc.transient = True  # a token that expired mid-upload: starting over works
                raise
            digest = f"sha256:{hasher.hexdigest()}"
            location = _follow_location(response, location, self.base_url)
            self._session_moved(location)
            # No total: the registry may take minutes to commit a large blob (a copy on S3).
            response = self._send(
                "PUT", location.copy_merge_params({"digest": digest}), what=f"blob upload {digest}",
                content=b"", headers={"Content-Length": "0"}, deadline=Deadline(None),
            )
            self._check(response, f"blob upload {digest}", (201, 204))
        return digest

    def list_tags(self, repository: str) -> list[str]:
        """The repository's tags. Each is checked against the tag grammar before anyone
        builds a URL from it (a hostile list once made a client request ``/v2/etc``);
        the others are dropped with a warning. A repository the registry does not know
        raises :class:`NotFound`; one that exists without tags gives an empty list."""
        tags: list[str] = []
        what = f"tags of {repository}"
        try:
            for page in self._paginate(f"/v2/{repository}/tags/list", what):
                values = page.get("tags") if isinstance(page, dict) else None
                if values is None:
                    continue
                if not isinstance(values, list) or not all(isinstance(t, str) for t in values):
                    raise RegistryError(f"registry sent a malformed tag list for {repository}")
                tags.extend(values)
        except NotFound as exc:
            raise NotFound(
                f"repository {repository} does not exist on {self.registry}" + (f" ({exc.code})" if exc.code else ""),
                status=exc.status, code=exc.code,
                hint=f"check the name (`ocimodel catalog {self.registry}` lists repositories, where the registry allows it)",
            ) from None
        return sorted(_valid_only(set(tags), _is_tag, f"{self.registry} listed", f"tag(s) of {repository}"))

    def catalog(self, page_size: int | None = None) -> list[str]:
        """Repository names, following Link pagination (``page_size`` asks for ``n`` per page).
        Names that are not valid repository names are dropped with a warning."""
        names: list[str] = []
        path = "/v2/_catalog" + (f"?n={page_size}" if page_size else "")
        for page in self._paginate(path, "catalog"):
            values = page.get("repositories") if isinstance(page, dict) else None
            if isinstance(values, list):
                names.extend(v for v in values if isinstance(v, str))
        valid = _valid_only(set(names), lambda n: _is_repository(self.registry, n), f"{self.registry} listed", "repository name(s)")
        return sorted(valid)

    def _paginate(self, path: str, what: str) -> Iterator[object]:
        url: str | None = self._url(path)
        for _ in range(MAX_LIST_PAGES):
            if url is None:
                return
            response = self._send("GET", url, what=what)
            self._check(response, what, (200,))
            try:
                document = loads_strict(response.content, what)
            except InvalidManifest as exc:
                raise self._not_a_registry() or RegistryError(f"registry sent a malformed {what}: {exc}") from None
            yield document
            url = _next_link(response, self.base_url)
        raise RegistryError(f"registry sent more than {MAX_LIST_PAGES} pages of {what}")

    def _check_streamed(self, response: httpx.Response, what: str, ok: tuple[int, ...]) -> None:
        if response.status_code not in ok:
            _read_capped(response, MAX_ERROR_BODY, truncate=True)
            raise self._error(response, what)


# -- helpers --------------------------------------------------------------------------


def _is_tag(tag: str) -> bool:
    try:
        validate_tag(tag)
    except InvalidReference:
        return False
    return True


def _is_repository(registry: str, name: str) -> bool:
    try:
        RegistryReference(registry, name)
    except InvalidReference:
        return False
    return True


def _valid_only(names: set[str], valid: Callable[[str], bool], who: str, what: str) -> list[str]:
    """The names that pass ``valid``; the others are reported once, escaped and cut."""
    kept = [n for n in names if valid(n)]
    refused = sorted(names.difference(kept))
    if refused:
        shown = ", ".join(repr(printable(n, 80)) for n in refused[:MAX_SHOWN_REFUSED])
        more = f" and {len(refused) - MAX_SHOWN_REFUSED} more" if len(refused) > MAX_SHOWN_REFUSED else ""
        log.warning("%s %d invalid %s, ignored: %s%s", who, len(refused), what, shown, more)
    return kept


def _body_in_hand(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """An upload body whose first chunk is read now, before its request is begun: a failure
    or a cancel (Ctrl-C) that comes while the first chunk is read then stops the upload
    before any request head leaves. A head sent and its body dropped before the first
    byte races the session's cancel in distribution 2.8: the aborted request stores the
    session's hash state while the DELETE removes the session's directory, the removal
    fails ("directory not empty"), the DELETE is answered 204 all the same, and the
    session's files stay in storage until the upload purger runs (docs/deadlines.md)."""
    chunks = iter(chunks)
    first = next(chunks, None)

    def body() -> Iterator[bytes]:
        if first is not None:
            yield first
        yield from chunks

    return body()


def _close(chunks: Iterable[bytes]) -> None:
    """Close an upload's source once its request is over. Sent whole, it is already
    exhausted; cut short (a refused connection, a token that did not come, a cancel), its
    first chunk was read (_body_in_hand), so a generator source is suspended mid-way and
    holds what it started -- for a large blob a hashing thread and its buffers -- until
    the collector finds it: an exception's traceback keeps it in a cycle. Each attempt
    of an upload makes a new source, so none is read again after this."""
    close = getattr(chunks, "close", None)
    if close is not None:
        close()


def _follow_location(response: httpx.Response, previous: httpx.URL, base_url: str) -> httpx.URL:
    """The upload URL for the next step: the registry may move it (new ``_state``)."""
    location = response.headers.get("location")
    if not location:
        return previous
    url = httpx.URL(urljoin(base_url + "/", location))
    if url.scheme not in ("http", "https") or (url.scheme == "http" and base_url.startswith("https:")):
        raise RegistryError(f"registry sent an upload Location that leaves HTTPS ({url.scheme}://{url.host})")
    return url


def _check_content_range(response: httpx.Response, offset: int, what: str) -> None:
    """A 206 must continue exactly where we stopped."""
    value = response.headers.get("content-range", "")
    if not value.startswith(f"bytes {offset}-"):
        raise RegistryError(f"{what}: registry resumed at the wrong place ({value[:60]!r}, wanted byte {offset})")


def _registry_answer(response: httpx.Response) -> bool:
    """An answer only a registry gives: its API version header, or an OCI error code."""
    if response.headers.get("docker-distribution-api-version") is not None:
        return True
    return _parse_error_body(getattr(response, "_content", b"") or b"")[0] is not None


def _looks_like_digest(reference: str) -> bool:
    return ":" in reference


def _media_type(response: httpx.Response) -> str | None:
    value = response.headers.get("content-type")
    if not value:
        return None
    value = value.split(";", 1)[0].strip()
    if value in mt.MANIFEST_TYPES or value in mt.INDEX_TYPES:
        return value
    return None


class _DeadlinePassed(TransportError):
    """Internal: a small body was still coming when its request's deadline passed."""


def _read_capped(
    response: httpx.Response, cap: int, *, what: str = "response", truncate: bool = False, deadline: Deadline | None = None
) -> bytes:
    """Read at most ``cap`` bytes of a streamed response and store them as its content
    (before ``deadline``, if given: checked between pieces, as a trickle never stalls)."""
    if hasattr(response, "_content"):
        return response.content
    buffer = bytearray()
    try:
        for chunk in response.iter_raw():  # as they come: a chunk size would wait to fill it
            if deadline is not None and deadline.passed():
                raise _DeadlinePassed(f"{what}: deadline passed")
            buffer += chunk
            if len(buffer) > cap:
                if truncate:
                    del buffer[cap:]
                    break
                raise InvalidManifest(f"{what} is larger than the {cap}-byte limit")
    except httpx.HTTPError as exc:
        if deadline is not None and isinstance(exc, httpx.TimeoutException) and deadline.passed():
            raise _DeadlinePassed(f"{what}: deadline passed") from None
        raise TransportError(f"connection failed while reading {what}: {_describe_http_error(exc)}") from None
    response._content = bytes(buffer)
    return response._content


def _next_link(response: httpx.Response, base_url: str) -> str | None:
    link = response.headers.get("link")
    if not link:
        return None
    for part in link.split(","):
        target, _, params = part.partition(";")
        if 'rel="next"' in params.replace(" ", "") or "rel=next" in params.replace(" ", ""):
            target = target.strip().strip("<>")
            resolved = urljoin(base_url + "/", target)
            # A Link must not send us (and our token) to another host.
            here, there = httpx.URL(base_url), httpx.URL(resolved)
            if (there.scheme, there.host, there.port) != (here.scheme, here.host, here.port):
                raise RegistryError("registry sent a pagination Link to another host")
            return resolved
    return None


def error_from_response(response: httpx.Response, what: str, registry: str) -> RegistryError:
    """Map a registry error answer to a typed error carrying the OCI error code."""
    status = response.status_code
    code, detail = _parse_error_body(getattr(response, "_content", b"") or b"")
    if status == 401:
        return AuthenticationError(
            f"{what}: authentication required or refused by {registry}" + (f" ({code})" if code else ""),
            status=status, code=code or "UNAUTHORIZED",
            hint="log in (`ocimodel login`), or set OCIMODEL_USERNAME / OCIMODEL_PASSWORD",
        )
    if status == 403:
        return PermissionDenied(
            f"{what}: access denied by {registry}" + (f": {detail}" if detail else ""),
            status=status, code=code or "DENIED",
        )
    if status == 404:
        return NotFound(
            f"{what}: not found on {registry}" + (f" ({code})" if code else ""),
            status=status, code=code or "NOT_FOUND",
            hint="check the repository, tag or digest (`ocimodel ls` lists tags)",
        )
    if status == 429:
        return TooManyRequests(f"{what}: rate limited by {registry}", status=status, code=code or "TOOMANYREQUESTS")
    if status == 400 and b"HTTP request to an HTTPS server" in (getattr(response, "_content", b"") or b""):
        return RegistryError(
            f"{what}: {registry} speaks HTTPS, not plain HTTP", status=status,
            hint="pass --no-plain-http (loopback registries default to plain HTTP)",
        )
    message = f"{what}: {registry} answered {status}"
    if code:
        message += f" {code}"
    if detail:
        message += f": {detail}"
    return RegistryError(message, status=status, code=code)


def _parse_error_body(body: bytes) -> tuple[str | None, str | None]:
    """(code, message) from an OCI error body; None for HTML, plain text or odd JSON."""
    try:
        document = loads_strict(body[:MAX_ERROR_BODY], "error body")
    except InvalidManifest:
        return None, None
    errors = document.get("errors") if isinstance(document, dict) else None
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
        return None, None
    code = errors[0].get("code")
    message = errors[0].get("message")
    code = code if isinstance(code, str) and code.replace("_", "").isalnum() else None
    message = printable(message) if isinstance(message, str) else None
    return (code[:64] if code else None), message


def _describe_http_error(exc: httpx.HTTPError) -> str:
    text = str(exc) or type(exc).__name__
    return printable(text)


def _connection_hint(base_url: str) -> str:
    if base_url.startswith("https://"):
        return "is the registry up? for a registry without TLS, pass --plain-http"
    return "is the registry up and listening on that address?"
