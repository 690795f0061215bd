"""TLS against a real registry (distribution 2.8.2) serving certificates of a private CA
(tests/support/pki.py): trust by --ca-file / OCIMODEL_CA_FILE / docker's certs.d layout,
--insecure with a warning, mutual TLS with --cert/--key, and one clear, typed error for
each way it goes wrong (untrusted, expired, wrong name, no or refused client certificate,
a bad file). Also: credentials never go over plain HTTP to a remote registry unless plain
HTTP was asked for (the rule lives in transport/auth.py and client.py).

127.0.0.1 is loopback, for which ocimodel talks plain HTTP by default: every test here
asks for HTTPS explicitly (plain_http=False, --no-plain-http)."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from ocimodel import api
from ocimodel.errors import AuthenticationError, OcimodelError, TransportError
from ocimodel.oci.digest import digest_bytes
from ocimodel.transport.auth import Credentials
from ocimodel.transport.client import RegistryClient, TlsError
from ocimodel.transport.connection import ConnectionOptions, TlsOptions
from ocimodel.transport.tls import CERTS_D_ENV, SystemTrustOnDemand, build_tls, tls_failure
from tests.support.cli_env import user_env
from tests.support.files import tree_digest
from tests.support.pki import Pki, make_pki
from tests.support.registry import LocalRegistry

CLI = Path(sys.executable).with_name("ocimodel")
HTTPS = {"plain_http": False}


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_registry(pki: Pki) -> Iterator[LocalRegistry]:
    with LocalRegistry(tls=pki.server, ca=pki.ca) as reg:
        yield reg


@pytest.fixture(scope="module")
def mtls_registry(pki: Pki) -> Iterator[LocalRegistry]:
    with LocalRegistry(tls=pki.server, client_ca=pki.client_ca, ca=pki.ca) as reg:
        yield reg


@pytest.fixture(autouse=True)
def _hermetic(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No TLS settings from the machine or the environment: an empty certs.d root."""
    for name in ("OCIMODEL_CA_FILE", "OCIMODEL_INSECURE", "OCIMODEL_CLIENT_CERT", "OCIMODEL_CLIENT_KEY", "OCIMODEL_PLAIN_HTTP"):
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path_factory.mktemp("certs.d-empty")
    monkeypatch.setenv(CERTS_D_ENV, str(empty))
    return empty


def _options(**tls) -> ConnectionOptions:
    return ConnectionOptions(plain_http=False, tls=TlsOptions(**tls))


def _cli(args: list[str], **env_extra: str) -> subprocess.CompletedProcess[str]:
    env = user_env()
    env.update(OCIMODEL_RETRIES="1", COLUMNS="200", **env_extra)
    env.setdefault(CERTS_D_ENV, os.environ[CERTS_D_ENV])
    return subprocess.run([str(CLI), *args], check=False, env=env, capture_output=True, text=True, timeout=60)


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


# -- trust: --ca-file, the environment, certs.d ---------------------------------------------


def test_push_and_pull_with_the_ca(tls_registry: LocalRegistry, pki: Pki, repo_name: str, model_dir: Path, tmp_path: Path) -> None:
    ref = f"{tls_registry.host}/{repo_name}:v1"
    options = _options(ca_file=pki.ca)
    pushed = api.push(model_dir, ref, options=options)
    pulled = api.pull(ref, tmp_path / "out", options=options)
    assert pulled.digest == pushed.digest
    assert tree_digest(tmp_path / "out") == tree_digest(model_dir)
    assert api.list_tags(f"{tls_registry.host}/{repo_name}", options=options) == ["v1"]
    with options.client_for(tls_registry.host) as client:
        assert client.base_url == tls_registry.url  # https://127.0.0.1:PORT


def test_localhost_name_is_covered_by_the_certificate(tls_registry: LocalRegistry, pki: Pki) -> None:
    with RegistryClient(f"localhost:{tls_registry.port}", tls=TlsOptions(ca_file=pki.ca), **HTTPS) as client:
        client.ping()


def test_loopback_default_stays_plain_http_and_no_plain_http_gives_https(tls_registry: LocalRegistry) -> None:
    assert RegistryClient(tls_registry.host).base_url == f"http://{tls_registry.host}"
    assert RegistryClient(tls_registry.host, plain_http=False).base_url == tls_registry.url


def test_without_the_ca_the_certificate_is_not_trusted(tls_registry: LocalRegistry, repo_name: str, tmp_path: Path) -> None:
    with pytest.raises(TlsError) as info:
        api.pull(f"{tls_registry.host}/{repo_name}:v1", tmp_path / "out", **HTTPS)
    error = info.value
    assert isinstance(error, TransportError) and isinstance(error, OcimodelError)
    assert error.message.startswith(f"TLS certificate of {tls_registry.host} is not trusted (")
    assert "unable to get local issuer certificate" in error.message
    assert "--ca-file" in (error.hint or "")
    assert error.transient is False  # the copy engine must not restart blobs on it
    assert not (tmp_path / "out").exists()


def test_system_trust_is_what_create_default_context_gives() -> None:
    """The context whose system CAs load on first use differs from the stdlib default in
    nothing else (guards against a Python that changes its defaults)."""
    ours, stdlib = SystemTrustOnDemand(), ssl.create_default_context()
    for setting in ("protocol", "verify_mode", "check_hostname", "options", "verify_flags",
                    "minimum_version", "maximum_version", "keylog_filename"):
        assert getattr(ours, setting) == getattr(stdlib, setting), setting
    assert ours.cert_store_stats()["x509_ca"] == 0  # nothing read yet
    ours.load_system_trust()
    assert ours.cert_store_stats()["x509_ca"] > 0  # the system's store (or Mozilla's bundle)


def test_a_ca_file_that_is_also_the_system_store_adds_no_public_cas(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    """A system store holding only the CAs already given (SSL_CERT_FILE = --ca-file, a
    locked-down CI) is not "empty": Mozilla's bundle must not be added to the trust."""
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca))
    monkeypatch.setenv("SSL_CERT_DIR", str(pki.dir / "no-such-dir"))
    context = build_tls("127.0.0.1:1", TlsOptions(ca_file=pki.ca)).context
    context.load_system_trust()
    assert context.cert_store_stats()["x509_ca"] == 1


def test_system_trust_is_read_on_the_first_https_connection(
    tls_registry: LocalRegistry, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The system store (here SSL_CERT_FILE naming the test CA, which OpenSSL honours) is
    read when the first TLS connection is made, not when the client is built: a registry
    trusted by the system alone still works."""
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca))
    with RegistryClient(tls_registry.host, **HTTPS) as client:
        assert client._tls.context.cert_store_stats()["x509_ca"] == 0
        client.ping()
        assert client._tls.context.cert_store_stats()["x509_ca"] == 1


def test_cli_without_the_ca_is_one_clear_error(tls_registry: LocalRegistry, repo_name: str) -> None:
    result = _cli(["ls", f"{tls_registry.host}/{repo_name}", "--no-plain-http"])
    assert result.returncode == 1, result.stderr
    assert _error_lines(result.stderr) == [
        f"error: TLS certificate of {tls_registry.host} is not trusted (unable to get local issuer certificate)"
    ]
    assert "hint: pass --ca-file with the registry's CA" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("how", ["--ca-file", "OCIMODEL_CA_FILE"])
def test_cli_ca_file_option_and_environment(
    how: str, tls_registry: LocalRegistry, pki: Pki, repo_name: str, model_dir: Path, tmp_path: Path
) -> None:
    ref = f"{tls_registry.host}/{repo_name}:v1"
    args, env = (["--ca-file", str(pki.ca)], {}) if how == "--ca-file" else ([], {"OCIMODEL_CA_FILE": str(pki.ca)})
    pushed = _cli([*args, "push", str(model_dir), ref, "--no-plain-http", "-q"], **env)
    assert pushed.returncode == 0, pushed.stderr
    digest = pushed.stdout.strip()
    pulled = _cli([*args, "pull", ref, str(tmp_path / "out"), "--no-plain-http", "-q"], **env)
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stdout.strip() == digest
    assert tree_digest(tmp_path / "out") == tree_digest(model_dir)


def test_cli_insecure_works_and_warns(tls_registry: LocalRegistry, repo_name: str, model_dir: Path) -> None:
    ref = f"{tls_registry.host}/{repo_name}:v1"
    result = _cli(["--insecure", "push", str(model_dir), ref, "--no-plain-http", "-q"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("sha256:")
    assert "warning: --insecure: TLS certificates are not verified" in result.stderr


@pytest.mark.registry
def test_insecure_accepts_even_a_bad_certificate(pki: Pki) -> None:
    with LocalRegistry(tls=pki.expired) as reg, RegistryClient(reg.host, tls=TlsOptions(insecure=True), **HTTPS) as client:
        client.ping()


def test_certs_d_directory_gives_the_ca(
    tls_registry: LocalRegistry, pki: Pki, repo_name: str, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "certs.d"
    (root / tls_registry.host).mkdir(parents=True)
    (root / tls_registry.host / "ca.crt").write_bytes(pki.ca.read_bytes())
    monkeypatch.setenv(CERTS_D_ENV, str(root))
    ref = f"{tls_registry.host}/{repo_name}:v1"
    api.push(model_dir, ref, **HTTPS)
    # ... and the CLI, in another process, reads it too
    result = _cli(["pull", ref, str(tmp_path / "out"), "--no-plain-http", "-q"], **{CERTS_D_ENV: str(root)})
    assert result.returncode == 0, result.stderr
    assert tree_digest(tmp_path / "out") == tree_digest(model_dir)
    # a directory for another host:port does not apply
    other = tmp_path / "other"
    (other / f"127.0.0.1:{tls_registry.port + 1}").mkdir(parents=True)
    (other / f"127.0.0.1:{tls_registry.port + 1}" / "ca.crt").write_bytes(pki.ca.read_bytes())
    monkeypatch.setenv(CERTS_D_ENV, str(other))
    with pytest.raises(TlsError, match="is not trusted"):
        api.list_tags(f"{tls_registry.host}/{repo_name}", **HTTPS)


# -- bad server certificates ---------------------------------------------------------------


@pytest.mark.registry
def test_expired_certificate_is_a_clear_error(pki: Pki) -> None:
    with (
        LocalRegistry(tls=pki.expired, ca=pki.ca) as reg,
        RegistryClient(reg.host, tls=TlsOptions(ca_file=pki.ca), **HTTPS) as client,
        pytest.raises(TlsError) as info,
    ):
        client.ping()
    assert info.value.message == f"TLS certificate of {reg.host} is not trusted (certificate has expired)"
    assert "validity period" in (info.value.hint or "")


@pytest.mark.registry
def test_certificate_for_another_name_is_a_clear_error(pki: Pki, tmp_path: Path) -> None:
    with LocalRegistry(tls=pki.wrong_name, ca=pki.ca) as reg:
        with RegistryClient(reg.host, tls=TlsOptions(ca_file=pki.ca), **HTTPS) as client, pytest.raises(TlsError) as info:
            client.ping()
        result = _cli(["--ca-file", str(pki.ca), "ls", f"{reg.host}/team/m", "--no-plain-http"])
    assert info.value.message == (
        f"TLS certificate of {reg.host} is not trusted "
        "(IP address mismatch, certificate is not valid for '127.0.0.1')"
    )
    assert "issued for other names" in (info.value.hint or "")
    assert result.returncode == 1
    assert _error_lines(result.stderr) == [f"error: {info.value.message}"]


def test_https_to_a_plain_http_registry_says_so(registry: LocalRegistry) -> None:
    with RegistryClient(registry.host, **HTTPS) as client, pytest.raises(TlsError) as info:
        client.ping()
    assert info.value.message.startswith(f"{registry.host} does not speak TLS on this address (")
    assert "--plain-http" in (info.value.hint or "")


# -- mutual TLS ----------------------------------------------------------------------------


def test_mtls_without_a_client_certificate(mtls_registry: LocalRegistry, pki: Pki, repo_name: str) -> None:
    with pytest.raises(TlsError) as info:
        api.list_tags(f"{mtls_registry.host}/{repo_name}", options=_options(ca_file=pki.ca))
    assert info.value.message.startswith(f"{mtls_registry.host} requires a TLS client certificate (")
    assert "--cert and --key" in (info.value.hint or "")
    result = _cli(["--ca-file", str(pki.ca), "ls", f"{mtls_registry.host}/{repo_name}", "--no-plain-http"])
    assert result.returncode == 1
    assert _error_lines(result.stderr) == [f"error: {info.value.message}"]
    assert "hint: pass --cert and --key" in result.stderr


def test_mtls_with_cert_and_key_on_the_cli(mtls_registry: LocalRegistry, pki: Pki, repo_name: str, model_dir: Path, tmp_path: Path) -> None:
    ref = f"{mtls_registry.host}/{repo_name}:v1"
    tls = ["--ca-file", str(pki.ca), "--cert", str(pki.client[0]), "--key", str(pki.client[1])]
    pushed = _cli([*tls, "push", str(model_dir), ref, "--no-plain-http", "-q"])
    assert pushed.returncode == 0, pushed.stderr
    env = {"OCIMODEL_CA_FILE": str(pki.ca), "OCIMODEL_CLIENT_CERT": str(pki.client[0]), "OCIMODEL_CLIENT_KEY": str(pki.client[1])}
    pulled = _cli(["pull", ref, str(tmp_path / "out"), "--no-plain-http", "-q"], **env)
    assert pulled.returncode == 0, pulled.stderr
    assert tree_digest(tmp_path / "out") == tree_digest(model_dir)


def test_mtls_certificate_and_key_in_one_file(mtls_registry: LocalRegistry, pki: Pki) -> None:
    with RegistryClient(mtls_registry.host, tls=TlsOptions(ca_file=pki.ca, client_cert=pki.client_combined), **HTTPS) as client:
        client.ping()


def test_mtls_client_certificate_from_another_ca_is_refused(mtls_registry: LocalRegistry, pki: Pki) -> None:
    tls = TlsOptions(ca_file=pki.ca, client_cert=pki.untrusted_client[0], client_key=pki.untrusted_client[1])
    with RegistryClient(mtls_registry.host, tls=tls, **HTTPS) as client, pytest.raises(TlsError) as info:
        client.ping()
    assert info.value.message.startswith(
        f"{mtls_registry.host} refused the TLS client certificate {pki.untrusted_client[0]} ("
    )


def test_mtls_from_the_certs_d_directory(
    mtls_registry: LocalRegistry, pki: Pki, repo_name: str, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docker's layout: certs.d/<host:port>/{ca.crt, client.cert, client.key}."""
    directory = tmp_path / "certs.d" / mtls_registry.host
    directory.mkdir(parents=True)
    (directory / "ca.crt").write_bytes(pki.ca.read_bytes())
    (directory / "client.cert").write_bytes(pki.client[0].read_bytes())
    (directory / "client.key").write_bytes(pki.client[1].read_bytes())
    monkeypatch.setenv(CERTS_D_ENV, str(tmp_path / "certs.d"))
    ref = f"{mtls_registry.host}/{repo_name}:v1"
    pushed = api.push(model_dir, ref, **HTTPS)
    assert api.pull(ref, tmp_path / "out", **HTTPS).digest == pushed.digest
    # a client key without its certificate is a setup mistake, said as such
    (directory / "client.cert").rename(directory / "client.crt.bak")
    with pytest.raises(TlsError, match=r"key .*client\.key has no client certificate client\.cert next to it"):
        RegistryClient(mtls_registry.host, **HTTPS)


# -- unusable files: one clear error naming the file ---------------------------------------


def test_cli_bad_ca_file_is_one_line_naming_the_file(tls_registry: LocalRegistry, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-ca.pem"
    result = _cli(["--ca-file", str(missing), "ls", f"{tls_registry.host}/team/m", "--no-plain-http"])
    assert result.returncode == 1
    assert _error_lines(result.stderr) == [f"error: CA file {missing} does not exist"]
    assert "hint: --ca-file (OCIMODEL_CA_FILE) must name a PEM file" in result.stderr
    assert "Traceback" not in result.stderr


def test_unusable_tls_files_are_typed_errors_naming_the_file(pki: Pki, tmp_path: Path) -> None:
    not_pem = tmp_path / "not-a-cert.pem"
    not_pem.write_text("hello\n")
    key_text = pki.client[1].read_text()
    cases = [
        (TlsOptions(ca_file=not_pem), f"CA file {not_pem} holds no usable PEM certificate"),
        (TlsOptions(ca_file=pki.client[1]), f"CA file {pki.client[1]} holds no usable PEM certificate"),
        (TlsOptions(ca_file=tmp_path), f"CA file {tmp_path} is a directory"),
        (TlsOptions(client_cert=tmp_path / "nope.crt"), f"client certificate {tmp_path / 'nope.crt'} does not exist"),
        (TlsOptions(client_cert=pki.client[0], client_key=tmp_path / "nope.key"), f"client key {tmp_path / 'nope.key'} does not exist"),
        (TlsOptions(client_cert=pki.client[0]), f"cannot use client certificate {pki.client[0]}"),
        (TlsOptions(client_cert=pki.client[0], client_key=pki.server[1]), "do not belong together"),
        (TlsOptions(client_cert=pki.client[0], client_key=pki.client_key_encrypted), "is encrypted"),
        (TlsOptions(client_key=pki.client[1]), "without a client certificate"),
    ]
    for options, expected in cases:
        with pytest.raises(TlsError) as info:
            RegistryClient("registry.example", tls=options)
        assert expected in info.value.message, options
        assert info.value.transient is False
        assert "PRIVATE KEY" not in str(info.value) + (info.value.hint or "")
        assert key_text.splitlines()[1] not in str(info.value)


def test_a_connection_cut_inside_tls_is_not_a_tls_error() -> None:
    """Only verification and handshake failures become TlsError (not transient); an
    unexpected EOF mid-stream stays a transient TransportError the engine may retry."""
    try:
        try:
            raise ssl.SSLEOFError(8, "EOF occurred in violation of protocol (_ssl.c:2427)")
        except ssl.SSLError as exc:
            raise httpx.ReadError("EOF occurred in violation of protocol") from exc
    except httpx.ReadError as exc:
        assert tls_failure(exc, "registry.example", None) is None
    try:
        raise httpx.ConnectError("refused") from ConnectionRefusedError(111, "Connection refused")
    except httpx.ConnectError as exc:
        assert tls_failure(exc, "registry.example", None) is None


def test_registry_fixture_checks_its_tls_files(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is not a file"):
        LocalRegistry(tls=(tmp_path / "c.crt", tmp_path / "k.key"))
    with pytest.raises(ValueError, match="need tls"):
        LocalRegistry(client_ca=pki.client_ca)


# -- the token service is reached with the same trust --------------------------------------


class _TokenRegistry(BaseHTTPRequestHandler):
    """/v2/ wants a Bearer token from /token on the same HTTPS server."""

    def do_GET(self) -> None:
        port = self.server.server_address[1]
        if self.path.startswith("/token"):
            self._answer(200, json.dumps({"token": "tls-token", "expires_in": 300}).encode())
        elif self.headers.get("Authorization") == "Bearer tls-token":
            self._answer(200, b"{}")
        else:
            challenge = f'Bearer realm="https://127.0.0.1:{port}/token",service="tls-test"'
            self._answer(401, b"{}", [("WWW-Authenticate", challenge)])

    def _answer(self, status: int, body: bytes, headers: list[tuple[str, str]] = ()) -> None:
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.mark.slow
def test_token_service_is_reached_with_the_same_ca(pki: Pki) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TokenRegistry)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*pki.server)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host = f"127.0.0.1:{server.server_address[1]}"
        with RegistryClient(host, tls=TlsOptions(ca_file=pki.ca), **HTTPS) as client:
            client.ping()  # 401 -> token from https://.../token (needs the CA) -> 200
    finally:
        server.shutdown()
        server.server_close()


# -- credentials and plain HTTP (the rule is in transport/auth.py and client.py) ---------------


class _Seen:
    def __init__(self, handler) -> None:
        self.requests: list[tuple[str, str, str, str | None]] = []
        self._handler = handler

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.url.scheme, request.url.host, request.url.path, request.headers.get("authorization")))
        return self._handler(request)


def _basic_registry(request: httpx.Request) -> httpx.Response:
    if request.url.host != "registry.example":
        return httpx.Response(404)
    if request.headers.get("authorization") is None:
        return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'})
    return httpx.Response(200, json={"name": "team/m", "tags": ["v1"]})


def test_credentials_for_a_remote_registry_go_over_https_only(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _Seen(_basic_registry)
    with RegistryClient("registry.example", credentials=Credentials("alice", "pw-secret"), transport=httpx.MockTransport(seen)) as client:
        assert client.list_tags("team/m") == ["v1"]
    assert {scheme for scheme, *_ in seen.requests} == {"https"}
    assert any(auth for *_, auth in seen.requests)


def test_credentials_over_plain_http_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _Seen(_basic_registry)
    creds = Credentials("alice", "pw-secret")
    with RegistryClient("registry.example", plain_http=True, credentials=creds, transport=httpx.MockTransport(seen)) as client:
        client.list_tags("team/m")
    assert [(scheme, bool(auth)) for scheme, _, _, auth in seen.requests] == [("http", False), ("http", True)]


def test_https_registry_redirecting_to_plain_http_gets_no_credentials() -> None:
    """A blob GET on https://registry.example redirected to http://registry.example (same
    host, plain HTTP): neither the Authorization header nor a challenge answer goes there."""
    data = b"weights"
    digest = digest_bytes(data)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.scheme == "http":
            if request.headers.get("authorization") is None:
                return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'})
            return httpx.Response(200, content=data)
        if request.headers.get("authorization") is None:
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'})
        return httpx.Response(307, headers={"Location": f"http://registry.example/plain/{digest}"})

    seen = _Seen(handler)
    creds = Credentials("alice", "pw-secret")
    with (
        RegistryClient("registry.example", credentials=creds, transport=httpx.MockTransport(seen)) as client,
        pytest.raises(AuthenticationError),  # the plain-HTTP host asked; nothing was sent
        client.stream_blob("team/m", digest) as chunks,
    ):
        b"".join(chunks)
    plain = [(path, auth) for scheme, _, path, auth in seen.requests if scheme == "http"]
    assert plain and all(auth is None for _, auth in plain)
