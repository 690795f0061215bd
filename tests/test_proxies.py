"""HTTPS_PROXY / HTTP_PROXY / NO_PROXY, as Go's ProxyFromEnvironment reads them (docker,
skopeo, crane): the matching rules as tables, then pushes and pulls through a real
forward proxy (tests/support/forwardproxy.py) to the real registry.

The registry is reached as ``registry.example:PORT``, a name only the proxy resolves (to
127.0.0.1): a request that reached the registry went through the proxy. Loopback
addresses are never proxied, so the registry's own 127.0.0.1 address could not show it.
Proxy variables are set and unset here with monkeypatch; conftest removes the
developer's own for the whole run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocimodel import api
from ocimodel.errors import ProxyFailure, TransportError, UsageError
from ocimodel.monitoring.alerts import AlertFailed, post_alert
from ocimodel.transport.client import RegistryClient, TlsError
from ocimodel.transport.connection import ConnectionOptions, TlsOptions
from ocimodel.transport.proxies import NoProxy, ProxyConfig
from tests.support.cli_env import user_env
from tests.support.faultproxy import FaultProxy
from tests.support.files import tree_digest
from tests.support.forwardproxy import ForwardProxy
from tests.support.pki import Pki, make_pki
from tests.support.registry import LocalRegistry
from tests.support.secrets import assert_no_secret
from tests.support.tokenserver import TokenServer
from tests.support.webhook import Receiver

CLI = Path(sys.executable).with_name("ocimodel")
NAME = "registry.example"  # resolved by the proxy alone; also the name in pki.wrong_name
PROXY_USER = "proxy-user"
PROXY_PW = "proxy-pw-Q8v-secret"
VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "REQUEST_METHOD")


@pytest.fixture(autouse=True)
def _no_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    with ForwardProxy({NAME: "127.0.0.1", "tokens.example": "127.0.0.1"}) as p:
        yield p


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the rules, as tables (no registry) ----------------------------------------------------

# (NO_PROXY, request URL, proxied?) -- Go's documented examples first.
NO_PROXY_CASES = [
    ("", "https://registry.corp/v2/", True),
    ("foo.com", "https://foo.com/", False),
    ("foo.com", "https://bar.foo.com/", False),
    ("foo.com", "https://barfoo.com/", True),
    (".y.com", "https://x.y.com/", False),
    (".y.com", "https://y.com/", True),
    ("*.y.com", "https://x.y.com/", False),
    ("*.y.com", "https://y.com/", True),
    ("FOO.com", "https://Bar.FOO.com/", False),  # names compare without case
    ("foo.com:443", "https://foo.com/", False),  # the default port counts
    ("foo.com:5000", "https://foo.com/", True),
    ("foo.com:5000", "https://foo.com:5000/", False),
    ("foo.com:", "https://foo.com:8443/", False),  # an empty port: any port
    (" a.com , foo.com ", "https://foo.com/", False),  # spaces around entries
    ("a.com,,b.com", "https://b.com/", False),
    ("*", "https://anything.example/", False),
    ("a.com,*", "https://anything.example/", False),
    ("10.0.0.0/8", "https://10.1.2.3/", False),
    ("10.0.0.0/8", "https://11.1.2.3/", True),
    ("10.1.2.3/8", "https://10.200.0.1/", False),  # host bits in a CIDR are ignored, as Go does
    ("192.168.1.5", "https://192.168.1.5:5000/", False),
    ("192.168.1.5:5000", "https://192.168.1.5:5000/", False),
    ("192.168.1.5:5000", "https://192.168.1.5/", True),
    ("2001:db8::/32", "https://[2001:db8::7]/", False),
    ("2001:db8::1", "https://[2001:db8::1]/", False),
    ("[2001:db8::1]:5000", "https://[2001:db8::1]:5000/", False),
    ("[2001:db8::1]:5000", "https://[2001:db8::1]/", True),
    ("10.0.0.0/8", "https://[::ffff:10.0.0.1]/", False),  # IPv4-mapped IPv6 is that IPv4
    ("10.0.0.0/8", "https://ten.example/", True),  # a name is not matched against ranges
    (":5000", "https://foo.com:5000/", True),  # no host: ignored
    ("bücher.example", "https://xn--bcher-kva.example/", False),  # IDNA, both ways
    ("bücher.example", "https://bücher.example/", False),
    # never proxied, NO_PROXY or not
    ("", "https://localhost:5000/", False),
    ("", "https://127.0.0.1/", False),
    ("", "https://127.8.9.10:5000/", False),
    ("", "https://[::1]:5000/", False),
    ("", "https://[::ffff:127.0.0.1]/", False),
    ("", "https://localhost.example/", True),  # only the name localhost itself
]


@pytest.mark.parametrize(("no_proxy", "url", "proxied"), NO_PROXY_CASES)
def test_no_proxy_matching(no_proxy: str, url: str, proxied: bool) -> None:
    config = ProxyConfig.from_environment({"HTTPS_PROXY": "http://proxy.corp:3128", "NO_PROXY": no_proxy})
    chosen = config.proxy_for(url)
    assert (chosen is not None) == proxied, f"NO_PROXY={no_proxy!r} {url}"


@pytest.mark.parametrize(
    ("environ", "url", "shown", "variable"),
    [
        ({"HTTPS_PROXY": "http://p:3128"}, "https://r.corp/", "http://p:3128", "HTTPS_PROXY"),
        ({"HTTPS_PROXY": "http://p:3128"}, "http://r.corp/", None, None),  # http:// needs HTTP_PROXY
        ({"HTTP_PROXY": "http://p:3128"}, "http://r.corp/", "http://p:3128", "HTTP_PROXY"),
        ({"HTTP_PROXY": "http://p:3128"}, "https://r.corp/", None, None),
        ({"https_proxy": "http://low:1"}, "https://r.corp/", "http://low:1", "https_proxy"),
        ({"HTTPS_PROXY": "http://up:1", "https_proxy": "http://low:1"}, "https://r.corp/", "http://up:1", "HTTPS_PROXY"),
        ({"HTTPS_PROXY": "", "https_proxy": "http://low:1"}, "https://r.corp/", "http://low:1", "https_proxy"),
        ({"HTTPS_PROXY": "proxy.corp:3128"}, "https://r.corp/", "http://proxy.corp:3128", "HTTPS_PROXY"),  # no scheme: http
        ({"HTTPS_PROXY": "proxy.corp"}, "https://r.corp/", "http://proxy.corp:80", "HTTPS_PROXY"),
        ({"HTTPS_PROXY": "https://proxy.corp"}, "https://r.corp/", "https://proxy.corp:443", "HTTPS_PROXY"),
        ({"HTTPS_PROXY": "http://u:p@[2001:db8::9]:8080"}, "https://r.corp/", "http://[2001:db8::9]:8080", "HTTPS_PROXY"),
        ({"HTTP_PROXY": "http://p:1", "REQUEST_METHOD": "GET"}, "http://r.corp/", None, None),  # CGI: ignored
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "r.corp", "no_proxy": "*"}, "https://r.corp/", None, None),
        ({"HTTPS_PROXY": "http://p:1", "no_proxy": "other.corp"}, "https://r.corp/", "http://p:1", "HTTPS_PROXY"),
    ],
)
def test_which_variable_for_which_url(environ: dict, url: str, shown: str | None, variable: str | None) -> None:
    chosen = ProxyConfig.from_environment(environ).proxy_for(url)
    assert (chosen.shown if chosen else None) == shown
    assert (chosen.variable if chosen else None) == variable


def test_proxy_credentials_never_shown() -> None:
    config = ProxyConfig.from_environment({"HTTPS_PROXY": f"http://{PROXY_USER}:{PROXY_PW}@proxy.corp:3128"})
    assert config.https is not None and config.https.has_credentials
    assert_no_secret([repr(config), str(config), config.https.shown], [PROXY_PW])


@pytest.mark.parametrize("value", [f"socks5://{PROXY_USER}:{PROXY_PW}@p:1080", f"http://{PROXY_USER}:{PROXY_PW}@:3128"])
def test_an_unusable_proxy_is_an_error_without_its_password(value: str) -> None:
    """An error when a request would use it (not silently direct, as Go does), and only
    then: a broken HTTPS_PROXY does not stop an http:// request or a NO_PROXY host."""
    config = ProxyConfig.from_environment({"HTTPS_PROXY": value, "NO_PROXY": "direct.corp"})
    assert config.proxy_for("http://r.corp/") is None
    assert config.proxy_for("https://direct.corp/") is None
    with pytest.raises(UsageError) as info:
        config.proxy_for("https://r.corp/")
    assert "HTTPS_PROXY" in info.value.message
    assert_no_secret([info.value.message, info.value.hint or ""], [PROXY_PW])


def test_no_proxy_star_is_everything() -> None:
    assert NoProxy.parse("*").bypass("any.where", "443")
    assert not ProxyConfig.from_environment({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "*"}).active


# -- through the proxy, to the real registry ----------------------------------------------------


def test_push_and_pull_through_http_proxy(
    registry: LocalRegistry, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch, repo_name: str, model_dir: Path,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    (model_dir / "big.bin").write_bytes(os.urandom(3 << 20))  # large enough to be read from the socket (transport/body.py)
    ref = f"{NAME}:{registry.port}/{repo_name}:v1"
    pushed = api.push(model_dir, ref, plain_http=True)
    pulled = api.pull(ref, tmp_path / "out", plain_http=True)
    assert pulled.digest == pushed.digest
    assert tree_digest(tmp_path / "out") == tree_digest(model_dir)
    # Every request in absolute form, to the name only the proxy knows: uploads (their
    # Location, built by the registry from the Host header, included) and downloads.
    origin = f"http://{NAME}:{registry.port}/v2/"
    assert proxy.seen and all(s.target.startswith(origin) for s in proxy.seen), proxy.targets()[:5]
    methods = {s.method for s in proxy.seen}
    assert {"POST", "PUT", "GET", "HEAD"} <= methods
    assert any(s.method == "GET" and "/blobs/sha256:" in s.target for s in proxy.seen)
    assert all(s.proxy_authorization is None for s in proxy.seen)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def named_tls_registry(pki: Pki) -> Iterator[LocalRegistry]:
    """HTTPS with a certificate for registry.example only (the probe does not verify)."""
    with LocalRegistry(tls=pki.wrong_name) as reg:
        yield reg


@pytest.mark.parametrize("proxy_tls", [False, True], ids=["http-proxy", "https-proxy"])
def test_tls_registry_through_connect_tunnel(
    named_tls_registry: LocalRegistry, pki: Pki, monkeypatch: pytest.MonkeyPatch, repo_name: str, model_dir: Path,
    tmp_path: Path, proxy_tls: bool,
) -> None:
    """HTTPS_PROXY with credentials; with proxy_tls the proxy speaks TLS too (its own
    certificate, for 127.0.0.1, checked with the same CA): TLS to the registry inside TLS
    to the proxy."""
    with ForwardProxy({NAME: "127.0.0.1"}, credentials=(PROXY_USER, PROXY_PW),
                      tls=pki.server if proxy_tls else None) as proxy:
        monkeypatch.setenv("https_proxy", proxy.url_with(PROXY_USER, PROXY_PW))
        (model_dir / "big.bin").write_bytes(os.urandom(3 << 20))
        options = ConnectionOptions(plain_http=False, tls=TlsOptions(ca_file=pki.ca))
        ref = f"{NAME}:{named_tls_registry.port}/{repo_name}:v1"
        pushed = api.push(model_dir, ref, options=options)
        pulled = api.pull(ref, tmp_path / "out", options=options)
        assert pulled.digest == pushed.digest
        assert tree_digest(tmp_path / "out") == tree_digest(model_dir)
        assert proxy.seen and {s.method for s in proxy.seen} == {"CONNECT"}
        assert set(proxy.targets()) == {f"{NAME}:{named_tls_registry.port}"}
        assert all(s.proxy_authorization and s.proxy_authorization.startswith("Basic ") for s in proxy.seen)


def test_no_proxy_sends_the_request_direct(registry: LocalRegistry, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch,
                                           repo_name: str, model_dir: Path) -> None:
    ref = f"{NAME}:{registry.port}/{repo_name}"
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    api.push(model_dir, f"{ref}:v1", plain_http=True)
    assert api.list_tags(ref, plain_http=True) == ["v1"]  # through the proxy: it resolves the name
    before = len(proxy.seen)
    for no_proxy in (NAME, ".example", f"{NAME}:{registry.port}", "*"):
        monkeypatch.setenv("no_proxy", no_proxy)
        # Direct: this machine cannot resolve registry.example, and the proxy hears nothing.
        with pytest.raises(TransportError) as info:
            api.list_tags(ref, plain_http=True)
        assert not isinstance(info.value, ProxyFailure)
        assert f"cannot reach {NAME}:{registry.port}" in info.value.message
        assert len(proxy.seen) == before, no_proxy
    monkeypatch.setenv("no_proxy", f"{NAME}:1")  # another port: proxied again
    assert api.list_tags(ref, plain_http=True) == ["v1"]
    assert len(proxy.seen) > before


def test_loopback_is_never_proxied(registry: LocalRegistry, monkeypatch: pytest.MonkeyPatch, repo_name: str,
                                   model_dir: Path, tmp_path: Path) -> None:
    """With every variable pointing at a port where nothing listens, a registry on
    127.0.0.1 or localhost is reached all the same: the requests went direct."""
    dead = f"http://{PROXY_USER}:{PROXY_PW}@127.0.0.1:{_closed_port()}"
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(name, dead)
    pushed = api.push(model_dir, f"{registry.host}/{repo_name}:v1")
    assert api.pull(f"localhost:{registry.port}/{repo_name}:v1", tmp_path / "out", plain_http=True).digest == pushed.digest


@pytest.mark.registry
def test_token_service_on_another_host_decided_by_its_own_url(
    proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch, repo_name: str, model_dir: Path, tmp_path: Path,
) -> None:
    """One client, two hosts: the registry by a name (through the proxy), its token
    service on 127.0.0.1 (never proxied). Then the token service by a name too."""
    with TokenServer({"alice": "alice-pw-proxy-test"}) as tokens:
        named_realm = {**tokens.registry_auth(), "realm": f"http://tokens.example:{tokens.port}{TokenServer.PATH}"}
        with LocalRegistry(token_auth=tokens.registry_auth()) as reg:
            monkeypatch.setenv("HTTP_PROXY", proxy.url)
            ref = f"{NAME}:{reg.port}/{repo_name}:v1"
            api.push(model_dir, ref, plain_http=True, credentials=("alice", "alice-pw-proxy-test"))
            assert tokens.token_requests(), "the token service was asked"
            assert proxy.seen and all(s.target.startswith(f"http://{NAME}:{reg.port}/v2/") for s in proxy.seen)
        with LocalRegistry(token_auth=named_realm) as reg:
            proxy.seen.clear()
            api.push(model_dir, f"{NAME}:{reg.port}/{repo_name}:v1", plain_http=True,
                     credentials=("alice", "alice-pw-proxy-test"))
            assert any(t.startswith(f"http://tokens.example:{tokens.port}/token?") for t in proxy.targets("GET"))


def test_a_redirect_is_decided_by_its_own_url(registry: LocalRegistry, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch,
                                              repo_name: str, model_dir: Path, tmp_path: Path) -> None:
    """A blob GET answered 307 to storage on another host: the registry by its name
    through the proxy, the storage (here the registry again, as localhost) directly."""
    pushed = api.push(model_dir, f"{registry.host}/{repo_name}:v1")
    with RegistryClient(registry.host) as client:
        manifest = json.loads(client.get_manifest(repo_name, "v1").data)
    digest = manifest["layers"][0]["digest"]
    with FaultProxy(registry.host) as front:
        front.reply(307, "GET", f"/blobs/{digest}", times=None,
                    location=f"http://localhost:{registry.port}/v2/{repo_name}/blobs/{digest}")
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        pulled = api.pull(f"{NAME}:{front.port}/{repo_name}:v1", tmp_path / "out", plain_http=True)
        redirected = front.count("GET", f"/blobs/{digest}")
    assert pulled.digest == pushed.digest
    assert tree_digest(tmp_path / "out") == tree_digest(model_dir)
    assert redirected >= 1
    assert f"http://{NAME}:{front.port}/v2/{repo_name}/blobs/{digest}" in proxy.targets("GET")
    assert not [t for t in proxy.targets() if "localhost" in t]


# -- failures at the proxy: one clear line, no credentials ------------------------------------------


@pytest.mark.parametrize("tunnel", [False, True], ids=["forwarded", "connect"])
@pytest.mark.parametrize("given", [None, "wrong-pw-Vx9-secret"], ids=["no-credentials", "wrong-password"])
def test_407_is_a_clear_error_without_credentials(
    registry: LocalRegistry, named_tls_registry: LocalRegistry, monkeypatch: pytest.MonkeyPatch, tunnel: bool,
    given: str | None,
) -> None:
    with ForwardProxy({NAME: "127.0.0.1"}, credentials=(PROXY_USER, PROXY_PW)) as proxy:
        url = proxy.url_with(PROXY_USER, given) if given else proxy.url
        monkeypatch.setenv("HTTPS_PROXY" if tunnel else "HTTP_PROXY", url)
        port = named_tls_registry.port if tunnel else registry.port
        with pytest.raises(ProxyFailure) as info:
            api.list_tags(f"{NAME}:{port}/some/repo", plain_http=not tunnel)
        error = info.value
        assert proxy.seen, "the request reached the proxy"
    assert "407" in error.message and f"proxy {proxy.host}" in error.message and "\n" not in error.message
    assert ("HTTPS_PROXY" if tunnel else "HTTP_PROXY") in (error.hint or "")
    assert "NO_PROXY" in (error.hint or "")
    assert not error.transient
    assert_no_secret([error.message, error.hint or ""], [PROXY_PW, "wrong-pw-Vx9-secret"], users=[PROXY_USER])


def test_connect_refused_by_the_proxy_is_named(proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    """The proxy cannot reach the server and answers CONNECT with 502."""
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    port = _closed_port()
    with pytest.raises(ProxyFailure) as info:
        api.list_tags(f"{NAME}:{port}/some/repo", plain_http=False)
    assert f"the proxy {proxy.host} answered 502" in info.value.message
    assert f"would not connect to {NAME}:{port}" in (info.value.hint or "")
    assert proxy.targets() == [f"{NAME}:{port}"]


def test_unreachable_proxy_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    port = _closed_port()
    monkeypatch.setenv("HTTP_PROXY", f"http://{PROXY_USER}:{PROXY_PW}@127.0.0.1:{port}")
    with pytest.raises(ProxyFailure) as info:
        api.list_tags(f"{NAME}:5000/some/repo", plain_http=True)
    error = info.value
    assert f"cannot connect to the proxy 127.0.0.1:{port}" in error.message
    assert "HTTP_PROXY" in (error.hint or "") and "NO_PROXY" in (error.hint or "")
    assert_no_secret([error.message, error.hint or ""], [PROXY_PW], users=[PROXY_USER])


def test_untrusted_https_proxy_is_named(named_tls_registry: LocalRegistry, pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    with ForwardProxy({NAME: "127.0.0.1"}, tls=pki.server) as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        with RegistryClient(f"{NAME}:{named_tls_registry.port}", plain_http=False) as client, \
                pytest.raises(ProxyFailure) as info:
            client.ping()  # no --ca-file: the proxy's certificate is not trusted
    assert f"TLS with the proxy {proxy.host} failed" in info.value.message
    assert "not trusted" in info.value.message


def test_registry_tls_failure_in_a_tunnel_is_the_registrys(named_tls_registry: LocalRegistry, proxy: ForwardProxy,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """TLS to the registry inside the tunnel fails (its CA not given): the registry's
    TLS error, as without a proxy, not the proxy's."""
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    with RegistryClient(f"{NAME}:{named_tls_registry.port}", plain_http=False) as client, \
            pytest.raises(TlsError) as info:
        client.ping()
    assert not isinstance(info.value, ProxyFailure)
    assert f"TLS certificate of {NAME}:{named_tls_registry.port} is not trusted" in info.value.message
    assert proxy.targets("CONNECT"), "it went through the tunnel"


def test_cli_debug_never_prints_the_proxy_password(registry: LocalRegistry, proxy: ForwardProxy, repo_name: str,
                                                    model_dir: Path, tmp_path: Path) -> None:
    api.push(model_dir, f"{registry.host}/{repo_name}:v1")
    with ForwardProxy({NAME: "127.0.0.1"}, credentials=(PROXY_USER, PROXY_PW)) as guarded:
        ref = f"{NAME}:{registry.port}/{repo_name}:v1"
        good = subprocess.run(
            [str(CLI), "--debug", "pull", ref, str(tmp_path / "out"), "--plain-http"],
            env=user_env(HTTP_PROXY=guarded.url_with(PROXY_USER, PROXY_PW)), capture_output=True, text=True, timeout=60,
        )
        assert good.returncode == 0, good.stderr
        assert guarded.seen and all(s.target.startswith(f"http://{NAME}:") for s in guarded.seen)
        bad = subprocess.run(
            [str(CLI), "--debug", "ls", f"{NAME}:{registry.port}/{repo_name}", "--plain-http"],
            env=user_env(HTTP_PROXY=guarded.url), capture_output=True, text=True, timeout=60,
        )
    assert bad.returncode == 1
    errors = [line for line in bad.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"proxy {guarded.host}" in errors[0] and "407" in errors[0], bad.stderr
    assert_no_secret([good.stdout, good.stderr, bad.stdout, bad.stderr], [PROXY_PW], users=[PROXY_USER])


def test_alerts_go_through_the_proxy(proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    with Receiver() as hook:
        url = hook.url().replace("127.0.0.1", "hooks.example")
        proxy.hosts["hooks.example"] = "127.0.0.1"
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        delivery = post_alert(url, {"text": "hello"})
        assert delivery.status == 200 and hook.received == [{"text": "hello"}]
        assert proxy.targets("POST") == [url]
        monkeypatch.setenv("HTTP_PROXY", proxy.url.replace(str(proxy.port), str(_closed_port())))
        with pytest.raises(AlertFailed) as info:
            post_alert(url, {"text": "again"}, attempts=1)
    assert "cannot connect to the proxy" in info.value.message
    assert "s3cr3t" not in info.value.message


@pytest.mark.slow
def test_deadline_bounds_a_proxied_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy that trickles its answer's head a byte at a time: each read gets a byte long
    before any read timeout, so only the request's total limit can end it, which the
    deadline guard under the proxy's pool enforces (transport/deadline.py)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)

    def trickle() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                try:
                    for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 100:
                        conn.sendall(bytes([byte]))
                        time.sleep(0.1)
                except OSError:
                    return  # the client gave up: what the test wants

    threading.Thread(target=trickle, daemon=True).start()
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{listener.getsockname()[1]}")
    with RegistryClient(f"{NAME}:5000", plain_http=True, request_timeout=1.0) as client, \
            pytest.raises(TransportError) as info:
        client.ping()
    assert f"{NAME}:5000 did not answer within 1 s" in info.value.message
