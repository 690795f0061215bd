"""A scripted, hostile OCI registry for negative tests (docs/threats.md 2-6, 9).

Stdlib only (no ocimodel imports): an ``http.server`` in a daemon thread on 127.0.0.1 that
answers exactly what a test tells it to, including answers no honest registry sends
(bytes that do not match their digest, bodies longer or shorter than announced, endless
bodies, HTML error pages, manifests over the size cap).

    with BadRegistry() as bad:
        cfg = bad.add_blob("t/m", b"{}", media_type="application/vnd.oci.empty.v1+json")
        layer = bad.add_blob("t/m", b"hello", media_type=..., annotations={...})
        digest = bad.add_manifest("t/m", manifest_bytes({...}), tags=["v1"])
        bad.set("GET", f"/v2/t/m/blobs/{layer['digest']}", Reply(body=b"jello"))
        ocimodel.pull(f"{bad.host}/t/m:v1", dest)   # loopback: plain HTTP

Every route answers HEAD like GET without the body. Unknown paths get a distribution-like
404 JSON error. ``bad.requests`` logs (method, path); ``bad.sent[path]`` counts body bytes
actually written (to prove a client stopped reading an endless body).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "BadRegistry",
    "Reply",
    "endless",
    "manifest_bytes",
    "sha256",
    "OCI_MANIFEST",
    "OCI_INDEX",
    "OCI_EMPTY",
    "MODEL_ARTIFACT",
    "MODEL_CONFIG",
    "MODEL_WEIGHT_RAW",
    "TITLE",
    "FILEPATH",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
MODEL_ARTIFACT = "application/vnd.cncf.model.manifest.v1+json"
MODEL_CONFIG = "application/vnd.cncf.model.config.v1+json"
MODEL_WEIGHT_RAW = "application/vnd.cncf.model.weight.v1.raw"
TITLE = "org.opencontainers.image.title"
FILEPATH = "org.cncf.model.filepath"

# An endless body stops here at the latest, so a client that never stops reading fails
# its test (by size) instead of hanging the suite.
ENDLESS_CAP = 512 * 1024 * 1024


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def manifest_bytes(document: Any) -> bytes:
    """Compact JSON bytes of a hand-built manifest."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def endless(chunk: bytes = b"\0" * 65536) -> Callable[[], Iterator[bytes]]:
    """A body factory that repeats ``chunk`` forever (until ENDLESS_CAP)."""

    def body() -> Iterator[bytes]:
        sent = 0
        while sent < ENDLESS_CAP:
            yield chunk
            sent += len(chunk)

    return body


@dataclass
class Reply:
    """One scripted answer.

    ``body`` is bytes or a zero-argument callable returning an iterator of chunks (a
    stream). ``content_length``: True sends the real length of a bytes body, an int sends
    that number whatever the body is, None sends none (the body then ends when the
    connection closes: HTTP/1.0 semantics)."""

    status: int = 200
    body: bytes | Callable[[], Iterable[bytes]] = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_length: bool | int | None = True


def _oci_error(code: str, message: str) -> bytes:
    return json.dumps({"errors": [{"code": code, "message": message, "detail": None}]}).encode()


class BadRegistry:
    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Reply] = {}
        self.requests: list[tuple[str, str]] = []
        self.sent: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.host = ""
        self.url = ""
        self.reset()

    def reset(self) -> None:
        """Forget every route, request and counter (one server can serve many tests)."""
        with self._lock:
            self.routes = {}
            self.requests = []
            self.sent = {}
        self.set("GET", "/v2/", Reply(body=b"{}", headers={"Content-Type": "application/json"}))

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> BadRegistry:
        owner = self

        class Handler(_Handler):
            registry = owner

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self.host = f"127.0.0.1:{server.server_address[1]}"
        self.url = f"http://{self.host}"
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05},
            name="bad-registry", daemon=True,
        )
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

    def __enter__(self) -> BadRegistry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- scripting -------------------------------------------------------------------------

    def set(self, method: str, path: str, reply: Reply) -> None:
        """Answer ``method path`` (exact path, no query) with ``reply``; GET also covers HEAD."""
        self.routes[(method.upper(), path)] = reply

    def add_blob(
        self,
        repo: str,
        data: bytes,
        *,
        media_type: str = "application/octet-stream",
        annotations: dict[str, str] | None = None,
        reply: Reply | None = None,
    ) -> dict[str, Any]:
        """Serve ``data`` as a blob (or ``reply`` in its place); return its descriptor."""
        descriptor: dict[str, Any] = {"mediaType": media_type, "digest": sha256(data), "size": len(data)}
        if annotations is not None:
            descriptor["annotations"] = dict(annotations)
        self.set(
            "GET",
            f"/v2/{repo}/blobs/{descriptor['digest']}",
            reply or Reply(body=data, headers={
                "Content-Type": "application/octet-stream",
                "Docker-Content-Digest": descriptor["digest"],
            }),
        )
        return descriptor

    def add_manifest(
        self,
        repo: str,
        data: bytes,
        *,
        tags: Iterable[str] = (),
        content_type: str = OCI_MANIFEST,
        by_digest: bool = True,
    ) -> str:
        """Serve ``data`` honestly under each tag and (``by_digest``) under its digest."""
        digest = sha256(data)
        reply = Reply(body=data, headers={"Content-Type": content_type, "Docker-Content-Digest": digest})
        for tag in tags:
            self.set("GET", f"/v2/{repo}/manifests/{tag}", reply)
        if by_digest:
            self.set("GET", f"/v2/{repo}/manifests/{digest}", reply)
        return digest

    def set_manifest(self, repo: str, reference: str, reply: Reply) -> None:
        self.set("GET", f"/v2/{repo}/manifests/{reference}", reply)

    def set_blob(self, repo: str, digest: str, reply: Reply) -> None:
        self.set("GET", f"/v2/{repo}/blobs/{digest}", reply)

    def _record(self, method: str, path: str) -> None:
        with self._lock:
            self.requests.append((method, path))

    def _count(self, path: str, n: int) -> None:
        with self._lock:
            self.sent[path] = self.sent.get(path, 0) + n

    def __repr__(self) -> str:
        return f"<BadRegistry {self.url or '(not started)'}>"


class _Handler(BaseHTTPRequestHandler):
    registry: BadRegistry  # set on the per-server subclass
    protocol_version = "HTTP/1.0"  # one answer per connection; a body without length ends at close

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _reply(self, head_only: bool) -> None:
        method = "GET" if head_only else self.command
        path = self.path.split("?", 1)[0]
        self.registry._record(self.command, path)
        reply = self.registry.routes.get((method, path))
        if reply is None:
            if "/manifests/" in path:
                body = _oci_error("MANIFEST_UNKNOWN", "manifest unknown")
            elif "/blobs/" in path:
                body = _oci_error("BLOB_UNKNOWN", "blob unknown to registry")
            else:
                body = _oci_error("UNSUPPORTED", "the operation is unsupported")
            reply = Reply(status=404, body=body, headers={"Content-Type": "application/json"})
        try:
            self.send_response(reply.status)
            for key, value in reply.headers.items():
                self.send_header(key, value)
            if reply.content_length is True and isinstance(reply.body, bytes):
                self.send_header("Content-Length", str(len(reply.body)))
            elif isinstance(reply.content_length, int) and not isinstance(reply.content_length, bool):
                self.send_header("Content-Length", str(reply.content_length))
            self.send_header("Connection", "close")
            self.end_headers()
            if head_only:
                return
            chunks = [reply.body] if isinstance(reply.body, bytes) else reply.body()
            for chunk in chunks:
                self.wfile.write(chunk)
                self.registry._count(path, len(chunk))
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            pass  # the client stopped reading: exactly what some tests want
        finally:
            self.close_connection = True

    def do_GET(self) -> None:  # noqa: N802
        self._reply(head_only=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._reply(head_only=True)

    def _refuse_write(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(min(length, 1 << 20))
        self.registry._record(self.command, self.path.split("?", 1)[0])
        body = _oci_error("DENIED", "this test registry is read-only")
        self.send_response(405)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_PUT = do_POST = do_PATCH = do_DELETE = _refuse_write  # noqa: N815
