"""Forward proxies from the environment, decided per request as Go's net/http does.

docker, skopeo, crane and oras take their proxy from ``HTTPS_PROXY`` / ``HTTP_PROXY`` /
``NO_PROXY`` through Go's ``ProxyFromEnvironment``; a user behind a mandatory proxy has
those set once for all of them. httpx reads the same variables only when a client is
built without a transport, and ours always have one (the deadline guard under the pool,
transport/deadline.py), so the decision is made here, by the same rules
(docs/proxies.md):

- ``HTTPS_PROXY`` for ``https://`` URLs, ``HTTP_PROXY`` for ``http://`` URLs; each name
  upper-case first, then lower-case (the first that is set and not empty wins);
- a value without a scheme is taken as ``http://VALUE``;
- ``localhost`` and loopback addresses are never proxied;
- ``NO_PROXY``: comma-separated; ``*`` (nothing is proxied); an IP address or a CIDR
  range; ``[IPv6]:port`` or ``IP:port``; a domain name, which matches itself and its
  subdomains (``.name`` and ``*.name``: subdomains only), with or without ``:port``.

The decision is taken for every request from its URL, so a registry, its token service
on another host and a blob redirect to a storage host are each proxied or not by their
own names. Proxied requests go through httpx's proxy support (absolute-form requests for
``http://``, a ``CONNECT`` tunnel for ``https://``; TLS to an ``https://`` proxy with the
same trust as the registry's), with :class:`~ocimodel.transport.deadline.GuardedBackend`
under every pool, so deadlines bound a proxied request too.

A proxy URL's ``user:password@`` becomes a ``Proxy-Authorization`` header and appears
nowhere else: proxies are shown as ``scheme://host:port`` only (:attr:`Proxy.shown`), in
logs and in errors."""

from __future__ import annotations

import ipaddress
import logging
import os
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from ocimodel.errors import ProxyFailure, UsageError, printable
from ocimodel.transport.deadline import guarded_transport

log = logging.getLogger("ocimodel.transport")

__all__ = [
    "NoProxy",
    "Proxy",
    "ProxyConfig",
    "ProxyRefused",
    "ProxyTrouble",
    "ProxyUnreachable",
    "proxied_transport",
    "proxy_error",
]

_SCHEMES = ("http", "https", "socks5", "socks5h")
_DEFAULT_PORTS = {"http": "80", "https": "443"}
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


# -- NO_PROXY ---------------------------------------------------------------------------------


def _split_host_port(text: str) -> tuple[str, str] | None:
    """Go's ``net.SplitHostPort``: ``host:port`` or ``[host]:port`` (the port may be
    empty and is not checked), else None."""
    i = text.rfind(":")
    if i < 0:
        return None
    j = k = 0
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or end + 1 != i:
            return None
        host = text[1:end]
        j, k = 1, end + 1
    else:
        host = text[:i]
        if ":" in host:
            return None
    if "[" in text[j:] or "]" in text[k:]:
        return None
    return host, text[i + 1 :]


def _ip(text: str) -> IPAddress | None:
    """An IP address, IPv4-mapped IPv6 ones as IPv4 (Go compares them as equal)."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id is not None:
            return None  # Go's ParseIP takes no zone
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
    return ip


def _ascii(name: str) -> str:
    """A domain name as a request carries it (IDNA), best effort as Go does."""
    if name.isascii():
        return name
    try:
        return ".".join(label.encode("idna").decode("ascii") if label else "" for label in name.split("."))
    except UnicodeError:
        return name


@dataclass(frozen=True)
class NoProxy:
    """The parsed ``NO_PROXY``. :meth:`bypass` says whether a host:port goes direct."""

    everything: bool = False
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    ips: tuple[tuple[IPAddress, str], ...] = ()  # (address, port or "")
    domains: tuple[tuple[str, str, bool], ...] = ()  # (".suffix", port or "", the name itself too)

    @classmethod
    def parse(cls, value: str) -> NoProxy:
        """Entries that parse as nothing are ignored, as Go ignores them."""
        networks, ips, domains = [], [], []
        for entry in value.split(","):
            entry = entry.strip().lower()
            if not entry:
                continue
            if entry == "*":
                return cls(everything=True)
            if "/" in entry:
                try:
                    networks.append(ipaddress.ip_network(entry, strict=False))
                    continue
                except ValueError:
                    pass
            split = _split_host_port(entry)
            if split is not None:
                host, port = split
                if not host:
                    continue
                if host.startswith("[") and host.endswith("]"):
                    host = host[1:-1]
            else:
                host, port = entry, ""
            ip = _ip(host)
            if ip is not None:
                ips.append((ip, port))
                continue
            if not host:
                continue
            if host.startswith("*."):
                host = host[1:]
            itself = not host.startswith(".")
            if itself:
                host = "." + host
            domains.append((_ascii(host), port, itself))
        return cls(False, tuple(networks), tuple(ips), tuple(domains))

    def bypass(self, host: str, port: str) -> bool:
        """Whether a request to ``host`` (a name or an address, no brackets) on ``port``
        goes without the proxy: loopback, or listed in NO_PROXY."""
        host = host.strip().lower()
        if host == "localhost":
            return True
        ip = _ip(host)
        if ip is not None and ip.is_loopback:
            return True
        if self.everything:
            return True
        if ip is not None:
            if any(ip in network for network in self.networks):
                return True
            if any(ip == listed and (not want or want == port) for listed, want in self.ips):
                return True
        for suffix, want, itself in self.domains:
            if host.endswith(suffix) or (itself and host == suffix[1:]):
                if not want or want == port:
                    return True
        return False


# -- the proxies ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proxy:
    """One proxy: its URL for httpx (credentials included: never show it), what may be
    shown of it, and the variable it came from."""

    url: str = field(repr=False)  # never in a repr: it may hold a password
    shown: str  # scheme://host:port: no credentials, no path
    variable: str
    has_credentials: bool
    problem: str | None = None  # why the value cannot be used: raised when a request needs it

    def check(self) -> None:
        """:class:`UsageError` if this proxy cannot be used. Go would go direct without a
        word; behind a mandatory proxy that only hides the mistake. Raised when a request
        would go through it, so a broken HTTP_PROXY does not stop https:// requests."""
        if self.problem is not None:
            # The value itself is not shown: it may hold a password.
            raise UsageError(
                f"{self.variable} is not a usable proxy URL ({self.problem})",
                hint=f"set {self.variable} to http://HOST:PORT (or https://, with USER:PASSWORD@ if the proxy wants them)",
            )

    @property
    def host(self) -> str:
        return self.shown.split("://", 1)[1]


def _parse_proxy(value: str, variable: str) -> Proxy:
    """Go's rule: a value whose scheme is not a proxy scheme is read as ``http://VALUE``."""
    value = value.strip()
    try:
        scheme = urlsplit(value).scheme.lower()
    except ValueError:
        scheme = ""
    if scheme not in _SCHEMES:
        value = "http://" + value
    problem = None
    try:
        parts = urlsplit(value)
        scheme, host, port = parts.scheme.lower(), parts.hostname, parts.port
        httpx.URL(value)  # what httpx will be given must parse there too
        if not host:
            problem = "no host"
    except (ValueError, httpx.InvalidURL):
        scheme, host, port, problem = "", None, None, "not a URL"
    if problem is None and scheme.startswith("socks"):
        problem = "a SOCKS proxy, which ocimodel does not support"
    if problem is not None:
        return Proxy("", f"{variable} (unusable)", variable, False, problem)
    bracketed = f"[{host}]" if ":" in (host or "") else host
    shown = f"{scheme}://{bracketed}:{port or _DEFAULT_PORTS[scheme]}"
    return Proxy(value, shown, variable, bool(parts.username or parts.password))


def _first(environ: Mapping[str, str], *names: str) -> tuple[str, str]:
    for name in names:
        value = environ.get(name, "")
        if value:
            return name, value
    return names[0], ""


@dataclass(frozen=True)
class ProxyConfig:
    """The proxies for ``http://`` and ``https://`` requests and the NO_PROXY rules."""

    http: Proxy | None = None
    https: Proxy | None = None
    no_proxy: NoProxy = NoProxy()

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> ProxyConfig:
        """Read HTTPS_PROXY, HTTP_PROXY and NO_PROXY (each upper-case first, then
        lower-case)."""
        environ = os.environ if environ is None else environ
        https_name, https_value = _first(environ, "HTTPS_PROXY", "https_proxy")
        http_name, http_value = _first(environ, "HTTP_PROXY", "http_proxy")
        if http_value and environ.get("REQUEST_METHOD"):
            # In a CGI program HTTP_PROXY may come from a request's Proxy header (Go
            # refuses it there too).
            log.warning("%s ignored: REQUEST_METHOD is set (a CGI environment)", http_name)
            http_value = ""
        config = cls(
            http=_parse_proxy(http_value, http_name) if http_value else None,
            https=_parse_proxy(https_value, https_name) if https_value else None,
            no_proxy=NoProxy.parse(_first(environ, "NO_PROXY", "no_proxy")[1]),
        )
        if config.active:
            log.debug(
                "proxies: https:// through %s, http:// through %s, NO_PROXY=%r",
                config.https.shown if config.https else "none", config.http.shown if config.http else "none",
                printable(_first(environ, "NO_PROXY", "no_proxy")[1]),
            )
        return config

    @property
    def active(self) -> bool:
        return (self.http is not None or self.https is not None) and not self.no_proxy.everything

    def proxy_for(self, url: httpx.URL | str) -> Proxy | None:
        """The proxy a request to ``url`` goes through, or None: direct.
        :class:`UsageError` if that proxy's variable cannot be used."""
        url = httpx.URL(url)
        proxy = self.https if url.scheme == "https" else self.http if url.scheme == "http" else None
        if proxy is None:
            return None
        port = str(url.port) if url.port is not None else _DEFAULT_PORTS[url.scheme]
        if self.no_proxy.bypass(url.raw_host.decode("ascii", "replace"), port):
            return None
        proxy.check()
        return proxy


# -- failures at the proxy ----------------------------------------------------------------------


class ProxyTrouble(Exception):
    """Mixed into the httpx errors raised for a failure at the proxy itself, so the
    caller can name it (and catch both kinds). ``brief`` holds no credentials and no
    request URL."""

    proxy: Proxy
    target: str  # host:port the request was for
    status: int | None
    brief: str


class ProxyRefused(ProxyTrouble, httpx.ProxyError):
    """The proxy answered instead of the server (407, or a CONNECT refused), or TLS with
    an ``https://`` proxy failed. Asking again gets the same answer."""

    def __init__(self, brief: str, *, proxy: Proxy, target: str, status: int | None, request: httpx.Request) -> None:
        super().__init__(brief, request=request)
        self.proxy, self.target, self.status, self.brief = proxy, target, status, brief


class ProxyUnreachable(ProxyTrouble, httpx.ConnectError):
    """No connection to the proxy (refused, timed out, no such host). A ConnectError, so
    it is retried as a registry's refused connection is."""

    def __init__(self, brief: str, *, proxy: Proxy, target: str, request: httpx.Request) -> None:
        super().__init__(brief, request=request)
        self.proxy, self.target, self.status, self.brief = proxy, target, None, brief


# Events of httpcore's "trace" extension that only the connection to the proxy has: in a
# proxy's pool, httpcore's HTTPConnection (the "connection" prefix) always connects to the
# proxy; the TLS to the server inside a tunnel is reported as "proxy.start_tls".
_CONNECT_FAILED = "connection.connect_tcp.failed"
_PROXY_TLS_FAILED = "connection.start_tls.failed"


def _reason(exc: BaseException) -> str:
    cause: BaseException | None = exc
    for _ in range(8):
        if cause is None or isinstance(cause, (ssl.SSLError, OSError)):
            break
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, ssl.SSLCertVerificationError):
        return f"certificate not trusted: {cause.verify_message or cause.reason}"
    if isinstance(cause, ssl.SSLError):
        return str(cause.reason or "TLS error").replace("_", " ").lower()
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror.lower()
    if isinstance(exc, httpx.TimeoutException):
        return "no connection within the time allowed"
    return type(exc).__name__


class _Router(httpx.BaseTransport):
    """Sends each request directly or through its proxy, by its URL."""

    def __init__(self, config: ProxyConfig, verify, limits: httpx.Limits) -> None:
        self._config = config
        self._verify = verify
        self._limits = limits
        self._direct = guarded_transport(verify, limits)
        self._proxied: dict[str, httpx.BaseTransport] = {}
        self._lock = threading.Lock()

    def _through(self, proxy: Proxy) -> httpx.BaseTransport:
        with self._lock:
            transport = self._proxied.get(proxy.url)
            if transport is None:
                context = None
                if proxy.shown.startswith("https:"):
                    # The proxy's certificate is checked with the registry's trust, as Go's
                    # transport checks it with its one TLS configuration.
                    verify = self._verify
                    context = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify=verify)
                transport = guarded_transport(self._verify, self._limits, httpx.Proxy(proxy.url, ssl_context=context))
                self._proxied[proxy.url] = transport
            return transport

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        proxy = self._config.proxy_for(request.url)
        if proxy is None:
            return self._direct.handle_request(request)
        target = f"{request.url.raw_host.decode('ascii', 'replace')}:{request.url.port or _DEFAULT_PORTS.get(request.url.scheme, '')}"
        failed: list[str] = []
        outer = request.extensions.get("trace")

        def trace(event: str, info: dict) -> None:
            if event in (_CONNECT_FAILED, _PROXY_TLS_FAILED):
                failed.append(event)
            if outer is not None:
                outer(event, info)

        request.extensions = {**request.extensions, "trace": trace}
        try:
            response = self._through(proxy).handle_request(request)
        except httpx.ProxyError as exc:  # the proxy answered CONNECT with something else than 2xx
            text = str(exc)
            status = int(text[:3]) if text[:3].isdigit() else None
            raise ProxyRefused(f"the proxy {proxy.host} answered {text}", proxy=proxy, target=target, status=status,
                               request=request) from None
        except httpx.TransportError as exc:
            if _PROXY_TLS_FAILED in failed:
                raise ProxyRefused(f"TLS with the proxy {proxy.host} failed ({_reason(exc)})", proxy=proxy,
                                   target=target, status=None, request=request) from None
            if _CONNECT_FAILED in failed:
                raise ProxyUnreachable(f"cannot connect to the proxy {proxy.host} ({_reason(exc)})", proxy=proxy,
                                       target=target, request=request) from None
            raise
        if response.status_code == 407:  # only a proxy sends it (a forwarded http:// request)
            response.close()
            raise ProxyRefused(f"the proxy {proxy.host} answered 407 Proxy Authentication Required", proxy=proxy,
                               target=target, status=407, request=request)
        return response

    def close(self) -> None:
        self._direct.close()
        with self._lock:
            proxied, self._proxied = list(self._proxied.values()), {}
        for transport in proxied:
            transport.close()


def proxied_transport(verify, limits: httpx.Limits, config: ProxyConfig | None = None) -> httpx.BaseTransport:
    """:func:`~ocimodel.transport.deadline.guarded_transport`, with the proxies of
    ``config`` (default: from the environment). Without any, it is that transport
    itself: nothing changes for a machine without proxy variables."""
    config = ProxyConfig.from_environment() if config is None else config
    if not config.active:
        return guarded_transport(verify, limits)
    return _Router(config, verify, limits)


def proxy_error(exc: BaseException, server: str, what: str) -> ProxyFailure | None:
    """The one-line error for a failure at the proxy (``exc`` from
    :func:`proxied_transport`), naming the proxy by host and port; None for others."""
    if not isinstance(exc, ProxyTrouble):
        return None
    proxy = exc.proxy
    host = exc.target.rsplit(":", 1)[0]
    bypass = f"or add {host} to NO_PROXY if it is reached without the proxy"
    if isinstance(exc, ProxyUnreachable):
        error = ProxyFailure(
            f"{what} for {server}: {exc.brief}",
            hint=f"is the proxy up? check {proxy.variable} ({proxy.shown}), {bypass}",
        )
        return error
    if exc.status == 407:
        if proxy.has_credentials:
            hint = f"the proxy refused the user and password in {proxy.variable}: check them, {bypass}"
        else:
            hint = f"the proxy wants a user and password: {proxy.variable}=http://USER:PASSWORD@{proxy.host}, {bypass}"
    elif exc.status is None:
        hint = f"check {proxy.variable} ({proxy.shown}): its certificate must be trusted (system store, SSL_CERT_FILE, --ca-file), {bypass}"
    else:
        hint = f"the proxy would not connect to {exc.target}: check {proxy.variable} and NO_PROXY"
    error = ProxyFailure(f"{what} for {server}: {exc.brief}", hint=hint)
    error.transient = False
    return error
