"""Large blob bodies read straight from the socket (transport/body.py, docs/raw-body-reads.md).

What a user relies on: the pulled file is the blob byte for byte, whatever the network
did. A cut body resumes from its last byte, a stalled one times out and resumes, a wrong
byte refuses the whole blob, a registry that ignores Range on the resume still works, and
a body that is chunked, short or over TLS is read correctly. Each test checks that the
socket path was the one taken (a spy around the real reader), so none of them passes by
falling back to httpx's reads."""

from __future__ import annotations

import hashlib
import random
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

import ocimodel
from ocimodel.errors import DigestMismatch
from ocimodel.transport import body
from tests.support.faultproxy import FaultProxy
from tests.support.modeltrees import one_weights_model
from tests.support.pki import make_pki
from tests.support.registry import LocalRegistry

MiB = 1 << 20
SIZE = 3 * MiB + 4321
POLICY = ocimodel.RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05)
OPTIONS = ocimodel.ConnectionOptions(retry=POLICY)


@pytest.fixture(autouse=True)
def _one_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCIMODEL_PULL_CONNECTIONS", "1")  # the blob as one stream, not in parts


@pytest.fixture
def raw_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The byte counts the socket reader was asked for, one per body read from the socket."""
    calls: list[int] = []
    plain, tls = body._plain_pieces, body._tls_pieces

    def plain_spy(sock, remaining):
        calls.append(remaining)
        yield from plain(sock, remaining)

    def tls_spy(sock, remaining):
        calls.append(remaining)
        yield from tls(sock, remaining)

    monkeypatch.setattr(body, "_plain_pieces", plain_spy)
    monkeypatch.setattr(body, "_tls_pieces", tls_spy)
    return calls


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return one_weights_model(tmp_path_factory.mktemp("raw") / "model", SIZE, 21, "raw")


@pytest.fixture(scope="module")
def pushed(registry, model: Path) -> str:
    ref = f"{registry.host}/test/raw-{secrets.token_hex(3)}:v1"
    ocimodel.push(model, ref, options=OPTIONS)
    return ref


@pytest.fixture
def proxy(registry):
    with FaultProxy(registry.host) as p:
        yield p


def _hex(model: Path) -> str:
    return hashlib.sha256((model / "weights.bin").read_bytes()).hexdigest()


def _same(out: Path, model: Path) -> bool:
    return (out / "weights.bin").read_bytes() == (model / "weights.bin").read_bytes()


# -- through the real registry ----------------------------------------------------------------


def test_a_large_body_is_read_from_the_socket_whole(proxy, pushed, model, tmp_path, raw_reads):
    out = tmp_path / "out"
    result = ocimodel.pull(proxy.via(pushed), out, options=OPTIONS)

    assert _same(out, model)
    assert len(raw_reads) == 1 and 0 < raw_reads[0] <= SIZE  # the rest after httpx's first piece
    assert proxy.count("GET", _hex(model)) == 1
    assert result.bytes_downloaded == SIZE + (model / "config.json").stat().st_size
    assert result.retries == 0


def test_a_cut_body_resumes_from_its_last_byte(proxy, pushed, model, tmp_path, raw_reads):
    hexdigest = _hex(model)
    cut = proxy.cut("GET", hexdigest, after=2 * MiB)
    out = tmp_path / "out"
    result = ocimodel.pull(proxy.via(pushed), out, options=OPTIONS)

    assert _same(out, model)
    assert cut.fired == 1
    gets = proxy.seen("GET", hexdigest)
    assert [s.headers.get("range") for s in gets] == [None, f"bytes={2 * MiB}-"]
    assert result.retries == 1
    assert len(raw_reads) == 2  # the first body and the resumed rest (just over 1 MiB)


def test_a_stalled_body_times_out_and_resumes(proxy, pushed, model, tmp_path, raw_reads):
    hexdigest = _hex(model)
    stall = proxy.stall(5.0, "GET", hexdigest, after=MiB + MiB // 2)
    options = ocimodel.ConnectionOptions(retry=POLICY, read_timeout=0.5)
    out = tmp_path / "out"
    result = ocimodel.pull(proxy.via(pushed), out, options=options)

    assert _same(out, model)
    assert stall.fired == 1
    gets = proxy.seen("GET", hexdigest)
    assert [s.headers.get("range") for s in gets] == [None, f"bytes={MiB + MiB // 2}-"]
    assert result.retries == 1
    assert raw_reads  # the socket read is what timed out


def test_a_wrong_byte_past_the_first_piece_refuses_the_blob(proxy, pushed, model, tmp_path, raw_reads):
    flipped = proxy.corrupt("GET", _hex(model), after=SIZE - 10)
    out = tmp_path / "out"
    with pytest.raises(DigestMismatch):
        ocimodel.pull(proxy.via(pushed), out, options=OPTIONS)
    assert flipped.fired == 1
    assert raw_reads
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ocimodel-pull-")]


def test_a_registry_that_ignores_range_on_the_resume(proxy, pushed, model, tmp_path, raw_reads):
    """The resume asks for the rest and gets the whole blob (200): what it already has is
    skipped, and the file is still the blob."""
    hexdigest = _hex(model)
    proxy.cut("GET", hexdigest, after=2 * MiB)
    proxy.ignore_range("GET", hexdigest)
    out = tmp_path / "out"
    result = ocimodel.pull(proxy.via(pushed), out, options=OPTIONS)

    assert _same(out, model)
    assert [s.status for s in proxy.seen("GET", hexdigest)] == [200, 200]
    assert result.retries == 1
    assert len(raw_reads) == 2  # both whole bodies came from the socket


@pytest.mark.registry
def test_a_large_body_over_tls_is_read_from_the_tls_socket(tmp_path, model, raw_reads, monkeypatch):
    pki = make_pki(tmp_path / "pki")
    options = ocimodel.ConnectionOptions(retry=POLICY, plain_http=False, tls=ocimodel.TlsOptions(ca_file=pki.ca))
    with LocalRegistry(tls=pki.server, ca=pki.ca) as reg:
        ref = f"{reg.host}/test/raw-tls:v1"
        ocimodel.push(model, ref, options=options)
        raw_reads.clear()
        out = tmp_path / "out"
        ocimodel.pull(ref, out, options=options)
    assert _same(out, model)
    assert len(raw_reads) == 1


def test_several_large_bodies_at_once_share_one_pool(registry, tmp_path, raw_reads):
    """Workers pulling large files at the same time from one client: each body is read
    from its own connection, none of them is handed to another request half read."""
    model = tmp_path / "many"
    model.mkdir()
    rng = random.Random(23)
    for n in range(6):
        (model / f"shard-{n}.bin").write_bytes(rng.randbytes(MiB + 1000 * n))
    ref = f"{registry.host}/test/raw-many-{secrets.token_hex(3)}:v1"
    ocimodel.push(model, ref, options=OPTIONS)
    raw_reads.clear()
    out = tmp_path / "out"
    ocimodel.pull(ref, out, options=OPTIONS, concurrency=4)
    for n in range(6):
        assert (out / f"shard-{n}.bin").read_bytes() == (model / f"shard-{n}.bin").read_bytes()
    assert len(raw_reads) == 6


# -- framing, against a small HTTP/1.1 server -------------------------------------------------


class _Server:
    """Serves ``/exact`` (Content-Length), ``/chunked`` (Transfer-Encoding: chunked) and
    ``/short`` (a Content-Length it does not keep: the connection closes early), all of
    the same bytes, on one keep-alive connection per client."""

    def __init__(self, data: bytes) -> None:
        self.connections = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                server.connections += 1
                super().setup()

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                if self.path == "/chunked":
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for start in range(0, len(data), 300_000):
                        piece = data[start : start + 300_000]
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    self.wfile.write(b"0\r\n\r\n")
                    return
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.path == "/short":
                    self.wfile.write(data[: len(data) // 2])
                    self.close_connection = True
                    return
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


DATA = random.Random(22).randbytes(2 * MiB + 77)


def _read(client: httpx.Client, url: str) -> bytes:
    with client.stream("GET", url) as response:
        return b"".join(body.body_chunks(response, 5.0))


def test_a_plainly_framed_body_is_exact_and_its_connection_not_reused(raw_reads):
    with _Server(DATA) as server, httpx.Client() as client:
        assert _read(client, server.url + "/exact") == DATA
        assert _read(client, server.url + "/exact") == DATA  # a new connection, not a confused one
        assert len(raw_reads) == 2
        assert server.connections == 2


def test_a_body_from_another_host_is_read_from_the_socket_only_when_very_large(raw_reads, monkeypatch):
    """From another host a new connection costs a round trip or more (and a handshake over
    TLS): a 2 MiB body keeps its connection there; a body over REMOTE_RAW_MIN_BYTES does not."""
    monkeypatch.setattr(body, "_to_this_machine", lambda sock: False)  # tests reach only loopback
    with _Server(DATA) as server, httpx.Client() as client:
        assert _read(client, server.url + "/exact") == DATA
        assert _read(client, server.url + "/exact") == DATA
        assert raw_reads == [] and server.connections == 1
        monkeypatch.setattr(body, "REMOTE_RAW_MIN_BYTES", MiB)
        assert _read(client, server.url + "/exact") == DATA
        assert len(raw_reads) == 1


def test_a_chunked_body_is_read_through_httpx(raw_reads):
    with _Server(DATA) as server, httpx.Client() as client:
        assert _read(client, server.url + "/chunked") == DATA
        assert _read(client, server.url + "/chunked") == DATA
    assert raw_reads == []
    assert server.connections == 1  # read to its end by h11: the connection was reused


def test_a_body_shorter_than_its_length_is_an_error(raw_reads):
    with _Server(DATA) as server, httpx.Client() as client:
        with pytest.raises(httpx.RemoteProtocolError):
            _read(client, server.url + "/short")
    assert raw_reads


# -- TLS framing: a tunnel through an https:// proxy, a stall inside a gathered piece ---------


def _tls_contexts(tmp_path: Path):
    import ssl

    pki = make_pki(tmp_path / "pki")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(*map(str, pki.server))
    return server, ssl.create_default_context(cafile=str(pki.ca))


def _listen(handle) -> int:
    """A loopback listener that runs ``handle(conn)`` in a thread per connection."""
    import socket

    listener = socket.create_server(("127.0.0.1", 0))

    def accept() -> None:
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return listener.getsockname()[1]


def _head(conn) -> bytes:
    head = b""
    while b"\r\n\r\n" not in head:
        head += conn.recv(4096)
    return head


def _pipe(source, sink) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        sink.close()


def test_a_body_through_a_tls_proxy_tunnel_is_read_through_httpx(tmp_path, raw_reads, monkeypatch):
    """TLS inside TLS: httpcore names the tunnel's socket, whose bytes are the inner TLS
    records; reading it would hand those over as the body."""
    import socket

    server_tls, client_tls = _tls_contexts(tmp_path)

    def origin(conn) -> None:
        conn = server_tls.wrap_socket(conn, server_side=True)
        _head(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(DATA) + DATA)
        _head(conn)  # until the client goes

    def tunnel(conn) -> None:
        conn = server_tls.wrap_socket(conn, server_side=True)
        host, port = _head(conn).split(b" ")[1].decode().rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)))
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        threading.Thread(target=_pipe, args=(upstream, conn), daemon=True).start()
        _pipe(conn, upstream)

    origin_port, proxy_port = _listen(origin), _listen(tunnel)
    proxy = httpx.Proxy(f"https://127.0.0.1:{proxy_port}", ssl_context=client_tls)
    with httpx.Client(transport=httpx.HTTPTransport(verify=client_tls, proxy=proxy)) as client:
        assert _read(client, f"https://127.0.0.1:{origin_port}/") == DATA
    assert raw_reads == []


def test_a_tls_read_that_stalls_mid_piece_keeps_what_arrived(tmp_path, monkeypatch):
    """A resume starts after the last byte handed on: what a gathered piece held when the
    read timed out is handed on first, not fetched again."""
    server_tls, client_tls = _tls_contexts(tmp_path)
    sent = MiB + MiB // 2  # the head's read takes at most a record; the rest is a part piece
    done = threading.Event()

    def stalling(conn) -> None:
        conn = server_tls.wrap_socket(conn, server_side=True)
        _head(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(DATA) + DATA[:sent])
        done.wait(10)

    port = _listen(stalling)
    got = bytearray()
    with httpx.Client(verify=client_tls) as client:
        with client.stream("GET", f"https://127.0.0.1:{port}/") as response:
            with pytest.raises(httpx.ReadTimeout):
                for piece in body.body_chunks(response, 0.5):
                    got += piece
    done.set()
    assert bytes(got) == DATA[:sent]
