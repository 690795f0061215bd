"""Authentication against a real registry (distribution 2.8.2): Basic (htpasswd) and the
Bearer token challenge with a test token service (tests/support/tokenserver.py).

What is proven here: push, pull and copy work with each scheme; a token is fetched per
scope (pull for reads, pull,push for writes) and cached, so a push costs a handful of token
requests, not one per blob; an expired token is replaced without the caller noticing;
refusals are typed errors with clear messages; the password never appears in a message,
a repr, or the CLI's output (docs/threats.md 8)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ocimodel import api
from ocimodel.errors import AuthenticationError, NotFound, PermissionDenied
from ocimodel.oci.digest import digest_bytes
from ocimodel.transport.auth import Credentials
from ocimodel.transport.client import RegistryClient
from tests.support.cli_env import user_env
from tests.support.faultproxy import FaultProxy
from tests.support.files import tree_digest
from tests.support.htpasswd import write_htpasswd
from tests.support.registry import LocalRegistry
from tests.support.secrets import assert_no_secret
from tests.support.tokenserver import TokenServer

BASIC_USER = "builder"
BASIC_PW = "htpw-Qx81-secret"
ALICE_PW = "alice-pw-Zr7-secret"
READER_PW = "reader-pw-Kp2-secret"
WRONG_PW = "wrong-pw-Mv4-secret"
SECRETS = (BASIC_PW, ALICE_PW, READER_PW, WRONG_PW)
USERS = (BASIC_USER, "alice", "reader")
CLI = Path(sys.executable).with_name("ocimodel")


@pytest.fixture(autouse=True)
def _no_env_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OCIMODEL_USERNAME", raising=False)
    monkeypatch.delenv("OCIMODEL_PASSWORD", raising=False)


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    htpasswd = write_htpasswd(tmp_path_factory.mktemp("htpasswd") / "htpasswd", BASIC_USER, BASIC_PW)
    with LocalRegistry(htpasswd=htpasswd) as reg:
        yield reg


@pytest.fixture(scope="module")
def token_server() -> Iterator[TokenServer]:
    with TokenServer({"alice": ALICE_PW, "reader": READER_PW}) as ts:
        yield ts


@pytest.fixture(scope="module")
def token_registry(token_server: TokenServer) -> Iterator[LocalRegistry]:
    with LocalRegistry(token_auth=token_server.registry_auth()) as reg:
        yield reg


@pytest.fixture
def tokens(token_server: TokenServer) -> Iterator[TokenServer]:
    """The token server with its request log cleared and its lifetimes restored after."""
    token_server.clear()
    expires_in, accepted_for = token_server.expires_in, token_server.accepted_for
    yield token_server
    token_server.expires_in, token_server.accepted_for = expires_in, accepted_for


@pytest.fixture
def five_files(tmp_path: Path) -> Path:
    root = tmp_path / "five"
    for i, name in enumerate(["model.safetensors", "config.json", "README.md", "a/b.txt", "c.bin"]):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"file {i} {name}\n".encode() * (1000 * (i + 1)))
    return root


def _assert_no_secret(*texts: str) -> None:
    """No password, raw or encoded (base64 ``user:password``, a Basic header, a URL)."""
    assert_no_secret(texts, SECRETS, USERS)


def _assert_clean(exc: BaseException) -> None:
    _assert_no_secret(str(exc), repr(exc), repr(exc.args), str(getattr(exc, "hint", "")))


# -- Basic (htpasswd) ----------------------------------------------------------------------


def test_basic_push_and_pull(basic_registry: LocalRegistry, repo_name: str, model_dir: Path, tmp_path: Path) -> None:
    ref = f"{basic_registry.host}/{repo_name}:v1"
    pushed = api.push(model_dir, ref, credentials=(BASIC_USER, BASIC_PW))
    pulled = api.pull(ref, tmp_path / "out", credentials=Credentials(BASIC_USER, BASIC_PW))
    assert pulled.digest == pushed.digest
    assert tree_digest(tmp_path / "out") == tree_digest(model_dir)


def test_basic_credentials_from_environment(
    basic_registry: LocalRegistry, repo_name: str, model_dir: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OCIMODEL_USERNAME", BASIC_USER)
    monkeypatch.setenv("OCIMODEL_PASSWORD", BASIC_PW)
    ref = f"{basic_registry.host}/{repo_name}:v1"
    api.push(model_dir, ref)
    api.pull(ref, tmp_path / "out")
    assert tree_digest(tmp_path / "out") == tree_digest(model_dir)
    assert api.list_tags(f"{basic_registry.host}/{repo_name}") == ["v1"]


def test_basic_without_credentials(basic_registry: LocalRegistry, repo_name: str, model_dir: Path, tmp_path: Path) -> None:
    ref = f"{basic_registry.host}/{repo_name}:v1"
    with pytest.raises(AuthenticationError) as info:
        api.pull(ref, tmp_path / "out")
    assert info.value.status == 401
    assert "authentication required" in str(info.value)
    assert "OCIMODEL_USERNAME" in (info.value.hint or "")
    with pytest.raises(AuthenticationError):
        api.push(model_dir, ref)
    assert not (tmp_path / "out").exists()


def test_basic_wrong_password(basic_registry: LocalRegistry, repo_name: str, model_dir: Path, tmp_path: Path) -> None:
    ref = f"{basic_registry.host}/{repo_name}:v1"
    api.push(model_dir, ref, credentials=(BASIC_USER, BASIC_PW))
    with pytest.raises(AuthenticationError) as info:
        api.pull(ref, tmp_path / "out", credentials=(BASIC_USER, WRONG_PW))
    assert info.value.status == 401
    _assert_clean(info.value)
    with pytest.raises(AuthenticationError) as info:
        api.push(model_dir, ref, credentials=(BASIC_USER, WRONG_PW))
    _assert_clean(info.value)


def test_credentials_repr_hides_password() -> None:
    credentials = Credentials("someone", WRONG_PW)
    _assert_no_secret(repr(credentials), str(credentials), f"{credentials}", repr([credentials]))
    assert "someone" in repr(credentials)


def _run_cli(args: list[str], username: str, password: str) -> subprocess.CompletedProcess[str]:
    env = user_env()
    env.update(OCIMODEL_USERNAME=username, OCIMODEL_PASSWORD=password, COLUMNS="200")
    return subprocess.run(
        [str(CLI), "--debug", *args], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.registry
@pytest.mark.parametrize("scheme", ["basic", "token"])
def test_cli_never_prints_the_password(
    scheme: str, request: pytest.FixtureRequest, repo_name: str, tmp_path: Path
) -> None:
    if scheme == "basic":
        reg: LocalRegistry = request.getfixturevalue("basic_registry")
        user = BASIC_USER
    else:
        reg = request.getfixturevalue("token_registry")
        user = "alice"
    assert CLI.is_file(), CLI
    proc = _run_cli(["pull", f"{reg.host}/{repo_name}:v1", str(tmp_path / "out")], user, WRONG_PW)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert "error:" in proc.stderr
    assert "Traceback" in proc.stderr  # --debug did print the traceback...
    _assert_no_secret(output)  # ...and still no password
    if scheme == "token":
        assert "token service" in proc.stderr and "refused the credentials" in proc.stderr


# -- Bearer token ---------------------------------------------------------------------------


def test_token_push_as_alice_pull_as_reader(
    token_registry: LocalRegistry, tokens: TokenServer, repo_name: str, model_dir: Path, tmp_path: Path
) -> None:
    ref = f"{token_registry.host}/{repo_name}:v1"
    pushed = api.push(model_dir, ref, credentials=("alice", ALICE_PW))
    push_requests = tokens.token_requests()
    assert all(r.user == "alice" and r.status == 200 for r in push_requests)
    assert f"repository:{repo_name}:pull,push" in [s for r in push_requests for s in r.scopes]
    assert all(r.param("service") == "test-registry" for r in push_requests)

    tokens.clear()
    pulled = api.pull(ref, tmp_path / "out", credentials=("reader", READER_PW))
    assert pulled.digest == pushed.digest
    assert tree_digest(tmp_path / "out") == tree_digest(model_dir)
    pull_requests = tokens.token_requests()
    assert pull_requests and all(r.user == "reader" for r in pull_requests)
    # Reads ask for pull only.
    assert {s for r in pull_requests for s in r.scopes} == {f"repository:{repo_name}:pull"}


def test_token_reader_cannot_push(
    token_registry: LocalRegistry, tokens: TokenServer, repo_name: str, model_dir: Path
) -> None:
    ref = f"{token_registry.host}/{repo_name}:v1"
    with pytest.raises(PermissionDenied) as info:
        api.push(model_dir, ref, credentials=("reader", READER_PW))
    message = str(info.value)
    assert f"push to {repo_name}" in message
    assert "denied" in message
    assert "granted pull" in message  # says what the token service did grant
    _assert_clean(info.value)
    # The refusal was not retried in a loop.
    assert len(tokens.token_requests()) <= 3
    # Nothing was tagged.
    with pytest.raises(NotFound):
        api.inspect(ref, credentials=("alice", ALICE_PW))


def test_token_anonymous_pull_of_public_repository(
    token_registry: LocalRegistry, tokens: TokenServer, repo_name: str, model_dir: Path, tmp_path: Path
) -> None:
    public = f"{token_registry.host}/public/{repo_name.split('/', 1)[1]}:v1"
    private = f"{token_registry.host}/{repo_name}:v1"
    api.push(model_dir, public, credentials=("alice", ALICE_PW))
    api.push(model_dir, private, credentials=("alice", ALICE_PW))
    tokens.clear()

    api.pull(public, tmp_path / "public")
    assert tree_digest(tmp_path / "public") == tree_digest(model_dir)
    assert tokens.token_requests() and not any(r.had_authorization for r in tokens.token_requests())

    with pytest.raises(AuthenticationError) as info:
        api.pull(private, tmp_path / "private")
    assert "anonymous access is not allowed" in str(info.value)
    assert "OCIMODEL_USERNAME" in (info.value.hint or "")
    assert not (tmp_path / "private").exists()


def test_token_requests_are_few_and_cached_per_scope(
    token_registry: LocalRegistry, tokens: TokenServer, repo_name: str, five_files: Path, tmp_path: Path
) -> None:
    ref = f"{token_registry.host}/{repo_name}:v1"
    result = api.push(five_files, ref, credentials=("alice", ALICE_PW), concurrency=4)
    assert len(result.files) == 5 and len(result.uploaded) == 6  # 5 files and the config
    requests = tokens.token_requests()
    # 6 blobs, 4 workers, ~20 registry requests: one token for pull (the first HEADs),
    # one for pull,push (the first upload); every other request reuses them.
    assert 1 <= len(requests) <= 3, [r.scopes for r in requests]
    scopes = [tuple(r.scopes) for r in requests]
    assert len(scopes) == len(set(scopes)), scopes  # no scope fetched twice

    tokens.clear()
    api.pull(ref, tmp_path / "out", credentials=("alice", ALICE_PW), concurrency=4)
    assert len(tokens.token_requests()) == 1


def test_token_cached_within_a_client(token_registry: LocalRegistry, tokens: TokenServer, repo_name: str, model_dir: Path) -> None:
    api.push(model_dir, f"{token_registry.host}/{repo_name}:v1", credentials=("alice", ALICE_PW))
    tokens.clear()
    with RegistryClient(token_registry.host, credentials=Credentials("reader", READER_PW)) as client:
        for _ in range(5):
            assert client.head_manifest(repo_name, "v1") is not None
            assert client.list_tags(repo_name) == ["v1"]
    assert len(tokens.token_requests()) == 1


def test_token_expiring_early_is_renewed_before_use(
    token_registry: LocalRegistry, tokens: TokenServer, repo_name: str, model_dir: Path
) -> None:
    """expires_in=2 and the registry really refuses the token after 2 s (its 60 s leeway
    is backdated away): the client renews it on its own once it expires."""
    api.push(model_dir, f"{token_registry.host}/{repo_name}:v1", credentials=("alice", ALICE_PW))
    tokens.expires_in = 2
    tokens.accepted_for = 2
    tokens.clear()
    with RegistryClient(token_registry.host, credentials=Credentials("reader", READER_PW)) as client:
        assert client.head_manifest(repo_name, "v1") is not None
        assert len(tokens.token_requests()) == 1
        time.sleep(2.5)
        assert client.head_manifest(repo_name, "v1") is not None
        assert client.list_tags(repo_name) == ["v1"]
    assert len(tokens.token_requests()) == 2


def test_token_refused_by_registry_is_renewed_transparently(
    token_registry: LocalRegistry, tokens: TokenServer, repo_name: str, model_dir: Path
) -> None:
    """The token service says 3600 s but the registry refuses the token after 2-3 s
    (error="invalid_token"): the 401 makes the client fetch a new token and retry, for a
    read and for an upload whose body is a stream that cannot be replayed."""
    api.push(model_dir, f"{token_registry.host}/{repo_name}:v1", credentials=("alice", ALICE_PW))
    tokens.expires_in = 3600
    tokens.accepted_for = 2
    tokens.clear()
    blob = b"streamed blob\n" * 5000
    blob2 = b"another streamed blob\n" * 5000
    with RegistryClient(token_registry.host, credentials=Credentials("alice", ALICE_PW)) as client:
        client.upload_blob(repo_name, digest_bytes(blob), len(blob), iter([blob[:30000], blob[30000:]]))
        assert client.head_manifest(repo_name, "v1") is not None
        count = len(tokens.token_requests())
        time.sleep(3.2)
        assert client.head_manifest(repo_name, "v1") is not None
        assert len(tokens.token_requests()) == count + 1
        time.sleep(3.2)
        # A generator body: the bodiless POST meets the 401 and gets the new token first.
        client.upload_blob(repo_name, digest_bytes(blob2), len(blob2), iter([blob2]))
        assert client.blob_exists(repo_name, digest_bytes(blob2))
    assert len(tokens.token_requests()) <= count + 3


def test_token_wrong_password(
    token_registry: LocalRegistry, tokens: TokenServer, repo_name: str, model_dir: Path, tmp_path: Path
) -> None:
    ref = f"{token_registry.host}/{repo_name}:v1"
    with pytest.raises(AuthenticationError) as info:
        api.push(model_dir, ref, credentials=("alice", WRONG_PW))
    message = str(info.value)
    assert "token service" in message and "refused the credentials (401)" in message
    assert f"127.0.0.1:{tokens.port}" in message
    _assert_clean(info.value)
    with pytest.raises(AuthenticationError) as info:
        api.pull(ref, tmp_path / "out", credentials=("nobody", WRONG_PW))
    _assert_clean(info.value)
    assert all(r.status == 401 and r.had_authorization for r in tokens.token_requests())


def test_token_copy_between_repositories(
    token_registry: LocalRegistry, tokens: TokenServer, repo_name: str, model_dir: Path, tmp_path: Path
) -> None:
    src = f"{token_registry.host}/{repo_name}:v1"
    dst = f"{token_registry.host}/{repo_name}-copy:v2"
    pushed = api.push(model_dir, src, credentials=("alice", ALICE_PW))
    tokens.clear()
    result = api.copy(src, dst, credentials=("alice", ALICE_PW))
    assert result.digest == pushed.digest
    scopes = {s for r in tokens.token_requests() for s in r.scopes}
    assert f"repository:{repo_name}:pull" in scopes
    assert f"repository:{repo_name}-copy:pull,push" in scopes
    assert f"repository:{repo_name}:pull,push" not in scopes  # the source is only read
    api.pull(dst, tmp_path / "out", credentials=("reader", READER_PW))
    assert tree_digest(tmp_path / "out") == tree_digest(model_dir)

    with pytest.raises(PermissionDenied, match=f"push to {repo_name}-other"):
        api.copy(src, f"{token_registry.host}/{repo_name}-other:v1", credentials=("reader", READER_PW))


def test_token_concurrent_requests_share_one_fetch(
    token_registry: LocalRegistry, tokens: TokenServer, repo_name: str, model_dir: Path
) -> None:
    api.push(model_dir, f"{token_registry.host}/{repo_name}:v1", credentials=("alice", ALICE_PW))
    tokens.clear()
    errors: list[BaseException] = []
    with RegistryClient(token_registry.host, credentials=Credentials("reader", READER_PW)) as client:
        barrier = threading.Barrier(8)

        def work() -> None:
            try:
                barrier.wait()
                for _ in range(3):
                    assert client.head_manifest(repo_name, "v1") is not None
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors
    assert len(tokens.token_requests()) == 1


# -- where credentials go (mock transport: situations the test registry cannot produce) -----


class _Recorder:
    """A mock network: records every request (host, path, Authorization) and answers."""

    def __init__(self, handler) -> None:
        self.seen: list[tuple[str, str, str | None]] = []
        self._handler = handler
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.seen.append((request.url.host, request.url.path, request.headers.get("authorization")))
        return self._handler(request)


def _token_response(value: str = "tok", expires_in: int = 300) -> httpx.Response:
    return httpx.Response(200, json={"token": value, "expires_in": expires_in})


def test_challenge_met_through_a_redirect_is_not_answered() -> None:
    """A blob GET redirected to another host that asks for a token: the credentials go
    neither to that host nor to the realm it names."""

    def handler(request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if host == "registry.example" and request.url.path.startswith("/v2/team/m/blobs/"):
            if request.headers.get("authorization") != "Bearer good":
                return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="https://auth.example/token",service="reg"'})
            if request.method == "HEAD":
                return httpx.Response(200)
            return httpx.Response(307, headers={"Location": "https://cdn.example/blob"})
        if host == "auth.example":
            return _token_response("good")
        if host == "cdn.example":
            return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="https://evil.example/token"'})
        return httpx.Response(200, json={"token": "evil"})

    recorder = _Recorder(handler)
    client = RegistryClient("registry.example", credentials=Credentials("alice", ALICE_PW), transport=httpx.MockTransport(recorder))
    with client:
        assert client.blob_exists("team/m", "sha256:" + "a" * 64)  # the token is cached now
        with pytest.raises(AuthenticationError):
            with client.stream_blob("team/m", "sha256:" + "a" * 64) as chunks:
                b"".join(chunks)
    hosts_with_auth = {host for host, _, auth in recorder.seen if auth}
    assert hosts_with_auth == {"registry.example", "auth.example"}
    assert "evil.example" not in {host for host, _, _ in recorder.seen}


def test_plain_http_realm_for_https_registry_gets_no_credentials() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "registry.example":
            return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="http://auth.example/token",service="reg"'})
        return _token_response()

    recorder = _Recorder(handler)
    client = RegistryClient("registry.example", credentials=Credentials("alice", ALICE_PW), transport=httpx.MockTransport(recorder))
    with client, pytest.raises(AuthenticationError, match="plain HTTP"):
        client.list_tags("team/m")
    assert [host for host, _, _ in recorder.seen] == ["registry.example"]


def test_basic_credentials_only_after_a_basic_challenge() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization", "").startswith("Basic "):
            return httpx.Response(200, json={"name": "team/m", "tags": ["v1"]})
        return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'})

    recorder = _Recorder(handler)
    client = RegistryClient("registry.example", credentials=Credentials("alice", ALICE_PW), transport=httpx.MockTransport(recorder))
    with client:
        assert client.list_tags("team/m") == ["v1"]
        assert client.list_tags("team/m") == ["v1"]
    auths = [auth for _, _, auth in recorder.seen]
    assert auths[0] is None  # nothing sent before the registry asked
    assert all(a and a.startswith("Basic ") for a in auths[1:]) and len(auths) == 3


def test_streamed_body_is_sent_with_a_token_obtained_first() -> None:
    """After the first challenge, a request for a new scope fetches its token before it is
    sent: a streamed PUT (which cannot be replayed) never meets a 401."""
    puts: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.example":
            scope = request.url.params.get("scope", "")
            return _token_response("push" if "push" in scope else "pull")
        auth = request.headers.get("authorization")
        challenge = 'Bearer realm="https://auth.example/token",service="reg",scope="repository:team/m:{}"'
        if request.method == "HEAD":
            if auth not in ("Bearer pull", "Bearer push"):
                return httpx.Response(401, headers={"WWW-Authenticate": challenge.format("pull")})
            return httpx.Response(404)
        if request.method == "PUT":
            puts.append(auth)
            request.read()
            if auth != "Bearer push":
                return httpx.Response(401, headers={"WWW-Authenticate": challenge.format("pull,push")})
            return httpx.Response(201)
        if auth != "Bearer push":
            return httpx.Response(401, headers={"WWW-Authenticate": challenge.format("pull,push")})
        return httpx.Response(202, headers={"Location": "/v2/team/m/blobs/uploads/u1?_state=x"})

    client = RegistryClient("registry.example", credentials=Credentials("alice", ALICE_PW), transport=httpx.MockTransport(_Recorder(handler)))
    data = b"x" * 1000
    with client:
        assert not client.blob_exists("team/m", digest_bytes(data))
        client.upload_blob("team/m", digest_bytes(data), len(data), iter([data[:500], data[500:]]))
    assert puts == ["Bearer push"]


def _token_registry(token_body) -> httpx.MockTransport:
    """A mock registry that accepts ``Bearer tok`` and a token service that answers with
    ``token_body()`` (bytes, or an iterator of bytes for a streamed answer)."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.example":
            return httpx.Response(200, content=token_body())
        if request.headers.get("authorization") == "Bearer tok":
            return httpx.Response(200, json={"name": "team/m", "tags": ["v1"]})
        return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="https://auth.example/token"'})

    return httpx.MockTransport(handler)


def test_token_service_answer_without_a_token_is_refused() -> None:
    client = RegistryClient("registry.example", transport=_token_registry(lambda: json.dumps({"token": ""}).encode()))
    with client, pytest.raises(AuthenticationError, match="without a usable token"):
        client.list_tags("team/m")


def test_token_service_answers_are_bounded_and_checked() -> None:
    """A token service that streams an answer far beyond the cap (1 MiB): ocimodel stops
    reading near the cap and refuses it. The answer is a *valid* token followed by 8 MiB of
    JSON whitespace, so without the cap the token would be accepted and the listing succeed."""
    chunk = 64 * 1024
    sent = [0]

    def endless_answer():
        head = json.dumps({"token": "tok", "expires_in": 300}).encode()
        sent[0] += len(head)
        yield head
        for _ in range(8 * 1024 * 1024 // chunk):
            sent[0] += chunk
            yield b" " * chunk

    # The answer is well-formed: read whole, it names a usable token.
    assert json.loads(b"".join(endless_answer()))["token"] == "tok"
    sent[0] = 0
    client = RegistryClient("registry.example", transport=_token_registry(endless_answer))
    with client, pytest.raises(AuthenticationError, match="oversized answer") as info:
        client.list_tags("team/m")
    assert info.value.status is None
    # Reading stopped at the cap (give or take a chunk), not at the end of the 8 MiB.
    assert sent[0] <= 1024 * 1024 + 2 * chunk, sent[0]


class _StreamingTransport(httpx.BaseTransport):
    """Like httpx.MockTransport, but the request body is left to the handler: MockTransport
    reads (and so buffers) it, which would make any body replayable."""

    def __init__(self, handler) -> None:
        self._handler = handler

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._handler(request)


def _upload_registry(put_accepts: set[str], *, post_delay: float = 0.0, expires_in: int = 300):
    """A mock registry with Bearer auth for upload tests; tokens are t1, t2, ... in order."""
    issued: list[str] = []
    puts: list[str | None] = []
    challenge = {"WWW-Authenticate": 'Bearer realm="https://auth.example/token",service="reg",scope="repository:team/m:pull,push"'}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.example":
            issued.append(f"t{len(issued) + 1}")
            return _token_response(issued[-1], expires_in)
        auth = (request.headers.get("authorization") or "").removeprefix("Bearer ")
        if request.method == "POST":
            if auth not in issued:
                return httpx.Response(401, headers=challenge)
            time.sleep(post_delay)
            return httpx.Response(202, headers={"Location": "/v2/team/m/blobs/uploads/u1?_state=x"})
        if request.method == "PUT":
            puts.append(auth or None)
            for _ in request.stream:  # consume it as a real transport does (read() would buffer it)
                pass
            if auth not in put_accepts:
                return httpx.Response(401, headers={**challenge, "WWW-Authenticate": challenge["WWW-Authenticate"] + ',error="invalid_token"'})
            return httpx.Response(201)
        return httpx.Response(404)

    return handler, issued, puts


def test_streamed_upload_refused_after_its_token_is_a_clean_error() -> None:
    """The registry refuses the token on a PUT whose body is a generator: it cannot be sent
    again, so the caller gets an AuthenticationError (not httpx.StreamConsumed), and the
    refused token is dropped so the next upload gets a new one."""
    handler, issued, puts = _upload_registry(put_accepts={"t2"})
    data = b"y" * 1000
    client = RegistryClient("registry.example", credentials=Credentials("alice", ALICE_PW), transport=_StreamingTransport(handler))
    with client:
        with pytest.raises(AuthenticationError):
            client.upload_blob("team/m", digest_bytes(data), len(data), iter([data]))
        client.upload_blob("team/m", digest_bytes(data), len(data), iter([data]))
    assert puts == ["t1", "t2"]


@pytest.mark.slow
def test_token_expiring_between_requests_is_renewed_before_a_streamed_body() -> None:
    """The token (expires_in=1) runs out while the POST is answered: the PUT with the
    streamed body gets a fresh token before it is sent instead of a 401 it cannot answer."""
    handler, issued, puts = _upload_registry(put_accepts={"t2"}, post_delay=0.7, expires_in=1)
    data = b"z" * 1000
    client = RegistryClient("registry.example", credentials=Credentials("alice", ALICE_PW), transport=_StreamingTransport(handler))
    with client:
        client.upload_blob("team/m", digest_bytes(data), len(data), iter([data]))
    assert puts == ["t2"] and issued == ["t1", "t2"]


def _authorizations(proxy: FaultProxy) -> list[str]:
    """The Authorization headers of every request the proxy relayed, as sent on the wire."""
    return [seen.headers["authorization"] for seen in proxy.requests if "authorization" in seen.headers]


@pytest.mark.parametrize("given", ["explicit", "environment"])
def test_explicit_and_env_credentials_go_to_one_registry_only(basic_registry, registry, five_files, repo_name, monkeypatch, given):
    """A copy from an open registry to a protected one: the credentials reach only the
    destination; the source registry (another host:port) never sees them. Checked on the
    wire: a recording proxy in front of each registry keeps every header it relays."""
    basic = f"Basic {base64.b64encode(f'{BASIC_USER}:{BASIC_PW}'.encode()).decode()}"
    credentials = Credentials(BASIC_USER, BASIC_PW) if given == "explicit" else None
    if given == "environment":
        monkeypatch.setenv("OCIMODEL_USERNAME", BASIC_USER)
        monkeypatch.setenv("OCIMODEL_PASSWORD", BASIC_PW)
    with FaultProxy(registry.host) as open_side, FaultProxy(basic_registry.host) as protected:
        source = f"{open_side.host}/{repo_name}:v1"
        api.push(five_files, source, credentials=(BASIC_USER, ALICE_PW))  # never asked for: never sent
        api.copy(source, f"{protected.host}/{repo_name}:v1", credentials=credentials)
        assert open_side.requests and _authorizations(open_side) == []
        sent = _authorizations(protected)
        assert sent and set(sent) == {basic}
        assert_no_secret([f"{r.method} {r.target} {r.headers}" for r in open_side.requests], SECRETS, USERS)

        # The other direction: the credentials belong to the destination (the open
        # registry, which never asks for them); the protected source refuses anonymous
        # reads and must not receive them.
        open_side.clear()
        protected.clear()
        with pytest.raises(AuthenticationError, match="authentication required"):
            api.copy(f"{protected.host}/{repo_name}:v1", f"{open_side.host}/{repo_name}:v2", credentials=credentials)
        assert protected.requests and _authorizations(protected) == []
        assert _authorizations(open_side) == []


def test_token_registry_sees_only_tokens_and_the_token_service_the_password(
    token_registry, tokens, five_files, repo_name
):
    """With the Bearer scheme the password goes to the token service only: every request
    the registry receives carries a token (or nothing, before its challenge), never Basic."""
    with FaultProxy(token_registry.host) as proxy:
        ref = f"{proxy.host}/{repo_name}:v1"
        api.push(five_files, ref, credentials=("alice", ALICE_PW))
        api.list_tags(f"{proxy.host}/{repo_name}", credentials=("alice", ALICE_PW))
        sent = _authorizations(proxy)
        assert sent and all(value.startswith("Bearer ") for value in sent), sent
        assert_no_secret([f"{r.method} {r.target} {r.headers}" for r in proxy.requests], SECRETS, USERS)
    assert {request.user for request in tokens.token_requests()} == {"alice"}
