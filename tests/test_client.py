"""The registry client against the real registry: pagination, error codes, HTTP vs HTTPS."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import ocimodel
from ocimodel.errors import NotFound, RegistryError
from ocimodel.oci import mediatypes as mt
from ocimodel.oci.digest import digest_bytes
from ocimodel.transport.client import RegistryClient, is_loopback_host, plain_http_wanted


def test_catalog_follows_link_pagination_on_the_real_registry(registry, model_dir, repo_name):
    names = [f"{repo_name}-{i}" for i in range(5)]
    for name in names:
        ocimodel.push(model_dir, f"{registry.host}/{name}:1")
    with RegistryClient(registry.host) as client:
        # n=2 makes distribution answer in pages with a relative Link header.
        listed = client.catalog(page_size=2)
    assert set(names) <= set(listed)
    assert ocimodel.catalog(registry.host) == listed


def test_registry_error_codes_are_typed(registry, model_dir, repo_name):
    ocimodel.push(model_dir, f"{registry.host}/{repo_name}:1")
    with RegistryClient(registry.host) as client:
        with pytest.raises(NotFound) as missing_tag:
            client.get_manifest(repo_name, "no-such-tag")
        assert missing_tag.value.code == "MANIFEST_UNKNOWN"
        assert missing_tag.value.status == 404
        # A manifest naming a blob the registry does not have is refused with its OCI code.
        config = b"{}"
        manifest = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {"mediaType": mt.OCI_EMPTY, "digest": digest_bytes(config), "size": 2},
            "layers": [{"mediaType": "application/octet-stream", "digest": digest_bytes(b"absent"), "size": 6}],
        }
        client.upload_blob(repo_name, digest_bytes(config), 2, [config])
        with pytest.raises(RegistryError) as refused:
            client.put_manifest(repo_name, "broken", json.dumps(manifest).encode(), mt.OCI_MANIFEST)
        assert refused.value.code == "MANIFEST_BLOB_UNKNOWN"
        assert refused.value.status == 400


def test_manifest_by_digest_is_fetched_and_verified(registry, model_dir, repo_name):
    pushed = ocimodel.push(model_dir, f"{registry.host}/{repo_name}:1")
    with RegistryClient(registry.host) as client:
        fetched = client.get_manifest(repo_name, pushed.digest)
        by_head = client.head_manifest(repo_name, "1")
    assert fetched.descriptor.digest == pushed.digest
    assert digest_bytes(fetched.data) == pushed.digest
    assert fetched.descriptor.media_type == mt.OCI_MANIFEST
    assert by_head is not None and by_head.digest == pushed.digest and by_head.size == len(fetched.data)


class _PagedTags(BaseHTTPRequestHandler):
    """A spec-following tag list with Link pagination (the test registry has none)."""

    pages = {
        "/v2/m/tags/list": (["a", "b"], '</v2/m/tags/list?n=2&last=b>; rel="next"'),
        "/v2/m/tags/list?n=2&last=b": (["c", "d"], '<{base}/v2/m/tags/list?n=2&last=d>; rel="next"'),
        "/v2/m/tags/list?n=2&last=d": (["e"], None),
        "/v2/evil/tags/list": (["x"], '<http://198.51.100.7/v2/evil/tags/list?last=x>; rel="next"'),
    }

    def do_GET(self):  # noqa: N802
        tags, link = self.pages.get(self.path, (None, None))
        if tags is None:
            self.send_response(404)
            self.end_headers()
            return
        body = json.dumps({"name": self.path.split("/")[2], "tags": tags}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if link:
            self.send_header("Link", link.format(base=f"http://127.0.0.1:{self.server.server_port}"))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def paged_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PagedTags)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.mark.slow
def test_tag_list_follows_relative_and_absolute_links(paged_server):
    with RegistryClient(paged_server) as client:
        assert client.list_tags("m") == ["a", "b", "c", "d", "e"]


@pytest.mark.slow
def test_tag_list_refuses_a_link_to_another_host(paged_server):
    with RegistryClient(paged_server) as client:
        with pytest.raises(RegistryError, match="another host"):
            client.list_tags("evil")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("localhost:5000", True),
        ("127.0.0.1:5000", True),
        ("127.3.4.5", True),
        ("[::1]:5000", True),
        ("example.com", False),
        ("example.com:5000", False),
        ("10.0.0.1:5000", False),
        ("ghcr.io", False),
    ],
)
def test_plain_http_only_for_loopback_by_default(host, loopback, monkeypatch):
    monkeypatch.delenv("OCIMODEL_PLAIN_HTTP", raising=False)
    assert is_loopback_host(host) is loopback
    assert plain_http_wanted(host, None) is loopback
    assert RegistryClient(host).base_url.startswith("http://" if loopback else "https://")


def test_plain_http_when_asked(monkeypatch):
    monkeypatch.delenv("OCIMODEL_PLAIN_HTTP", raising=False)
    assert plain_http_wanted("registry.example.com", True) is True
    assert plain_http_wanted("localhost:5000", False) is False
    monkeypatch.setenv("OCIMODEL_PLAIN_HTTP", "1")
    assert RegistryClient("registry.example.com").base_url == "http://registry.example.com"


class _Recorder(BaseHTTPRequestHandler):
    """Registry A asks for Basic auth and sends uploads to host B; both record headers."""

    seen: list[tuple[str, str, str | None]] = []
    upload_location = ""

    def _answer(self, status, headers=()):
        self.seen.append((self.server.label, f"{self.command} {self.path}", self.headers.get("Authorization")))
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):  # noqa: N802
        if self.headers.get("Authorization") is None:
            self._answer(401, [("WWW-Authenticate", 'Basic realm="test"')])
        else:
            self._answer(202, [("Location", self.upload_location)])

    def do_PUT(self):  # noqa: N802
        self._answer(201)

    def log_message(self, *args):
        pass


def _serve(host: str, label: str) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, 0), _Recorder)
    server.label = label
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.slow
def test_credentials_never_follow_an_upload_location_to_another_host():
    _Recorder.seen = []
    registry = _serve("127.0.0.1", "registry")
    elsewhere = _serve("127.0.0.2", "elsewhere")
    try:
        _Recorder.upload_location = f"http://127.0.0.2:{elsewhere.server_port}/upload?_state=x"
        data = b"model bytes"
        with RegistryClient(f"127.0.0.1:{registry.server_port}", credentials=ocimodel.Credentials("alice", "s3cret")) as client:
            client.upload_blob("team/m", digest_bytes(data), len(data), [data])
    finally:
        registry.shutdown()
        elsewhere.shutdown()
    assert any(label == "registry" and auth and auth.startswith("Basic ") for label, _, auth in _Recorder.seen)
    puts = [(label, auth) for label, request, auth in _Recorder.seen if request.startswith("PUT")]
    assert puts == [("elsewhere", None)]
