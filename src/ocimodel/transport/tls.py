"""TLS: the settings (:class:`TlsOptions`), the ``ssl.SSLContext`` built from them, and
clear errors for TLS failures.

Trust is the system's store (``ssl.create_default_context()``: what docker uses on Linux;
``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` are honoured), plus, for one registry:

- ``ca_file`` if given, else every ``*.crt`` in docker's per-registry directory
  ``/etc/docker/certs.d/<host[:port]>/`` (root overridable with ``OCIMODEL_CERTS_D``);
- the client certificate ``client_cert`` (+ ``client_key``) if given, else a
  ``*.cert`` / ``*.key`` pair from that directory (docker's layout: ``client.cert`` and
  ``client.key``);
- ``insecure``: no verification at all (the CLI warns).

Registry and token service are reached with the same context. Errors name files, never
their contents: no key material ever reaches a message."""

from __future__ import annotations

import logging
import os
import ssl
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from ocimodel import settings
from ocimodel.errors import TransportError, printable

log = logging.getLogger(__name__)

CERTS_D_ENV = settings.CERTS_D.name

# X509_V_ERR_* codes of OpenSSL that deserve their own hint.
_VALIDITY_CODES = frozenset({9, 10})  # not yet valid, expired
_NAME_CODES = frozenset({62, 64})  # hostname mismatch, IP address mismatch
# Alerts a server sends when it wants a client certificate, or refuses the one it got.
_CLIENT_CERT_ALERTS = frozenset({
    "SSLV3_ALERT_BAD_CERTIFICATE",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED",
    "TLSV1_ALERT_UNKNOWN_CA",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED",
    "SSLV3_ALERT_CERTIFICATE_REVOKED",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
    "TLSV1_ALERT_ACCESS_DENIED",
})
# Handshakes that fail for want of a common protocol version or cipher.
_HANDSHAKE_FAILURES = frozenset({
    "SSLV3_ALERT_HANDSHAKE_FAILURE",
    "TLSV1_ALERT_PROTOCOL_VERSION",
    "UNSUPPORTED_PROTOCOL",
    "NO_PROTOCOLS_AVAILABLE",
    "NO_SHARED_CIPHER",
    "TLSV1_ALERT_INSUFFICIENT_SECURITY",
})
# What OpenSSL says when the other end does not speak TLS at all (a plain HTTP server).
_NOT_TLS = frozenset({"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST"})


@dataclass(frozen=True)
class TlsOptions:
    """TLS settings. Verification is on unless ``insecure`` is asked for."""

    ca_file: Path | None = None  # extra CA bundle to trust (a corporate or private CA)
    insecure: bool = False  # do not verify certificates (warned about at the CLI)
    client_cert: Path | None = None  # for registries that require mutual TLS
    client_key: Path | None = None  # None: the key is in client_cert's file


class TlsError(TransportError):
    """A TLS setting cannot be used (a missing or malformed CA file, certificate or key),
    or the TLS handshake with a registry failed (an untrusted, expired or misnamed
    certificate; a client certificate missing or refused). Trying again will not help."""

    transient = False


@dataclass(frozen=True)
class TlsSetup:
    """The context for one registry, and where its pieces came from (for error hints)."""

    context: ssl.SSLContext
    client_cert: Path | None  # the client certificate loaded, if any
    certs_dir: Path | None  # docker's certs.d directory of this registry, if there is one
    insecure: bool


class SystemTrustOnDemand(ssl.SSLContext):
    """``ssl.create_default_context()``, except that the system's CA store is read on the
    first TLS connection instead of at once.

    Reading the store takes 20-50 ms, paid by every command at start-up; a plain-HTTP
    registry (a local, test or CI registry) never needs it unless a blob is redirected to
    an HTTPS storage backend, and then it is read at that moment. CAs added explicitly
    (``ca_file``, docker's ``certs.d``) are loaded at once, so an unusable file still
    fails before any request."""

    def __new__(cls) -> Self:
        return super().__new__(cls, ssl.PROTOCOL_TLS_CLIENT)

    def __init__(self) -> None:
        # PROTOCOL_TLS_CLIENT already verifies certificates and host names; these are the
        # rest of what create_default_context() sets (tested against it for drift).
        if sys.version_info >= (3, 13):
            self.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN | ssl.VERIFY_X509_STRICT
        keylog = settings.ssl_key_log_file()
        if keylog and not sys.flags.ignore_environment:
            self.keylog_filename = keylog
        self._system_trust_lock = threading.Lock()
        self._system_trust_loaded = False

    def load_system_trust(self) -> None:
        """Read the system's CA store now (once; later calls do nothing)."""
        with self._system_trust_lock:
            if self._system_trust_loaded:
                return
            if self.verify_mode != ssl.CERT_NONE:
                before = self.cert_store_stats().get("x509_ca", 0)
                self.load_default_certs(ssl.Purpose.SERVER_AUTH)
                if self.cert_store_stats().get("x509_ca", 0) == before and _system_store_is_empty():
                    # No CA came from the system (e.g. a Python without a configured
                    # store; a store found only through a hashed directory also counts
                    # 0): add Mozilla's bundle.
                    try:
                        import certifi

                        self.load_verify_locations(cafile=certifi.where())
                    except (ImportError, OSError, ssl.SSLError):
                        pass
            self._system_trust_loaded = True

    # httpcore connects through wrap_socket, and through wrap_bio for TLS inside a proxy.
    def wrap_socket(self, *args, **kwargs):
        self.load_system_trust()
        return super().wrap_socket(*args, **kwargs)

    def wrap_bio(self, *args, **kwargs):
        self.load_system_trust()
        return super().wrap_bio(*args, **kwargs)


def _system_store_is_empty() -> bool:
    """Whether the system's store alone gives no CA. Asked only when loading it added no
    CA to a context: that context may already hold the same CAs (a --ca-file that is also
    SSL_CERT_FILE), and then the store is not empty and Mozilla's bundle must not be added."""
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    probe.load_default_certs(ssl.Purpose.SERVER_AUTH)
    return probe.cert_store_stats().get("x509_ca", 0) == 0


def certs_dir(registry: str) -> Path | None:
    """Docker's per-registry directory ``<certs.d>/<host[:port]>`` if it exists."""
    if not registry or registry in (".", "..") or any(c in registry for c in "/\\\0"):
        return None
    directory = settings.certs_d() / registry
    try:
        return directory if directory.is_dir() else None
    except OSError:
        return None


def build_tls(registry: str, options: TlsOptions | None = None) -> TlsSetup:
    """The ``ssl.SSLContext`` for ``registry``; :class:`TlsError` for unusable files."""
    options = options or TlsOptions()
    context = SystemTrustOnDemand()
    directory = certs_dir(registry) if options.ca_file is None or options.client_cert is None else None
    cas, pair = _read_certs_dir(directory) if directory is not None else ([], None)
    if options.ca_file is not None:
        _load_ca(context, Path(options.ca_file), "CA file", "--ca-file (OCIMODEL_CA_FILE) must name a PEM file of CA certificates")
    else:
        for path in cas:
            _load_ca(context, path, "CA certificate", f"files ending in .crt in {directory} are read as PEM CA certificates")
    client: Path | None = None
    if options.client_cert is not None:
        client = Path(options.client_cert)
        key = Path(options.client_key) if options.client_key is not None else None
        _load_client(context, client, key, "--cert and --key (OCIMODEL_CLIENT_CERT / OCIMODEL_CLIENT_KEY) must name PEM files")
    elif options.client_key is not None:
        raise TlsError(
            f"a client key ({options.client_key}) was given without a client certificate",
            hint="pass the certificate with --cert (OCIMODEL_CLIENT_CERT)",
        )
    elif pair is not None:
        client = pair[0]
        _load_client(context, pair[0], pair[1], f"client certificates in {directory} are NAME.cert with NAME.key, in PEM")
    if options.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        log.warning("TLS certificates of %s are not verified (insecure)", registry)
    if directory is not None:
        log.debug("TLS for %s: read %d CA(s)%s from %s", registry, len(cas), " and a client certificate" if pair else "", directory)
    return TlsSetup(context, client, directory, options.insecure)


def tls_failure(exc: BaseException, registry: str, setup: TlsSetup | None) -> TlsError | None:
    """A clear :class:`TlsError` if ``exc`` (an httpx error) is a TLS verification or
    handshake failure, else None. A connection cut inside TLS (an unexpected EOF, a
    reset) is not one: it stays a transient TransportError that may be retried."""
    cause: BaseException | None = exc
    for _ in range(8):
        if cause is None or isinstance(cause, ssl.SSLError):
            break
        cause = cause.__cause__ or cause.__context__
    if not isinstance(cause, ssl.SSLError):
        return None
    where = _certs_hint_dir(registry, setup)
    if isinstance(cause, ssl.SSLCertVerificationError):
        detail = printable(str(getattr(cause, "verify_message", None) or getattr(cause, "reason", None) or "verification failed")).rstrip(".")
        code = getattr(cause, "verify_code", None)
        if code in _VALIDITY_CODES:
            hint = "the registry's certificate is outside its validity period: it must be renewed (or this machine's clock is wrong)"
        elif code in _NAME_CODES:
            hint = f"the certificate was issued for other names: connect with a name it lists, or reissue it for {_host(registry)}"
        else:
            hint = (
                f"pass --ca-file with the registry's CA (or OCIMODEL_CA_FILE, or put it in {where}/ca.crt); "
                "--insecure skips verification (for tests only)"
            )
        return TlsError(f"TLS certificate of {registry} is not trusted ({detail})", hint=hint)
    reason = str(getattr(cause, "reason", None) or "")
    detail = _alert_text(cause)
    if reason in _NOT_TLS:
        return TlsError(
            f"{registry} does not speak TLS on this address ({detail})",
            hint="for a registry without TLS, pass --plain-http",
        )
    if reason in _CLIENT_CERT_ALERTS:
        if setup is not None and setup.client_cert is not None:
            return TlsError(
                f"{registry} refused the TLS client certificate {setup.client_cert} ({detail})",
                hint="the certificate must be issued by a CA the registry trusts for clients, valid now, and for client authentication",
            )
        return TlsError(
            f"{registry} requires a TLS client certificate ({detail})",
            hint=f"pass --cert and --key (OCIMODEL_CLIENT_CERT / OCIMODEL_CLIENT_KEY), or put client.cert and client.key in {where}/",
        )
    if reason in _HANDSHAKE_FAILURES:
        return TlsError(
            f"TLS handshake with {registry} failed ({detail})",
            hint="the registry and this machine share no TLS version or cipher: check the registry's TLS setup",
        )
    return None


def _certs_hint_dir(registry: str, setup: TlsSetup | None) -> str:
    if setup is not None and setup.certs_dir is not None:
        return str(setup.certs_dir)
    return str(settings.certs_d() / registry)


# -- helpers ----------------------------------------------------------------------------


def _read_certs_dir(directory: Path) -> tuple[list[Path], tuple[Path, Path] | None]:
    """Docker's rules: ``*.crt`` are CA certificates; ``NAME.cert`` + ``NAME.key`` a client
    certificate (one without the other is an error). The first pair (by name) is used."""
    try:
        names = sorted(entry.name for entry in os.scandir(directory) if not entry.name.startswith("."))
    except OSError as exc:
        raise TlsError(f"cannot read {directory}: {exc.strerror or exc}", hint="fix its permissions, or remove it") from None
    cas = [directory / name for name in names if name.endswith(".crt")]
    pairs: list[tuple[Path, Path]] = []
    for name in names:
        if name.endswith(".cert"):
            key = name[: -len(".cert")] + ".key"
            if key not in names:
                raise TlsError(
                    f"client certificate {directory / name} has no key {key} next to it",
                    hint="CA certificates there must end in .crt; a client certificate NAME.cert needs NAME.key",
                )
            pairs.append((directory / name, directory / key))
        elif name.endswith(".key") and name[: -len(".key")] + ".cert" not in names:
            raise TlsError(
                f"key {directory / name} has no client certificate {name[: -len('.key')]}.cert next to it",
                hint="a client key NAME.key needs its certificate NAME.cert",
            )
    if len(pairs) > 1:
        log.debug("%s holds %d client certificates; using %s", directory, len(pairs), pairs[0][0].name)
    return cas, (pairs[0] if pairs else None)


def _load_ca(context: ssl.SSLContext, path: Path, label: str, hint: str) -> None:
    _check_file(path, label, hint)
    try:
        context.load_verify_locations(cafile=str(path))
    except ssl.SSLError as exc:
        raise TlsError(f"{label} {path} holds no usable PEM certificate ({_ssl_reason(exc)})", hint=hint) from None
    except OSError as exc:
        raise TlsError(f"cannot read {label} {path}: {exc.strerror or exc}", hint=hint) from None


class _Encrypted(Exception):
    pass


def _no_passphrase() -> bytes:
    # Never let OpenSSL prompt on the terminal (or hang without one).
    raise _Encrypted


def _load_client(context: ssl.SSLContext, cert: Path, key: Path | None, hint: str) -> None:
    _check_file(cert, "client certificate", hint)
    if key is not None:
        _check_file(key, "client key", hint)
    try:
        context.load_cert_chain(str(cert), str(key) if key is not None else None, password=_no_passphrase)
    except _Encrypted:
        raise TlsError(
            f"client key {key or cert} is encrypted; ocimodel cannot ask for its passphrase",
            hint="use an unencrypted key file, readable only by you (mode 0600)",
        ) from None
    except ssl.SSLError as exc:
        reason = str(getattr(exc, "reason", None) or "")
        pair = f"{cert} and key {key}" if key is not None else f"{cert}"
        if reason == "KEY_VALUES_MISMATCH":
            message = f"client certificate {cert} and key {key or cert} do not belong together"
        elif key is None:
            message = f"cannot use client certificate {pair}: not a PEM certificate followed by its private key ({_ssl_reason(exc)})"
        else:
            message = f"cannot use client certificate {pair}: not a PEM certificate and private key ({_ssl_reason(exc)})"
        raise TlsError(message, hint=hint) from None
    except OSError as exc:
        raise TlsError(f"cannot read client certificate {cert}: {exc.strerror or exc}", hint=hint) from None


def _check_file(path: Path, label: str, hint: str) -> None:
    try:
        if not path.exists():
            raise TlsError(f"{label} {path} does not exist", hint=hint)
        if path.is_dir():
            raise TlsError(f"{label} {path} is a directory, not a PEM file", hint=hint)
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise TlsError(f"cannot read {label} {path}: {exc.strerror or exc}", hint=hint) from None


def _ssl_reason(exc: ssl.SSLError) -> str:
    return printable(str(getattr(exc, "reason", None) or getattr(exc, "library", None) or "invalid").replace("_", " ").lower())


def _alert_text(exc: ssl.SSLError) -> str:
    """``sslv3 alert bad certificate`` from ``[SSL: ...] sslv3 alert bad certificate (_ssl.c:2580)``."""
    text = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], str) else str(exc)
    if "] " in text:
        text = text.split("] ", 1)[1]
    text = text.rsplit(" (_ssl.c", 1)[0]
    return printable(text) or "TLS error"


def _host(registry: str) -> str:
    host = registry.rsplit(":", 1)[0] if registry.count(":") == 1 else registry
    return host
