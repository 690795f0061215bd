"""The webhook's TLS certificate, reloaded while it serves (docs/admission.md).

cert-manager renews the certificate and the kubelet swaps the mounted Secret's files (the
certificate and its key together, by renaming a ``..data`` symlink). A server that kept the
certificate it read at start would fail every handshake once that one expired, and with
``failurePolicy: Fail`` every matching Pod creation would then be refused.

``CertificateReloader.check()`` runs in the event loop (uvicorn's tick, every
``interval`` seconds): it stats both files, and when one changed it loads the pair into a
fresh SSLContext. A pair that does not load (a new certificate with the old key, a file
half written, an encrypted key) or whose certificate is out of its validity dates (a
rolled-back file) is refused: the last good pair stays served, one warning is logged per
change, and the next change is tried again. A pair that loads becomes the context each new
handshake switches to (the SNI callback, called by OpenSSL for every ClientHello, with or
without a server name). The context uvicorn made is never modified: reloading it in place
(load_cert_chain replaces the certificate, then the key) could leave it holding a new
certificate with the old key when the files are swapped between the two reads, and every
handshake would fail. Connections already open keep the certificate they were made with."""

from __future__ import annotations

import logging
import os
import ssl
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("ocimodel.admission")

DEFAULT_INTERVAL = 10.0  # seconds; the kubelet itself refreshes a Secret volume every minute or so


@dataclass(frozen=True)
class Served:
    """What a loaded certificate says about itself, for the log and the expiry metric."""

    subject: str
    serial: str
    not_after: float  # Unix time
    not_before: float = 0.0

    @classmethod
    def read(cls, pem: bytes) -> Served:
        from cryptography import x509  # a dependency of ocimodel; loaded when the server starts

        cert = x509.load_pem_x509_certificate(pem)  # the first one in the file: the server's own
        return cls(cert.subject.rfc4514_string(), f"{cert.serial_number:x}", cert.not_valid_after_utc.timestamp(),
                   cert.not_valid_before_utc.timestamp())

    def out_of_date(self, now: float) -> str | None:
        """Why a client would refuse this certificate now, or None."""
        if now > self.not_after:
            return f"the certificate expired at {_iso(self.not_after)}"
        if now < self.not_before:
            return f"the certificate is valid only from {_iso(self.not_before)}"
        return None


def _stamp(path: Path) -> tuple[object, ...] | None:
    """What changes when the file is rewritten or swapped: the kubelet renames a symlink,
    so the target's path and inode change even when the size and time would not."""
    try:
        st = os.stat(path)  # follows the symlinks
        return (os.path.realpath(path), st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
    except OSError:
        return None


class CertificateReloader:
    """Watches ``cert`` and ``key`` and serves the pair they hold on new connections.

    ``make_context`` makes a server context with the settings of the one in use and no
    certificate; ``on_result`` gets "ok" or "failed" per reload attempt, ``on_served`` what
    is served (at install and after each reload)."""

    def __init__(self, cert: Path, key: Path, make_context: Callable[[], ssl.SSLContext], *,
                 on_result: Callable[[str], None] = lambda result: None,
                 on_served: Callable[[Served], None] = lambda served: None) -> None:
        self.cert, self.key = Path(cert), Path(key)
        self.make_context = make_context
        self.on_result, self.on_served = on_result, on_served
        self._stamp: tuple[object, ...] | None = None  # of the pair served
        self._refused: tuple[object, ...] | None = None  # of the last pair that did not load
        self._current: ssl.SSLContext | None = None  # None: the context uvicorn made
        # uvicorn's context; it gets the SNI callback only at the first reload that takes:
        # until then every handshake is uvicorn's alone (Python refuses a handshake whose
        # server name is not valid IDNA once a callback is set, and prints a traceback).
        self._live: ssl.SSLContext | None = None
        self.served: Served | None = None

    def stamp(self) -> tuple[object, ...]:
        return (_stamp(self.cert), _stamp(self.key))

    def install(self, live: ssl.SSLContext, stamp: tuple[object, ...]) -> None:
        """Hook into the context uvicorn serves with; ``stamp`` was taken before that
        context read the files (a change since is seen by the first check)."""
        self._stamp = stamp
        self._live = live
        try:
            self.served = Served.read(self.cert.read_bytes())
            self.on_served(self.served)
        except (OSError, ValueError):
            pass  # swapped since it loaded: the first check reloads it

    def _switch(self, connection: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext) -> None:
        current = self._current  # one read: a reload in between is for the next handshake
        if current is not None:
            connection.context = current

    def check(self) -> None:
        """Reload the pair if a file changed; never raises for the files' content."""
        stamp = self.stamp()
        if stamp == self._stamp or stamp == self._refused:
            return
        try:
            regular_files(self.cert, self.key)  # a fifo put there would block the event loop
            pem = self.cert.read_bytes()
            context = self.make_context()
            # An encrypted key is refused, never prompted for: with a terminal, OpenSSL would
            # ask for its passphrase on it and the event loop would stop serving meanwhile.
            context.load_cert_chain(self.cert, self.key, password=_no_passphrase)
            served = Served.read(pem)
            late = served.out_of_date(time.time())
            if late is not None:  # a rolled-back or stale pair: every client would refuse it
                raise ValueError(late)
        except (OSError, ssl.SSLError, ValueError) as exc:
            if self.stamp() != stamp:
                return  # still being written: tried again at the next check
            self._refused = stamp
            self.on_result("failed")
            # The message is OpenSSL's or the parser's reason: never the files' content.
            log.warning({"event": "tls-reload-failed", "certificate": str(self.cert), "key": str(self.key),
                         "reason": _reason(exc), "servingSerial": self.served.serial if self.served else None})
            return
        if self.stamp() != stamp:
            return  # swapped while read: the certificate parsed may not be the one loaded
        self._current, self._stamp, self._refused, self.served = context, stamp, None, served
        if self._live is not None and self._live.sni_callback is None:
            self._live.sni_callback = self._switch
        self.on_result("ok")
        self.on_served(served)
        log.info({"event": "tls-reloaded", "certificate": str(self.cert), "subject": served.subject,
                  "serial": served.serial, "notAfter": _iso(served.not_after)})


def regular_files(*paths: Path) -> None:
    """Raise OSError unless every path (its symlinks followed) is a regular file: reading a
    fifo or a device would wait for a writer that may never come."""
    for path in paths:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise OSError(f"{path} is not a regular file")


def _no_passphrase() -> bytes:
    raise ValueError("the key is encrypted: the webhook's TLS key must be unencrypted (a Secret)")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror and not isinstance(exc, ssl.SSLError):
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))
