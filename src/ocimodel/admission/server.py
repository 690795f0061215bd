"""The webhook server: uvicorn serving the Starlette app over TLS (docs/admission.md).

Started only when everything it needs loads: the policy and its keys, the TLS certificate
and key, the docker config named, --record-key; otherwise it refuses to start (exit 2),
because a webhook that answers without a policy could only deny everything or allow it.

SIGTERM (what Kubernetes sends a Pod it stops) and Ctrl-C shut it down gracefully:
uvicorn stops accepting connections, the answers in progress are finished (for up to
the deadline and two seconds), queued deployment records are written (for up to five
seconds), then the process exits 0."""

from __future__ import annotations

import gc
import logging
import math
import os
import re
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ocimodel.admission.app import create_app, json_line
from ocimodel.admission.certificates import DEFAULT_INTERVAL, CertificateReloader, regular_files
from ocimodel.admission.metrics import Metrics
from ocimodel.admission.records import RecordWriter
from ocimodel.admission.verdicts import PolicyHolder, Verdicts
from ocimodel.errors import OcimodelError, UsageError
from ocimodel.transport.connection import ConnectionOptions

log = logging.getLogger("ocimodel.admission")

# The API server's webhook timeout is at most 30 s; the default deadline leaves it room.
DEFAULT_DEADLINE = 8.0
DEFAULT_CACHE_TTL = 300.0
MAX_CONNECTIONS = 1000  # open connections and requests in progress; more are answered 503
# The environment names deployment records take (api/deployments.py checks them again).
_ENVIRONMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class ServeOptions:
    policy: Path
    tls_cert: Path
    tls_key: Path
    host: str = "0.0.0.0"
    port: int = 8443
    deadline: float = DEFAULT_DEADLINE
    cache_ttl: float = DEFAULT_CACHE_TTL
    resolve_ttl: float = 0.0
    docker_config: Path | None = None
    record_environment: str | None = None
    record_key: Path | None = None  # signs the records (ECDSA P-256 PEM); None: unsigned
    tls_reload_interval: float = DEFAULT_INTERVAL  # seconds between looks at the TLS files; 0: never


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json_line(record)


def configure_logging(stream=None) -> None:
    """One JSON object per line on stderr, for our entries and uvicorn's."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_JsonFormatter())
    for name in ("ocimodel.admission", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False


def check(options: ServeOptions) -> None:
    """Everything the server needs from disk, checked before it starts (UsageError)."""
    if not 0 < options.deadline <= 30:
        raise UsageError(f"--deadline must be between 0 and 30 seconds, got {options.deadline:g}",
                         hint="the API server waits at most 30 s (timeoutSeconds); the deadline must be shorter")
    # nan compares false with everything: a TTL of nan would keep every entry forever.
    if not (0 <= options.cache_ttl < math.inf and 0 <= options.resolve_ttl < math.inf):
        raise UsageError("--cache-ttl and --resolve-ttl are seconds, 0 or more",
                         hint="a finite number, e.g. --cache-ttl 300")
    if not 0 <= options.tls_reload_interval < math.inf:
        raise UsageError("--tls-reload-interval is seconds, 0 (never) or more",
                         hint=f"a finite number, e.g. --tls-reload-interval {DEFAULT_INTERVAL:g}")
    if not 0 <= options.port <= 65535:
        raise UsageError(f"--port {options.port} is not a port")
    try:
        regular_files(options.tls_cert, options.tls_key)
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(options.tls_cert, options.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"cannot load the TLS certificate {options.tls_cert} and key {options.tls_key}: {exc}",
                         hint="PEM files: the server certificate (chain) and its private key; "
                         "deploy/README.md shows how to make them") from None
    if options.record_environment is not None and not _ENVIRONMENT.match(options.record_environment):
        raise UsageError(f"--record-deployments {options.record_environment[:80]!r} is not an environment name",
                         hint="e.g. prod, staging, eu-prod")
    if options.record_key is not None:
        if options.record_environment is None:
            raise UsageError("--record-key signs deployment records: it needs --record-deployments ENVIRONMENT")
        from ocimodel.signing.keys import PASSWORD_ENV, load_private_key

        try:  # loaded (and decrypted with $OCIMODEL_KEY_PASSWORD) only to refuse a bad one now
            load_private_key(options.record_key)
        except OcimodelError as exc:  # the messages name the file, never what is in it
            raise UsageError(f"cannot load --record-key: {exc.message}",
                             hint=f"an ECDSA P-256 private key (PEM); an encrypted one needs ${PASSWORD_ENV}") from None
    if options.docker_config is not None:
        path = options.docker_config
        if path.name != "config.json":
            raise UsageError(f"--docker-config {path}: the file must be named config.json (docker's name)",
                             hint="mount the pull secret's .dockerconfigjson key as config.json "
                             "(items: [{key: .dockerconfigjson, path: config.json}])")
        if not path.is_file():
            raise UsageError(f"--docker-config {path} is not a file")


def serve(options: ServeOptions, connection: ConnectionOptions | None = None,
          on_listening: Callable[[str, int], None] | None = None) -> None:
    """Run the webhook until SIGTERM or Ctrl-C. Raises UsageError when something it needs
    does not load, OcimodelError when it cannot listen."""
    import uvicorn

    check(options)
    if options.docker_config is not None:
        # Read where credentials are read (transport/credentials.py): DOCKER_CONFIG names
        # the directory of config.json, as docker's own variable does.
        os.environ["DOCKER_CONFIG"] = str(options.docker_config.parent.absolute())
    policy = PolicyHolder(options.policy)  # raises PolicyError: refuse to start
    metrics = Metrics()
    verdicts = Verdicts(policy, connection or ConnectionOptions(), deadline=options.deadline,
                        cache_ttl=options.cache_ttl, resolve_ttl=options.resolve_ttl,
                        on_cache=metrics.cache_lookup)
    records = None
    if options.record_environment is not None:
        records = RecordWriter(verdicts.connection, options.record_environment, key=options.record_key,
                               on_result=lambda result: metrics.records.labels(result=result).inc())
    app = create_app(verdicts, metrics, records)
    config = uvicorn.Config(
        app, ssl_certfile=str(options.tls_cert), ssl_keyfile=str(options.tls_key), log_config=None,
        access_log=False, timeout_graceful_shutdown=int(options.deadline) + 2, lifespan="off",
        # Idle connections closed after 5 s, at most MAX_CONNECTIONS open at once (503 beyond),
        # a request head at most 64 KiB: what a client that never finishes can hold is bounded.
        timeout_keep_alive=5, limit_concurrency=MAX_CONNECTIONS, h11_max_incomplete_event_size=64 * 1024,
        http=_head_deadline_protocol(options.deadline),
    )
    # Installed even when it never looks again (--tls-reload-interval 0): the expiry metric.
    reloader = CertificateReloader(options.tls_cert, options.tls_key, lambda: _blank_context(config),
                                   on_result=lambda result: metrics.tls_reloads.labels(result=result).inc(),
                                   on_served=lambda served: metrics.tls_expiry.set(served.not_after))
    stamp = reloader.stamp()  # before uvicorn reads the files: a change in between is reloaded
    config.load()  # makes config.ssl, the context every connection starts with
    assert config.ssl is not None
    reloader.install(config.ssl, stamp)
    server = _server_class(uvicorn.Server, reloader if options.tls_reload_interval > 0 else None,
                           options.tls_reload_interval)(config)
    sock = _listen(options.host, options.port)  # after the TLS context loaded: nothing left to close if it did not
    host, port = sock.getsockname()[:2]
    log.info({"event": "listening", "host": host, "port": port, "policy": str(options.policy),
              "policyDigest": policy.digest, "deadline": options.deadline, "cacheTtl": options.cache_ttl,
              "resolveTtl": options.resolve_ttl, "recordDeployments": options.record_environment,
              "recordKey": None if options.record_key is None else str(options.record_key),
              "tlsReloadInterval": options.tls_reload_interval})
    if on_listening is not None:
        on_listening(host, port)
    _settle_collector()
    # uvicorn handles SIGTERM and SIGINT while it runs, then raises the signal again under
    # the handler found before it: this one notes it, so the clean-up below runs and the
    # process exits 0 (a graceful stop is not a failure) instead of dying by the signal.
    caught: list[int] = []
    previous = _note_signals(caught)
    unraisable_hook, sys.unraisablehook = sys.unraisablehook, _log_unraisable
    try:
        server.run(sockets=[sock])
    finally:
        sys.unraisablehook = unraisable_hook
        if records is not None:
            records.close()
        verdicts.close()
        sock.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        log.info({"event": "stopped", "signal": signal.Signals(caught[0]).name if caught else None})


def _log_unraisable(unraisable) -> None:
    """An error Python cannot raise to anyone -- e.g. a TLS client's server name that is not
    valid IDNA, refused before the SNI callback runs (that handshake alone fails) -- as one
    JSON line, not a traceback in the middle of the log (one JSON object per line). The
    reason is cut short: it can hold what a client sent."""
    exc = unraisable.exc_value
    log.warning({"event": "unraisable", "reason": f"{type(exc).__name__}: {exc}"[:300],
                 "where": (unraisable.err_msg or "")[:200]})


# CPython's default: a young collection every 700 net allocations of tracked objects.
YOUNG_COLLECTION_THRESHOLD = 700


def _settle_collector() -> None:
    """The server runs for weeks. What start-up made (modules, classes, pydantic's schemas)
    lives as long: one collection, then it is moved out of the collector's reach for good
    (gc.freeze), so later collections walk only what requests make. And young collections
    come at CPython's pace again: the command's entry (ocimodel.cli.entry) spaces them out
    for short commands, which would let cycles made per request pile up here."""
    gc.collect()
    gc.freeze()
    young, *older = gc.get_threshold()
    if young > YOUNG_COLLECTION_THRESHOLD:
        gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *older)


def _blank_context(config) -> ssl.SSLContext:
    """A server context as uvicorn makes it (config.py, create_ssl_context), without the
    certificate. A handshake switched to it (OpenSSL's SSL_set_SSL_CTX) keeps the protocol
    versions, options and verify mode of uvicorn's context, and takes from this one the
    certificate, key, ALPN, cipher list, security level and client trust store: so each
    of those is set here as uvicorn sets it, and a setting added to uvicorn's context later
    must be added here too."""
    context = ssl.SSLContext(config.ssl_version)
    context.verify_mode = ssl.VerifyMode(config.ssl_cert_reqs)
    if config.ssl_ciphers:
        context.set_ciphers(config.ssl_ciphers)
    alpn = getattr(config.http_protocol_class, "alpn_protocols", None)
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


def _server_class(base: type, reloader: CertificateReloader | None, interval: float) -> type:
    """uvicorn's Server, looking at the TLS files every ``interval`` seconds from its tick
    (main_loop calls on_tick every 0.1 s in the event loop): the check runs between
    handshakes, never during one, and needs no thread of its own."""
    if reloader is None:
        return base

    class Reloading(base):  # type: ignore[misc, valid-type]
        _next = 0.0

        async def on_tick(self, counter: int) -> bool:
            now = time.monotonic()
            if now >= self._next:
                self._next = now + interval
                try:
                    reloader.check()
                except Exception as exc:  # a bug here must not stop the webhook: it keeps its certificate
                    log.error({"event": "tls-reload-failed", "reason": f"{type(exc).__name__}: {exc}"})
            return await super().on_tick(counter)

    return Reloading


def _head_deadline_protocol(seconds: float) -> type:
    """uvicorn's h11 protocol, with a time limit on each request head: uvicorn bounds an
    idle connection (keep-alive) and the head's size, not the time a client takes to send
    the head, so one that trickles it would hold its connection for ever. A head not
    complete ``seconds`` after the connection opened (or after the previous answer) gets a
    408 and the connection is closed. Naming the class also pins h11 (uvicorn would pick
    httptools when installed, which ignores the head size limit)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeadDeadline(H11Protocol):
        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            # No Nagle: an answer leaves in more than one write (TLS records, head and
            # body), and without TCP_NODELAY each later one waited for the client's delayed
            # ACK of the first: 40 ms added to every answer, measured (benchmarks/README.md).
            sock = transport.get_extra_info("socket")
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._arm()

        def on_response_complete(self) -> None:
            self._arm()  # before a pipelined head is parsed, so that head counts as arrived
            super().on_response_complete()

        def _arm(self) -> None:
            waiting = self.cycle  # a new head makes a new cycle
            self.loop.call_later(seconds, self._expire, waiting)

        def _expire(self, waiting) -> None:
            if self.cycle is not waiting or self.transport.is_closing():
                return
            if self.conn.trailing_data[0]:  # part of a head arrived: say why before closing
                self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n"
                                     b"connection: close\r\n\r\n")
            self.transport.close()

    return HeadDeadline


def _note_signals(caught: list[int]) -> dict[int, object]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {signum: signal.signal(signum, lambda number, frame: caught.append(number))
            for signum in (signal.SIGINT, signal.SIGTERM)}


def _listen(host: str, port: int) -> socket.socket:
    sock = None
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        if sock is not None:
            sock.close()
        raise OcimodelError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                            hint="is another server on that port? choose another with --port") from None
    sock.set_inheritable(True)
    return sock
