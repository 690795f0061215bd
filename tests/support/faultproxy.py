"""A fault-injecting HTTP/1.1 proxy for tests (docs/threats.md 7).

Stdlib only (no ocimodel imports). It listens on a free 127.0.0.1 port, relays every
request to one upstream (the test registry) and follows a script of faults a test sets
up: cut a connection after N bytes of a request or response body, answer the next K
matching requests itself (500, 503, 429 with Retry-After...) without forwarding them,
stall for S seconds (then go on, or cut), flip one byte of a response body (``corrupt``), or
strip ``Range`` (a registry that ignores it). ``range`` limits a rule to requests whose
``Range`` header matches it (searched; a request without one never matches).

    with FaultProxy(registry.host) as proxy:
        cut = proxy.cut(method="GET", path=r"/blobs/sha256:", after=8 << 20, times=2)
        proxy.reply(503, method="POST", path=r"/blobs/uploads/", times=3)
        proxy.reply(429, method="GET", path=r"/manifests/", retry_after="1")
        ocimodel.pull(f"{proxy.host}/team/model:1", dest)
        assert cut.fired == 2
        proxy.settle()           # after an interrupted transfer: wait until the record is final
        proxy.requests           # every request seen, in order, with what was done to it

Rules are checked in the order they were added; a request gets the first rule that
matches it (``method`` must match the whole method, ``path`` is searched in the request
target, query included) and still has uses left. ``ignore_range`` rules are checked
apart, so a request may both lose its Range and meet a cut or a stall. ``times=None`` means forever; ``skip``
lets that many matching requests pass first. A rule counts as used only when its fault
takes effect (``fired``): a cut "after 8 MiB" attached to a 1 KiB response does not fire
and stays available for the next matching request. (So two concurrent requests may both
get a cut or stall rule with one use left; the one that reaches its byte first uses it
and the other goes through unharmed. A reply is used as soon as it is attached.)

``after`` counts body bytes relayed in ``direction`` ("up": the request body, "down":
the response body) and the fault fires before byte ``after + 1`` is relayed, so a cut
always truncates. ``after=None`` fires before a head is relayed: "up", before the
request reaches the upstream; "down", before the response head reaches the client.

Bounded by construction: sockets have timeouts, every relay loop ends at the end of a
framed body, at EOF or at a timeout, stalls end after their time (or at ``release()`` or
``stop()``), all threads are daemons and ``stop()`` shuts every socket down.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field

__all__ = ["FaultProxy", "Rule", "Seen"]

IO_TIMEOUT = 30.0  # seconds any single socket read or write may wait
MAX_HEAD = 64 * 1024
MAX_LINE = 8 * 1024
RELAY_CHUNK = 256 * 1024
MAX_REQUESTS_PER_CONNECTION = 100_000

_REASONS = {
    400: "Bad Request", 404: "Not Found", 408: "Request Timeout", 429: "Too Many Requests",
    500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Gateway Timeout",
}
_CODES = {429: "TOOMANYREQUESTS", 503: "UNAVAILABLE", 404: "BLOB_UPLOAD_UNKNOWN"}


class _Closed(Exception):
    """A peer closed, a socket timed out, or a fault cut the connection."""


@dataclass(eq=False)
class Rule:
    """One scripted fault. Read ``fired`` (and ``started`` for stalls) in assertions."""

    kind: str  # "cut" | "reply" | "stall" | "corrupt" | "ignore_range"
    method: str = ".*"
    path: str = ".*"
    times: int | None = 1
    skip: int = 0
    direction: str = "down"
    after: int | None = 0
    status: int = 500
    code: str | None = None
    retry_after: str | None = None
    close: bool = False
    seconds: float = 0.0
    then: str = "continue"
    range: str | None = None  # regex searched in the request's Range header
    location: str | None = None  # a reply's Location header (a redirect)
    matched: int = 0  # requests this rule was attached to
    fired: int = 0  # times the fault took effect
    started: threading.Event = field(default_factory=threading.Event, repr=False)
    _release: threading.Event = field(default_factory=threading.Event, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in ("cut", "reply", "stall", "corrupt", "ignore_range"):
            raise ValueError(f"unknown fault kind {self.kind!r}")
        if self.direction not in ("up", "down"):
            raise ValueError(f"direction must be 'up' or 'down', not {self.direction!r}")
        if self.then not in ("continue", "cut"):
            raise ValueError(f"then must be 'continue' or 'cut', not {self.then!r}")
        self._method = re.compile(self.method)
        self._path = re.compile(self.path)
        self._range = re.compile(self.range) if self.range is not None else None

    def release(self) -> None:
        """End this rule's stalls now (and any later one at once)."""
        self._release.set()

    def _matches(self, method: str, target: str, range_header: str | None = None) -> bool:
        if self._range is not None and (range_header is None or not self._range.search(range_header)):
            return False
        return bool(self._method.fullmatch(method) and self._path.search(target))

    def _left(self) -> bool:
        return self.times is None or self.fired < self.times


@dataclass
class Seen:
    """One request as the proxy saw it and what became of it."""

    method: str
    target: str
    headers: dict[str, str]
    status: int | None = None  # the status the client was sent (None: none was)
    fault: str | None = None  # kind of the rule that fired on this request
    up: int = 0  # request body bytes relayed
    down: int = 0  # response body bytes relayed

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


class FaultProxy:
    def __init__(self, upstream: str, *, io_timeout: float = IO_TIMEOUT) -> None:
        host, _, port = upstream.rpartition(":")
        self.upstream = (host or "127.0.0.1", int(port))
        self.io_timeout = io_timeout
        self.rules: list[Rule] = []
        self.requests: list[Seen] = []
        self.connections = 0
        self._lock = threading.Lock()
        # Requests read and not yet handled to their end (see settle()).
        self._in_hand = 0
        self._settled = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self.port = 0
        self.host = ""

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> FaultProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        listener.settimeout(0.1)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self.host = f"127.0.0.1:{self.port}"
        thread = threading.Thread(target=self._accept_loop, name="faultproxy-accept", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def via(self, ref: str) -> str:
        """The same reference (``HOST/repo[:tag|@digest]``), through this proxy."""
        return self.host + ref[ref.index("/"):]

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            for rule in self.rules:
                rule.release()
            sockets = list(self._sockets)
        for sock in sockets:
            _shutdown(sock)
        for thread in list(self._threads):
            thread.join(timeout=5.0)
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the script ---------------------------------------------------------------------

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def cut(self, method: str = ".*", path: str = ".*", *, after: int | None = 0,
            direction: str = "down", times: int | None = 1, skip: int = 0, range: str | None = None) -> Rule:
        """Close both sides of the connection after ``after`` body bytes."""
        return self.add(Rule("cut", method, path, times=times, skip=skip, direction=direction, after=after,
                             range=range))

    def corrupt(self, method: str = "GET", path: str = ".*", *, after: int = 0, times: int | None = 1,
                skip: int = 0, range: str | None = None) -> Rule:
        """Flip byte number ``after`` (from 0) of a response body; the rest is relayed as is."""
        return self.add(Rule("corrupt", method, path, times=times, skip=skip, after=after, range=range))

    def reply(self, status: int, method: str = ".*", path: str = ".*", *, times: int | None = 1,
              skip: int = 0, retry_after: str | None = None, code: str | None = None,
              close: bool = False, location: str | None = None) -> Rule:
        """Answer ``status`` without forwarding. The request body is read and dropped, or,
        with ``close=True``, left unread and the connection closed after the answer."""
        return self.add(Rule("reply", method, path, times=times, skip=skip, status=status, code=code,
                             retry_after=retry_after, close=close, location=location))

    def stall(self, seconds: float, method: str = ".*", path: str = ".*", *, after: int | None = 0,
              direction: str = "down", then: str = "continue", times: int | None = 1,
              skip: int = 0) -> Rule:
        """Relay nothing more in ``direction`` for ``seconds``, then go on or cut."""
        return self.add(Rule("stall", method, path, times=times, skip=skip, direction=direction,
                             after=after, seconds=seconds, then=then))

    def ignore_range(self, method: str = "GET", path: str = ".*", *, times: int | None = None) -> Rule:
        """Strip ``Range`` from matching requests: the upstream answers 200 with the whole body."""
        return self.add(Rule("ignore_range", method, path, times=times))

    def clear(self) -> None:
        """Drop every rule (releasing stalls) and the request log."""
        with self._lock:
            for rule in self.rules:
                rule.release()
            self.rules.clear()
            self.requests.clear()

    def seen(self, method: str = ".*", path: str = ".*") -> list[Seen]:
        """Requests seen so far whose method matches ``method`` and target ``path`` (regex search)."""
        m, p = re.compile(method), re.compile(path)
        with self._lock:
            return [s for s in self.requests if m.fullmatch(s.method) and p.search(s.target)]

    def count(self, method: str = ".*", path: str = ".*") -> int:
        return len(self.seen(method, path))

    def settle(self, timeout: float | None = None) -> None:
        """Wait until every request seen so far is handled to its end (its answer relayed,
        or its connection closed), so that what ``requests`` records of it (status, body
        bytes) is final. A client acts on an answer as soon as it has it, maybe before
        the thread that relayed it has recorded it: read the record after an interrupted
        transfer only once the proxy has settled. (It does not wait for idle
        connections, nor for the upstream to finish a request the client dropped.)"""
        with self._settled:
            if not self._settled.wait_for(lambda: self._in_hand == 0, self.io_timeout if timeout is None else timeout):
                raise TimeoutError(f"{self._in_hand} request(s) still in hand")

    def _handled(self) -> None:
        with self._settled:
            self._in_hand -= 1
            if self._in_hand == 0:
                self._settled.notify_all()

    # -- internals ----------------------------------------------------------------------

    def _match(self, method: str, target: str, kinds: tuple[str, ...], range_header: str | None = None) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.kind not in kinds or not rule._matches(method, target, range_header) or not rule._left():
                    continue
                if rule.skip > 0:
                    rule.skip -= 1
                    continue
                rule.matched += 1
                if rule.kind == "reply":
                    rule.fired += 1  # used now, so concurrent requests fall to the next rule
                return rule
        return None

    def _take(self, rule: Rule) -> bool:
        """Use one of the rule's tries, if any is left (concurrent requests may race)."""
        with self._lock:
            if not rule._left():
                return False
            rule.fired += 1
            return True

    def _sleep(self, rule: Rule) -> None:
        deadline = time.monotonic() + rule.seconds
        while not self._stop.is_set() and not rule._release.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            rule._release.wait(min(left, 0.05))

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
            with self._lock:
                self.connections += 1
                self._threads[:] = [t for t in self._threads if t.is_alive()]
            thread = threading.Thread(target=self._serve, args=(self._track(client),),
                                      name="faultproxy-conn", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        up_reader: _Reader | None = None
        reader = _Reader(client)
        in_hand = False  # a request of this connection is read and not yet handled to its end
        try:
            for _ in range(MAX_REQUESTS_PER_CONNECTION):
                if in_hand:
                    in_hand = False
                    self._handled()
                if self._stop.is_set():
                    return
                head = reader.head()
                if head is None:
                    return
                method, target, headers, lines = _parse_head(head)
                seen = Seen(method, target, {k.lower(): v for k, v in headers})
                with self._lock:
                    self.requests.append(seen)
                    self._in_hand += 1
                in_hand = True
                range_header = _header(headers, "range")
                rule = self._match(method, target, ("cut", "reply", "stall", "corrupt"), range_header)
                strip_range = self._match(method, target, ("ignore_range",), range_header)
                request_framing = _request_framing(headers)

                if rule is not None and rule.kind == "reply":
                    seen.fault = "reply"
                    if not rule.close:
                        self._relay(reader, request_framing, _Pipe(self, None, None, seen, "up"))
                    client.sendall(_reply(rule, method))
                    seen.status = rule.status
                    if rule.close or _wants_close(headers):
                        return
                    continue

                if strip_range is not None and _header(headers, "range") is not None and self._take(strip_range):
                    seen.fault = seen.fault or "ignore_range"
                    lines = [line for line in lines if not line.lower().startswith(b"range:")]
                    head = b"\r\n".join(lines) + b"\r\n\r\n"
                up_rule = rule if rule is not None and rule.direction == "up" else None
                down_rule = rule if rule is not None and rule.direction == "down" else None

                if up_rule is not None and up_rule.after is None:
                    _Pipe(self, client, up_rule, seen, "up").fire()
                if upstream is None:
                    upstream = self._track(socket.create_connection(self.upstream, timeout=self.io_timeout))
                    up_reader = _Reader(upstream)
                assert up_reader is not None
                upstream.sendall(head)
                self._relay(reader, request_framing, _Pipe(self, upstream, up_rule, seen, "up"))

                response_head = up_reader.head()
                if response_head is None:
                    return
                status, response_headers = _parse_status(response_head)
                if down_rule is not None and down_rule.after is None:
                    _Pipe(self, client, down_rule, seen, "down").fire()
                client.sendall(response_head)
                seen.status = status
                framing = _response_framing(method, status, response_headers)
                self._relay(up_reader, framing, _Pipe(self, client, down_rule, seen, "down"))
                if framing[0] == "eof" or _wants_close(headers) or _wants_close(response_headers):
                    return
        except (_Closed, OSError, ValueError, IndexError):  # a cut, a timeout, a malformed head
            return
        finally:
            self._untrack(client)
            self._untrack(upstream)
            if in_hand:
                self._handled()

    def _relay(self, reader: _Reader, framing: tuple[str, int], pipe: _Pipe) -> None:
        kind, length = framing
        if kind == "length":
            left = length
            while left > 0:
                data = reader.some(min(left, RELAY_CHUNK))
                pipe.send(data)
                left -= len(data)
        elif kind == "chunked":
            while True:
                line = reader.line()
                pipe.send(line)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while True:  # trailers, up to the empty line
                        trailer = reader.line()
                        pipe.send(trailer)
                        if trailer == b"\r\n":
                            return
                left = size + 2  # the data and its CRLF
                while left > 0:
                    data = reader.some(min(left, RELAY_CHUNK))
                    pipe.send(data)
                    left -= len(data)
        elif kind == "eof":
            while True:
                data = reader.some(RELAY_CHUNK, eof_ok=True)
                if not data:
                    return
                pipe.send(data)


class _Reader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def _fill(self) -> bool:
        data = self.sock.recv(RELAY_CHUNK)
        if not data:
            return False
        self.buffer += data
        return True

    def head(self) -> bytes | None:
        """A message head up to its blank line; None if the peer closed before a byte."""
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end >= 0:
                head = bytes(self.buffer[: end + 4])
                del self.buffer[: end + 4]
                return head
            if len(self.buffer) > MAX_HEAD:
                raise _Closed("head too long")
            if not self._fill():
                if self.buffer:
                    raise _Closed("closed inside a head")
                return None

    def line(self) -> bytes:
        while True:
            end = self.buffer.find(b"\r\n")
            if end >= 0:
                line = bytes(self.buffer[: end + 2])
                del self.buffer[: end + 2]
                return line
            if len(self.buffer) > MAX_LINE or not self._fill():
                raise _Closed("bad chunk line")

    def some(self, limit: int, *, eof_ok: bool = False) -> bytes:
        if not self.buffer and not self._fill():
            if eof_ok:
                return b""
            raise _Closed("closed inside a body")
        data = bytes(self.buffer[:limit])
        del self.buffer[:limit]
        return data


class _Pipe:
    """Writes one body to ``sock`` (None: drop it), counting bytes and applying ``rule``."""

    def __init__(self, proxy: FaultProxy, sock: socket.socket | None, rule: Rule | None,
                 seen: Seen, direction: str) -> None:
        self.proxy = proxy
        self.sock = sock
        self.rule = rule if rule is not None and rule.kind in ("cut", "stall", "corrupt") else None
        self.seen = seen
        self.direction = direction
        self.count = 0

    def send(self, data: bytes) -> None:
        if self.proxy._stop.is_set():
            raise _Closed("proxy stopping")
        rule = self.rule
        if rule is not None and rule.after is not None and self.count + len(data) > rule.after:
            head = rule.after - self.count
            if rule.kind == "corrupt":
                self.rule = None
                if self.proxy._take(rule):
                    self.seen.fault = "corrupt"
                    data = data[:head] + bytes([data[head] ^ 0xFF]) + data[head + 1:]
                self._write(data)
                return
            self._write(data[:head])
            data = data[head:]
            self.fire()
        self._write(data)

    def fire(self) -> None:
        rule, self.rule = self.rule, None
        if rule is None or not self.proxy._take(rule):
            return
        self.seen.fault = rule.kind
        if rule.kind == "cut":
            raise _Closed("cut")
        rule.started.set()
        self.proxy._sleep(rule)
        if rule.then == "cut":
            raise _Closed("cut after stall")

    def _write(self, data: bytes) -> None:
        if not data:
            return
        if self.sock is not None:
            self.sock.sendall(data)
        self.count += len(data)
        if self.direction == "up":
            self.seen.up += len(data)
        else:
            self.seen.down += len(data)


# -- HTTP helpers ----------------------------------------------------------------------


def _parse_head(head: bytes) -> tuple[str, str, list[tuple[str, str]], list[bytes]]:
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].decode("latin-1").split(" ")
    if len(parts) != 3:
        raise ValueError("bad request line")
    return parts[0], parts[1], _headers(lines[1:]), lines


def _parse_status(head: bytes) -> tuple[int, list[tuple[str, str]]]:
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].decode("latin-1").split(" ", 2)
    return int(parts[1]), _headers(lines[1:])


def _headers(lines: list[bytes]) -> list[tuple[str, str]]:
    out = []
    for line in lines:
        name, sep, value = line.decode("latin-1").partition(":")
        if sep:
            out.append((name.strip(), value.strip()))
    return out


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def _request_framing(headers: list[tuple[str, str]]) -> tuple[str, int]:
    if "chunked" in (_header(headers, "transfer-encoding") or "").lower():
        return ("chunked", 0)
    length = _header(headers, "content-length")
    return ("length", int(length)) if length else ("none", 0)


def _response_framing(method: str, status: int, headers: list[tuple[str, str]]) -> tuple[str, int]:
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return ("none", 0)
    if "chunked" in (_header(headers, "transfer-encoding") or "").lower():
        return ("chunked", 0)
    length = _header(headers, "content-length")
    return ("length", int(length)) if length is not None else ("eof", 0)


def _wants_close(headers: list[tuple[str, str]]) -> bool:
    return (_header(headers, "connection") or "").lower() == "close"


def _reply(rule: Rule, method: str) -> bytes:
    code = rule.code or _CODES.get(rule.status, "UNKNOWN")
    body = json.dumps({"errors": [{"code": code, "message": "injected by faultproxy"}]}).encode()
    lines = [
        f"HTTP/1.1 {rule.status} {_REASONS.get(rule.status, 'Error')}",
        "Content-Type: application/json; charset=utf-8",
        f"Content-Length: {len(body)}",
        "Docker-Distribution-Api-Version: registry/2.0",
    ]
    if rule.retry_after is not None:
        lines.append(f"Retry-After: {rule.retry_after}")
    if rule.location is not None:
        lines.append(f"Location: {rule.location}")
    if rule.close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if method == "HEAD" else body)


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
