"""A proxy that adds the OCI 1.1 referrers API to a registry without it (distribution 2.8).

Stdlib only (no ocimodel imports). It listens on a free 127.0.0.1 port, relays every
request to one upstream (the test registry) byte for byte, and plays a registry that
follows distribution-spec v1.1 "Listing Referrers" and "Pushing Manifests with Subject":

- ``PUT /v2/<name>/manifests/<ref>`` is relayed; when the upstream answers 201 and the
  JSON body has a ``subject``, a descriptor of the pushed manifest (mediaType, sha256 of
  the exact body bytes, size, artifactType -- the body's, else ``config.mediaType`` --,
  annotations) is recorded under (name, subject digest), and the answer gets
  ``OCI-Subject: <subject digest>``.
- ``GET|HEAD /v2/<name>/referrers/<digest>`` is answered here: 200, an image index of the
  descriptors recorded (sorted by digest; empty when none), 400 for a malformed digest.
  ``?artifactType=X`` filters and sets ``OCI-Filters-Applied: artifactType``. With
  ``page_size=N`` a page holds at most N descriptors and a relative
  ``Link: </v2/<name>/referrers/<digest>?artifactType=X&last=<digest>>; rel="next"``
  leads to the next one (``last`` is the last digest of the previous page). Other methods
  get 405.
- ``DELETE /v2/<name>/manifests/<digest>`` is relayed; on 202 the digest leaves every
  list of that repository.

    with ReferrersProxy(registry.host, page_size=2) as proxy:
        ocimodel.push(..., f"{proxy.host}/team/model:1")   # pushes with a subject
        httpx.get(f"http://{proxy.host}/v2/team/model/referrers/{digest}")
        proxy.requests       # [(method, request target with its query), ...] in order
        proxy.referrers("team/model", digest)   # the descriptors recorded, unfiltered

Authorization headers and the upstream's 401 answers (``WWW-Authenticate``) pass
unchanged, so it works in front of an htpasswd or token registry. The referrers endpoint
checks access the cheap way: it first sends ``HEAD /v2/<name>/manifests/<digest>`` with
the client's ``Authorization`` upstream and relays a 401 or 403 (challenge included);
any other answer (200, 404...) lets the listing through.

Misbehaving registries, for the client's defences (docs/threats.md 5-6, 8):
``ignore_filter=True`` returns unfiltered lists without ``OCI-Filters-Applied``;
``extra_entries=K`` pads every listing with K fake descriptors (digests that exist
nowhere; their artifactType is the filter asked for, so they survive it);
``content_type="text/plain"`` overrides the listing's Content-Type;
``link_base="http://other:1"`` makes the ``Link`` absolute, towards another host;
``referrers_404=True`` plays a registry without the API (404 text/plain like distribution
2.8, no ``OCI-Subject``: the client must fall back to the referrers tag schema).

Not done: referrers recorded before the proxy started (or pushed around it) are unknown
(no tag-schema import); a manifest deleted by tag stays listed; an ``Expect:
100-continue`` request waits for its body. Bounded like faultproxy.py (whose HTTP reader
it reuses): socket timeouts, framed bodies, daemon threads, ``stop()`` shuts every socket.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
from typing import Self
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.support.faultproxy import (
    _Closed,
    _header,
    _parse_head,
    _parse_status,
    _Reader,
    _request_framing,
    _response_framing,
    _shutdown,
    _wants_close,
)

__all__ = ["OCI_INDEX", "ReferrersProxy"]

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
FAKE_ARTIFACT_TYPE = "application/vnd.ocimodel.test.fake.v1"
IO_TIMEOUT = 30.0  # seconds any single socket read or write may wait
MAX_MANIFEST = 16 << 20  # a manifest PUT body is buffered (to digest and parse it) up to this
RELAY_CHUNK = 256 * 1024
MAX_REQUESTS_PER_CONNECTION = 100_000

_MANIFEST = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<ref>[^/]+)$")
_REFERRERS = re.compile(r"^/v2/(?P<name>.+)/referrers/(?P<digest>[^/]*)$")
# distribution-spec digest grammar, and the sha256 encoding every registry checks
_DIGEST = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
_SHA256 = re.compile(r"^sha256:[a-f0-9]{64}$")
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
            404: "Not Found", 405: "Method Not Allowed"}


def _valid_digest(digest: str) -> bool:
    if digest.startswith("sha256:"):
        return bool(_SHA256.match(digest))
    return bool(_DIGEST.match(digest))


class ReferrersProxy:
    def __init__(self, upstream_host: str, *, page_size: int | None = None,
                 ignore_filter: bool = False, extra_entries: int = 0,
                 content_type: str | None = None, referrers_404: bool = False,
                 link_base: str = "", io_timeout: float = IO_TIMEOUT) -> None:
        if page_size is not None and page_size < 1:
            raise ValueError("page_size must be at least 1")
        host, _, port = upstream_host.rpartition(":")
        self.upstream = (host or "127.0.0.1", int(port))
        self.page_size = page_size
        self.ignore_filter = ignore_filter
        self.extra_entries = extra_entries
        self.content_type = content_type
        self.referrers_404 = referrers_404
        self.link_base = link_base
        self.io_timeout = io_timeout
        self.requests: list[tuple[str, str]] = []
        # (repository, subject digest) -> {manifest digest: descriptor}
        self._lists: dict[tuple[str, str], dict[str, dict]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self.port = 0
        self.host = ""

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> Self:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        listener.settimeout(0.1)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self.host = f"127.0.0.1:{self.port}"
        thread = threading.Thread(target=self._accept_loop, name="referrersproxy-accept",
                                  daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            _shutdown(sock)
        for thread in list(self._threads):
            thread.join(timeout=5.0)
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the referrers store ------------------------------------------------------------

    def referrers(self, name: str, subject: str) -> list[dict]:
        """The descriptors recorded for ``subject`` in ``name``, sorted by digest (no fakes)."""
        with self._lock:
            found = self._lists.get((name, subject), {})
            return [dict(found[d]) for d in sorted(found)]

    def _record(self, name: str, body: bytes, content_type: str | None) -> str | None:
        """Record a pushed manifest that has a subject; its subject digest, else None."""
        try:
            doc = json.loads(body)
        except ValueError:
            return None
        subject = doc.get("subject") if isinstance(doc, dict) else None
        if not isinstance(subject, dict) or not isinstance(subject.get("digest"), str):
            return None
        descriptor: dict = {
            "mediaType": doc.get("mediaType") or (content_type or "").split(";")[0].strip(),
            "digest": "sha256:" + hashlib.sha256(body).hexdigest(),
            "size": len(body),
        }
        config = doc.get("config")
        artifact_type = doc.get("artifactType")
        if not artifact_type and isinstance(config, dict):
            artifact_type = config.get("mediaType")
        if artifact_type:
            descriptor["artifactType"] = artifact_type
        if doc.get("annotations"):
            descriptor["annotations"] = doc["annotations"]
        with self._lock:
            self._lists.setdefault((name, subject["digest"]), {})[descriptor["digest"]] = descriptor
        return subject["digest"]

    def _forget(self, name: str, digest: str) -> None:
        with self._lock:
            for (repo, _), found in self._lists.items():
                if repo == name:
                    found.pop(digest, None)

    def _listing(self, name: str, subject: str, query: str) -> tuple[list[dict], dict[str, str]]:
        """One page of the listing and the headers that go with it."""
        params = parse_qs(query)
        wanted = params.get("artifactType", [None])[0]
        last = params.get("last", [""])[0]
        entries = self.referrers(name, subject)
        headers: dict[str, str] = {}
        if wanted is not None and not self.ignore_filter:
            entries = [d for d in entries if d.get("artifactType") == wanted]
            headers["OCI-Filters-Applied"] = "artifactType"
        for i in range(self.extra_entries):
            fake = f"referrersproxy fake {i} of {name}@{subject}".encode()
            entries.append({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": "sha256:" + hashlib.sha256(fake).hexdigest(),
                "size": 1024,
                "artifactType": wanted or FAKE_ARTIFACT_TYPE,
                "annotations": {"org.ocimodel.test.fake": str(i)},
            })
        entries.sort(key=lambda d: d["digest"])
        entries = [d for d in entries if d["digest"] > last]
        if self.page_size is not None and len(entries) > self.page_size:
            entries = entries[: self.page_size]
            next_query = {"artifactType": wanted} if wanted is not None else {}
            next_query["last"] = entries[-1]["digest"]
            url = f"{self.link_base}/v2/{name}/referrers/{subject}?{urlencode(next_query)}"
            headers["Link"] = f'<{url}>; rel="next"'
        return entries, headers

    # -- internals ----------------------------------------------------------------------

    def _track(self, sock: socket.socket) -> socket.socket:
        sock.settimeout(self.io_timeout)
        with self._lock:
            self._sockets.add(sock)
        return sock

    def _untrack(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            self._sockets.discard(sock)
        _shutdown(sock)
        sock.close()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(self._track(client),),
                                      name="referrersproxy-conn", daemon=True)
            with self._lock:
                self._threads[:] = [t for t in self._threads if t.is_alive()]
                self._threads.append(thread)
            thread.start()

    def _serve(self, client: socket.socket) -> None:
        conn = _Connection(self, client)
        try:
            for _ in range(MAX_REQUESTS_PER_CONNECTION):
                if self._stop.is_set() or not conn.one():
                    return
        except (_Closed, OSError, ValueError, IndexError):  # a timeout, a closed peer, a bad head
            return
        finally:
            self._untrack(client)
            self._untrack(conn.upstream)


class _Connection:
    """One client connection and its lazily opened, kept-alive upstream connection."""

    def __init__(self, proxy: ReferrersProxy, client: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.reader = _Reader(client)
        self.upstream: socket.socket | None = None
        self.up_reader: _Reader | None = None

    def one(self) -> bool:
        """Serve one request; False when the connection is to be closed."""
        head = self.reader.head()
        if head is None:
            return False
        method, target, headers, lines = _parse_head(head)
        with self.proxy._lock:
            self.proxy.requests.append((method, target))
        path, query = urlsplit(target).path, urlsplit(target).query
        keep = not _wants_close(headers)
        framing = _request_framing(headers)

        referrers = _REFERRERS.match(path)
        if referrers is not None:
            _read_body(self.reader, framing, MAX_MANIFEST)  # none expected; drop it
            name, digest = referrers["name"], referrers["digest"]
            return self._referrers(method, name, digest, query, headers) and keep

        manifest = _MANIFEST.match(path)
        if method == "PUT" and manifest is not None:
            body = _read_body(self.reader, framing, MAX_MANIFEST)
            framing_headers = (b"content-length:", b"transfer-encoding:")
            kept = [line for line in lines if not line.lower().startswith(framing_headers)]
            length = f"\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            self._send_up(b"\r\n".join(kept) + length + body)
            status, response_head, response_headers = self._response_head()
            if status == 201 and not self.proxy.referrers_404:
                content_type = _header(headers, "content-type")
                subject = self.proxy._record(manifest["name"], body, content_type)
                if subject is not None:
                    response_head = response_head[:-2] + f"OCI-Subject: {subject}\r\n\r\n".encode()
            return self._relay_response(method, status, response_head, response_headers) and keep

        self._send_up(head)
        _relay(self.reader, framing, self.upstream)
        status, response_head, response_headers = self._response_head()
        if (method == "DELETE" and status == 202 and manifest is not None
                and _valid_digest(manifest["ref"])):
            self.proxy._forget(manifest["name"], manifest["ref"])
        return self._relay_response(method, status, response_head, response_headers) and keep

    # -- upstream -----------------------------------------------------------------------

    def _send_up(self, data: bytes) -> None:
        if self.upstream is None:
            self.upstream = self.proxy._track(
                socket.create_connection(self.proxy.upstream, timeout=self.proxy.io_timeout))
            self.up_reader = _Reader(self.upstream)
        self.upstream.sendall(data)

    def _response_head(self) -> tuple[int, bytes, list[tuple[str, str]]]:
        assert self.up_reader is not None
        head = self.up_reader.head()
        if head is None:
            raise _Closed("upstream closed before answering")
        status, headers = _parse_status(head)
        return status, head, headers

    def _relay_response(self, method: str, status: int, head: bytes,
                        headers: list[tuple[str, str]]) -> bool:
        """Relay the upstream's answer; False when the connection is to be closed."""
        assert self.up_reader is not None
        self.client.sendall(head)
        framing = _response_framing(method, status, headers)
        _relay(self.up_reader, framing, self.client)
        # An answer framed by EOF, or one that says "Connection: close" (relayed as it is),
        # ends the client's connection too.
        return framing[0] != "eof" and not _wants_close(headers)

    # -- the referrers API --------------------------------------------------------------

    def _referrers(self, method: str, name: str, digest: str, query: str,
                   headers: list[tuple[str, str]]) -> bool:
        proxy = self.proxy
        if proxy.referrers_404:
            return self._answer(method, 404, b"404 page not found\n",
                                {"Content-Type": "text/plain; charset=utf-8"})
        if method not in ("GET", "HEAD"):
            return self._error(method, 405, "UNSUPPORTED", "the referrers API is read-only",
                               {"Allow": "GET, HEAD"})
        if not _valid_digest(digest):
            return self._error(method, 400, "DIGEST_INVALID", f"invalid digest {digest!r}")
        # Access check: may this client read the repository? The upstream says.
        host = _header(headers, "host") or proxy.host
        check = f"HEAD /v2/{name}/manifests/{digest} HTTP/1.1\r\nHost: {host}\r\n"
        authorization = _header(headers, "authorization")
        if authorization is not None:
            check += f"Authorization: {authorization}\r\n"
        self._send_up((check + "\r\n").encode("latin-1"))
        status, _, up_headers = self._response_head()
        if _wants_close(up_headers):
            self.proxy._untrack(self.upstream)
            self.upstream = self.up_reader = None
        if status in (401, 403):
            relayed = ("www-authenticate", "docker-distribution-api-version")
            extra = {k: v for k, v in up_headers if k.lower() in relayed}
            code = "UNAUTHORIZED" if status == 401 else "DENIED"
            return self._error(method, status, code, "access denied upstream", extra)
        entries, extra = proxy._listing(name, digest, query)
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries},
                          separators=(",", ":")).encode()
        extra["Content-Type"] = proxy.content_type or OCI_INDEX
        return self._answer(method, 200, body, extra)

    def _error(self, method: str, status: int, code: str, message: str,
               extra: dict[str, str] | None = None) -> bool:
        body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
        headers = {"Content-Type": "application/json; charset=utf-8", **(extra or {})}
        return self._answer(method, status, body, headers)

    def _answer(self, method: str, status: int, body: bytes, headers: dict[str, str]) -> bool:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
                 *(f"{k}: {v}" for k, v in headers.items()),
                 f"Content-Length: {len(body)}"]
        if "Docker-Distribution-Api-Version" not in headers:
            lines.append("Docker-Distribution-Api-Version: registry/2.0")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.client.sendall(head + (b"" if method == "HEAD" else body))
        return True


# -- bodies ------------------------------------------------------------------------------


def _read_body(reader: _Reader, framing: tuple[str, int], cap: int) -> bytes:
    """A whole request body (chunked framing decoded), at most ``cap`` bytes."""
    kind, length = framing
    out = bytearray()

    def take(n: int) -> None:
        if len(out) + n > cap:
            raise _Closed("body over the cap")
        while n > 0:
            data = reader.some(min(n, RELAY_CHUNK))
            out.extend(data)
            n -= len(data)

    if kind == "length":
        take(length)
    elif kind == "chunked":
        while True:
            size = int(reader.line().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while reader.line() != b"\r\n":  # trailers, up to the empty line
                    pass
                break
            take(size)
            reader.line()  # the CRLF after the data
    return bytes(out)


def _relay(reader: _Reader, framing: tuple[str, int], sock: socket.socket | None) -> None:
    """Copy one framed body from ``reader`` to ``sock`` as it is (framing included)."""
    assert sock is not None
    kind, length = framing
    if kind == "length":
        left = length
        while left > 0:
            data = reader.some(min(left, RELAY_CHUNK))
            sock.sendall(data)
            left -= len(data)
    elif kind == "chunked":
        while True:
            line = reader.line()
            sock.sendall(line)
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while True:
                    trailer = reader.line()
                    sock.sendall(trailer)
                    if trailer == b"\r\n":
                        return
            left = size + 2  # the data and its CRLF
            while left > 0:
                data = reader.some(min(left, RELAY_CHUNK))
                sock.sendall(data)
                left -= len(data)
    elif kind == "eof":
        while True:
            data = reader.some(RELAY_CHUNK, eof_ok=True)
            if not data:
                return
            sock.sendall(data)
