"""A forward HTTP proxy for tests: what HTTPS_PROXY / HTTP_PROXY point at.

Stdlib only (no ocimodel imports). It listens on a free 127.0.0.1 port and serves what a
corporate proxy serves:

- plain HTTP forwarding: a request with an absolute-form target
  (``GET http://registry.example:5000/v2/ HTTP/1.1``) is sent on to that host in origin
  form, without the ``Proxy-*`` headers, and its answer relayed back;
- ``CONNECT host:port`` tunnels (for ``https://`` targets): ``200`` and then bytes both
  ways until either side closes.

Names are resolved by the proxy alone, from ``hosts`` (name -> IP address); IP literals are
used as they are, and any other name gets ``502`` (it never asks DNS). A client that
reaches ``registry.example:PORT`` with ``hosts={"registry.example": "127.0.0.1"}`` has
therefore gone through the proxy: it could not have resolved the name itself.

``credentials=(user, password)``: every request must carry ``Proxy-Authorization: Basic``
of them, or gets ``407`` with ``Proxy-Authenticate``. ``tls=(cert, key)``: the proxy
speaks TLS itself (an ``https://`` proxy URL). ``seen`` records every request (method,
target, the Proxy-Authorization header, the Host header), in order.

    with ForwardProxy({"registry.example": "127.0.0.1"}) as proxy:
        env HTTP_PROXY=proxy.url ...
        proxy.targets("GET")      # ["http://registry.example:5000/v2/", ...]

Bounded: sockets have timeouts, threads are daemons and ``stop()`` shuts every socket.
"""

from __future__ import annotations

import base64
import ipaddress
import select
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["ForwardProxy", "Seen"]

IO_TIMEOUT = 30.0
MAX_HEAD = 64 * 1024
CHUNK = 256 * 1024
_HOP_HEADERS = {"proxy-authorization", "proxy-connection", "connection", "keep-alive"}


class _Closed(Exception):
    pass


@dataclass(frozen=True)
class Seen:
    method: str
    target: str  # as the client sent it: absolute form, or host:port for CONNECT
    proxy_authorization: str | None
    host_header: str | None


class _Reader:
    def __init__(self, sock: socket.socket, buffered: bytes = b"") -> None:
        self.sock = sock
        self.buffer = bytearray(buffered)

    def _fill(self) -> None:
        try:
            data = self.sock.recv(CHUNK)
        except (OSError, ssl.SSLError) as exc:
            raise _Closed(str(exc)) from None
        if not data:
            raise _Closed("eof")
        self.buffer += data

    def head(self) -> bytes | None:
        """One message head (through the blank line); None at a clean EOF before it."""
        while b"\r\n\r\n" not in self.buffer:
            if len(self.buffer) > MAX_HEAD:
                raise _Closed("head too large")
            try:
                self._fill()
            except _Closed:
                if not self.buffer:
                    return None
                raise
        end = self.buffer.index(b"\r\n\r\n") + 4
        head = bytes(self.buffer[:end])
        del self.buffer[:end]
        return head

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self._fill()
        end = self.buffer.index(b"\r\n") + 2
        line = bytes(self.buffer[:end])
        del self.buffer[:end]
        return line

    def copy(self, count: int, out: socket.socket) -> None:
        while count > 0:
            if not self.buffer:
                self._fill()
            piece = bytes(self.buffer[:count])
            del self.buffer[: len(piece)]
            out.sendall(piece)
            count -= len(piece)

    def copy_to_eof(self, out: socket.socket) -> None:
        while True:
            if self.buffer:
                out.sendall(bytes(self.buffer))
                self.buffer.clear()
            try:
                self._fill()
            except _Closed:
                return


def _parse(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        if line and ":" in line:
            name, value = line.split(":", 1)
            headers.append((name.strip(), value.strip()))
    return lines[0], headers


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def _relay_body(reader: _Reader, out: socket.socket, headers: list[tuple[str, str]], *, until_eof: bool) -> None:
    if (_header(headers, "transfer-encoding") or "").lower().endswith("chunked"):
        while True:
            line = reader.line()
            out.sendall(line)
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers, up to the blank line
                    trailer = reader.line()
                    out.sendall(trailer)
                    if trailer == b"\r\n":
                        return
            reader.copy(size + 2, out)
    length = _header(headers, "content-length")
    if length is not None:
        reader.copy(int(length), out)
    elif until_eof:
        reader.copy_to_eof(out)


class ForwardProxy:
    def __init__(self, hosts: dict[str, str] | None = None, *, credentials: tuple[str, str] | None = None,
                 tls: tuple[Path, Path] | None = None) -> None:
        self.hosts = {k.lower(): v for k, v in (hosts or {}).items()}
        self.credentials = credentials
        self._context: ssl.SSLContext | None = None
        if tls is not None:
            self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._context.load_cert_chain(str(tls[0]), str(tls[1]))
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self.port = 0
        self.host = ""
        self.url = ""

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> ForwardProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"{'https' if self._context else 'http'}://{self.host}"
        threading.Thread(target=self._accept_loop, name="forward-proxy", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            sockets, self._sockets = list(self._sockets), set()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def __enter__(self) -> ForwardProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def url_with(self, user: str, password: str) -> str:
        """The proxy URL with credentials in it, as a user writes HTTPS_PROXY."""
        scheme, rest = self.url.split("://", 1)
        return f"{scheme}://{user}:{password}@{rest}"

    def targets(self, method: str | None = None) -> list[str]:
        with self._lock:
            return [s.target for s in self.seen if method is None or s.method == method]

    # -- serving -------------------------------------------------------------------------

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _accept_loop(self) -> None:
        while self._listener is not None:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), name="forward-proxy-conn", daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        client.settimeout(IO_TIMEOUT)
        self._track(client)
        try:
            if self._context is not None:
                client = self._context.wrap_socket(client, server_side=True)
                self._track(client)
            reader = _Reader(client)
            while True:
                head = reader.head()
                if head is None:
                    return
                if not self._one(reader, client, head):
                    return
        except (_Closed, OSError, ValueError):
            return
        finally:
            try:
                client.close()
            except OSError:
                pass

    def _authorized(self, headers: list[tuple[str, str]]) -> bool:
        if self.credentials is None:
            return True
        wanted = "Basic " + base64.b64encode(":".join(self.credentials).encode()).decode()
        return _header(headers, "proxy-authorization") == wanted

    def _resolve(self, host: str) -> str | None:
        host = host.strip("[]").lower()
        try:
            ipaddress.ip_address(host)
            return host
        except ValueError:
            return self.hosts.get(host)

    def _one(self, reader: _Reader, client: socket.socket, head: bytes) -> bool:
        """Serve one request; whether the client connection may carry another."""
        request_line, headers = _parse(head)
        method, target, _ = request_line.split(" ", 2)
        with self._lock:
            self.seen.append(Seen(method, target, _header(headers, "proxy-authorization"), _header(headers, "host")))
        if not self._authorized(headers):
            client.sendall(
                b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"test proxy\"\r\n"
                b"Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
            return False
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            address = self._resolve(host)
            if address is None:
                client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return False
            upstream = self._connect(client, address, int(port))
            if upstream is None:
                return False
            try:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                self._pipe(client, upstream, bytes(reader.buffer))
            finally:
                upstream.close()
            return False
        parts = urlsplit(target)
        address = self._resolve(parts.hostname or "") if parts.scheme == "http" else None
        if address is None:
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return False
        upstream = self._connect(client, address, parts.port or 80)
        if upstream is None:
            return False
        try:
            path = parts.path or "/"
            if parts.query:
                path += "?" + parts.query
            lines = [f"{method} {path} HTTP/1.1"]
            lines += [f"{k}: {v}" for k, v in headers if k.lower() not in _HOP_HEADERS]
            lines.append("Connection: close")
            upstream.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            _relay_body(reader, upstream, headers, until_eof=False)
            answer = _Reader(upstream)
            while True:
                response_head = answer.head()
                if response_head is None:
                    raise _Closed("upstream closed")
                status_line, response_headers = _parse(response_head)
                status = int(status_line.split(" ", 2)[1])
                if status >= 200 or status == 101:
                    break
                client.sendall(response_head)  # 100 Continue: pass on, read the real answer
            framed = (
                method == "HEAD" or status in (204, 304)
                or _header(response_headers, "content-length") is not None
                or (_header(response_headers, "transfer-encoding") or "").lower().endswith("chunked")
            )
            out = [status_line] + [f"{k}: {v}" for k, v in response_headers if k.lower() not in _HOP_HEADERS]
            if not framed:
                out.append("Connection: close")
            client.sendall(("\r\n".join(out) + "\r\n\r\n").encode("latin-1"))
            if method != "HEAD" and status not in (204, 304):
                _relay_body(answer, client, response_headers, until_eof=not framed)
            return framed
        finally:
            upstream.close()

    def _connect(self, client: socket.socket, address: str, port: int) -> socket.socket | None:
        """A connection to the upstream, or None after answering 502 (as a proxy does)."""
        try:
            upstream = socket.create_connection((address, port), timeout=IO_TIMEOUT)
        except OSError:
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return None
        self._track(upstream)
        return upstream

    def _pipe(self, client: socket.socket, upstream: socket.socket, early: bytes) -> None:
        """Bytes both ways in one thread (an SSL socket must not be read and written from
        two threads at once), until either side closes."""
        if early:
            upstream.sendall(early)
        pairs = {client: upstream, upstream: client}
        while True:
            ready = [s for s in (client,) if isinstance(s, ssl.SSLSocket) and s.pending()]
            if not ready:
                ready, _, _ = select.select([client, upstream], [], [], IO_TIMEOUT)
                if not ready:
                    return
            for sock in ready:
                try:
                    data = sock.recv(CHUNK)
                except (OSError, ssl.SSLError):
                    return
                if not data:
                    return
                pairs[sock].sendall(data)
