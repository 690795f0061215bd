"""Large blob bodies read straight from the connection's socket.

Every read of a response body through httpx goes through httpcore and h11: the bytes are
copied into h11's buffer, out of it, and once more into a new object, with some Python
for each read. For a blob that is most of a pull's CPU: a 1 GiB body took ~3 CPU-s that
way against ~1.2 CPU-s (hashing and writing included) read from the socket directly
(docs/raw-body-reads.md). So a large body with a plain ``Content-Length`` is read here:

1. the head came through httpx as usual (auth, redirects, status checks, retries);
2. the first piece of the body comes through httpx too. h11 hands out everything it
   has buffered past the head as one piece, so after it h11 holds nothing of the body
   and the rest of the body is still in the socket, unread;
3. the rest is read from the socket, exactly ``Content-Length`` bytes in all;
4. the caller closes the response as always. h11 never saw the end of the body, so
   httpcore closes that connection instead of reusing it: a new connection for the next
   request, which is why only bodies of at least :data:`RAW_MIN_BYTES` go this way (more
   over TLS, where a new connection costs a handshake).

Nothing here checks content: the caller hashes the bytes and compares them with the
digest, as for any body. A failure reading the socket is raised as the httpx exception
httpcore would have raised (ReadTimeout, ReadError, RemoteProtocolError), so the callers'
resume logic treats both paths alike. A body that is chunked, has no length, comes over
HTTP/2, or over a connection that is not a plain socket or an ``ssl.SSLSocket`` of its
own (TLS inside a TLS proxy tunnel) is read through httpx as before.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator

import httpx

from ocimodel.oci.reference import is_loopback_host

# A body at least this long is read from the socket when the connection is to this
# machine (loopback: a new connection costs next to nothing), or at least
# REMOTE_RAW_MIN_BYTES from another host (a new connection costs a round trip or two, TCP's
# slow start and, over TLS, a handshake). The remote threshold is above a ranged pull's
# part (16 MiB, transport/ranged.py): parts keep their connections, and one large stream
# pays for one new connection per 64 MiB or more. See docs/raw-body-reads.md.
RAW_MIN_BYTES = 1 << 20
REMOTE_RAW_MIN_BYTES = 64 << 20
# Bytes asked for per socket read; a plain socket returns what it holds, up to this.
READ_BYTES = 1 << 20
# A TLS socket returns one record (at most 16 KiB) per read: reads are gathered into a
# piece of this size before it is handed on, so the consumer's work is per MiB; but for
# no longer than TLS_PIECE_SECONDS, so that on a slow link progress and cancellation
# (checked between pieces) still come several times a second.
TLS_PIECE_BYTES = 1 << 20
TLS_PIECE_SECONDS = 0.25


def body_chunks(response: httpx.Response, read_timeout: float | None) -> Iterator[bytes]:
    """The pieces of ``response``'s body as it arrives (raw: not decoded), from the socket
    when the body is large and plainly framed, else through httpx's ``iter_raw``."""
    length, sock = _raw_source(response)
    if sock is None:
        yield from response.iter_raw()
        return
    pieces = response.iter_raw()
    first = next(pieces, b"")  # h11's buffered part of the body, all of it (see the module doc)
    if first:
        yield first
    remaining = length - len(first)
    if remaining < 0:
        raise httpx.RemoteProtocolError("the response body is longer than its Content-Length")
    if remaining == 0:  # it all came with the head: h11 ends the body, the connection is reused
        for _ in pieces:
            pass
        return
    sock.settimeout(read_timeout)
    if isinstance(sock, ssl.SSLSocket):
        yield from _tls_pieces(sock, remaining)
    else:
        yield from _plain_pieces(sock, remaining)


def _raw_source(response: httpx.Response) -> tuple[int, socket.socket | None]:
    """(Content-Length, the socket to read the rest from) or (0, None): read through httpx."""
    if response.http_version != "HTTP/1.1" or "transfer-encoding" in response.headers:
        return 0, None
    try:
        length = int(response.headers.get("content-length", ""))
    except ValueError:
        return 0, None
    stream = response.extensions.get("network_stream")
    get_info = getattr(stream, "get_extra_info", None)
    if get_info is None:  # not httpcore's connection (a test transport, another backend)
        return 0, None
    sock = get_info("socket")
    tls = get_info("ssl_object")
    if isinstance(tls, ssl.SSLObject):
        # TLS inside a TLS tunnel (an https:// proxy): httpcore's stream then names the
        # tunnel's own SSLSocket as "socket", and reading it would give the inner TLS
        # records, not the body. Only that stream's TLS is an SSLObject (over memory).
        return 0, None
    if not (isinstance(sock, ssl.SSLSocket) or (type(sock) is socket.socket and tls is None)):
        return 0, None
    if length < (RAW_MIN_BYTES if _to_this_machine(sock) else REMOTE_RAW_MIN_BYTES):
        return 0, None
    return length, sock


def _to_this_machine(sock: socket.socket) -> bool:
    try:
        peer = sock.getpeername()
    except OSError:
        return False
    if not isinstance(peer, tuple):  # a Unix socket
        return True
    host = str(peer[0])
    return is_loopback_host(f"[{host}]" if ":" in host else host)  # IPv4-mapped loopback too


def _plain_pieces(sock: socket.socket, remaining: int) -> Iterator[bytes]:
    while remaining > 0:
        try:
            piece = sock.recv(min(READ_BYTES, remaining))
        except OSError as exc:
            raise _read_failure(exc) from None
        if not piece:
            raise _read_failure(None)
        remaining -= len(piece)
        yield piece


def _tls_pieces(sock: ssl.SSLSocket, remaining: int) -> Iterator[bytes]:
    buffer = bytearray(min(TLS_PIECE_BYTES, remaining))
    view = memoryview(buffer)
    while remaining > 0:
        want = min(len(buffer), remaining)
        filled = 0
        started = time.monotonic()
        while filled < want and (not filled or time.monotonic() - started < TLS_PIECE_SECONDS):
            try:
                got = sock.recv_into(view[filled:want])
                failure = None if got else _read_failure(None)
            except OSError as exc:  # ssl.SSLError included
                failure = _read_failure(exc)
            if failure is not None:
                # What arrived before the failure counts (each TLS record was authenticated):
                # the caller resumes after it rather than fetching up to a piece again.
                if filled:
                    yield bytes(view[:filled])
                raise failure
            filled += got
        remaining -= filled
        yield bytes(view[:filled])


def _read_failure(exc: OSError | None) -> httpx.HTTPError:
    """The httpx exception httpcore raises for the same failure of a socket read (None: the
    peer closed the connection before the body's end), so callers resume alike."""
    if exc is None:
        return httpx.RemoteProtocolError("peer closed connection without sending complete message body")
    if isinstance(exc, TimeoutError):
        return httpx.ReadTimeout("timed out")
    return httpx.ReadError(str(exc) or type(exc).__name__)
