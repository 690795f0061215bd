"""Credentials as docker, oras, crane and skopeo find them (issue 3), against real registries:
the docker config's ``auths`` (base64 ``auth``, ``identitytoken``), ``credHelpers`` and
``credsStore`` through a fake ``docker-credential-test`` on PATH, precedence (explicit >
environment > docker config), and ``ocimodel login`` / ``logout`` in a subprocess.

Every test runs with DOCKER_CONFIG and HOME in its tmp_path: the real ~/.docker is never
read or written. Secrets never appear in output, logs or exceptions (docs/threats.md 8)."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocimodel import api
from ocimodel.errors import AuthenticationError, NotFound
from ocimodel.transport import credentials
from ocimodel.transport.auth import Credentials
from ocimodel.transport.connection import ConnectionOptions
from ocimodel.transport.credentials import CredentialHelperError, CredentialStoreError
from tests.support.cli_env import user_env
from tests.support.files import tree_digest
from tests.support.htpasswd import write_htpasswd
from tests.support.registry import LocalRegistry
from tests.support.secrets import assert_no_secret
from tests.support.tokenserver import TokenServer

BASIC_USER = "builder"
BASIC_PW = "cred-basic-Hq27-secret"
ALICE_PW = "cred-alice-Wd93-secret"
READER_PW = "cred-reader-Fj40-secret"
BOB_PW = "cred-bob-Ns16-secret"
WRONG_PW = "cred-wrong-Lx55-secret"
IDENTITY_TOKEN = "rt-identity-Ty61-secret"
UNKNOWN_TOKEN = "rt-unknown-Zc72-secret"
SECRETS = (BASIC_PW, ALICE_PW, READER_PW, BOB_PW, WRONG_PW, IDENTITY_TOKEN, UNKNOWN_TOKEN)
USERS = (BASIC_USER, "alice", "reader", "bob", "u", "o", "new", "hubuser", "octocat")
CLI = Path(sys.executable).with_name("ocimodel")

# The docker-credential-helpers protocol over a JSON file beside the script; it logs its
# calls (action, server, username) but never a secret.
FAKE_HELPER = r'''
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
STORE = os.path.join(HERE, "test-store.json")
LOG = os.path.join(HERE, "test-calls.log")


def load():
    try:
        with open(STORE) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return {}


def save(entries):
    with open(STORE, "w") as handle:
        json.dump(entries, handle)


def log(**entry):
    with open(LOG, "a") as handle:
        handle.write(json.dumps(entry) + "\n")


def main():
    action = sys.argv[1] if len(sys.argv) > 1 else ""
    data = sys.stdin.read()
    entries = load()
    if action == "get":
        server = data.strip()
        entry = entries.get(server)
        log(action="get", server=server, found=entry is not None)
        if entry is None:
            print("credentials not found in native keychain")
            return 1
        print(json.dumps({"ServerURL": server, "Username": entry["Username"], "Secret": entry["Secret"]}))
        return 0
    if action == "store":
        request = json.loads(data)
        entries[request["ServerURL"]] = {"Username": request["Username"], "Secret": request["Secret"]}
        save(entries)
        log(action="store", server=request["ServerURL"], username=request["Username"])
        return 0
    if action == "erase":
        server = data.strip()
        found = entries.pop(server, None) is not None
        save(entries)
        log(action="erase", server=server, found=found)
        if not found:
            print("credentials not found in native keychain")
            return 1
        return 0
    print("unknown action")
    return 1


sys.exit(main())
'''

# Fails every call; on `store` it echoes what it was given (secret included), as a careless
# helper might: the error must mask it.
BROKEN_HELPER = """#!/bin/sh
input=$(cat)
if [ "$1" = store ]; then echo "error storing credentials: backend rejected $input"; exit 1; fi
echo "backend is locked"
exit 1
"""

SLOW_HELPER = "#!/bin/sh\nexec sleep 120\n"


class FakeHelper:
    """``docker-credential-test`` in ``bin_dir`` (on PATH)."""

    def __init__(self, bin_dir: Path) -> None:
        self.script = bin_dir / "docker-credential-test"
        self.script.write_text(f"#!{sys.executable}\n{FAKE_HELPER}")
        self.script.chmod(0o755)
        self.store_file = bin_dir / "test-store.json"
        self.log_file = bin_dir / "test-calls.log"

    def entries(self) -> dict[str, dict[str, str]]:
        return json.loads(self.store_file.read_text()) if self.store_file.exists() else {}

    def put(self, server: str, username: str, secret: str) -> None:
        entries = self.entries()
        entries[server] = {"Username": username, "Secret": secret}
        self.store_file.write_text(json.dumps(entries))

    def calls(self) -> list[dict]:
        if not self.log_file.exists():
            return []
        text = self.log_file.read_text()
        _assert_no_secret(text)
        return [json.loads(line) for line in text.splitlines()]


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated docker config directory (not created), HOME, and a bin/ first on PATH."""
    monkeypatch.delenv("OCIMODEL_USERNAME", raising=False)
    monkeypatch.delenv("OCIMODEL_PASSWORD", raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    directory = tmp_path / "docker-config"
    monkeypatch.setenv("DOCKER_CONFIG", str(directory))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return directory


@pytest.fixture
def helper(tmp_path: Path) -> FakeHelper:
    return FakeHelper(tmp_path / "bin")


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    htpasswd = write_htpasswd(tmp_path_factory.mktemp("htpasswd") / "htpasswd", BASIC_USER, BASIC_PW)
    with LocalRegistry(htpasswd=htpasswd) as reg:
        yield reg


@pytest.fixture(scope="module")
def token_server() -> Iterator[TokenServer]:
    users = {"alice": ALICE_PW, "reader": READER_PW, "bob": BOB_PW}
    with TokenServer(users, refresh_tokens={IDENTITY_TOKEN: "alice"}) as ts:
        yield ts


@pytest.fixture(scope="module")
def token_registry(token_server: TokenServer) -> Iterator[LocalRegistry]:
    with LocalRegistry(token_auth=token_server.registry_auth()) as reg:
        yield reg


@pytest.fixture
def tokens(token_server: TokenServer) -> Iterator[TokenServer]:
    token_server.clear()
    refresh, rotate = dict(token_server.refresh_tokens), token_server.rotate_refresh_tokens
    yield token_server
    token_server.refresh_tokens, token_server.rotate_refresh_tokens = refresh, rotate


def _write_config(directory: Path, document: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.json"
    path.write_text(json.dumps(document, indent="\t"))
    return path


def _b64(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def _assert_no_secret(*texts: str) -> None:
    """No secret, raw or encoded (base64 ``user:password`` as in a docker ``auth`` entry or a
    Basic header, percent-encoded)."""
    assert_no_secret(texts, SECRETS, USERS)


def _assert_clean(exc: BaseException) -> None:
    _assert_no_secret(str(exc), repr(exc), repr(exc.args), str(getattr(exc, "hint", "")))


def _cli(*args: str, stdin: str = "", debug: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the CLI with this test's environment (DOCKER_CONFIG, HOME, PATH), no OCIMODEL_ credentials."""
    env = user_env()
    env.update(OCIMODEL_RETRIES="1", COLUMNS="200")
    proc = subprocess.run(
        [str(CLI), *(["--debug"] if debug else []), *args],
        input=stdin, env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    _assert_no_secret(proc.stdout, proc.stderr)
    return proc


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- where credentials are looked up (the config file alone) ----------------------------------


def test_docker_hub_key_and_registry_names(docker_config: Path) -> None:
    assert credentials.server_address("docker.io") == "https://index.docker.io/v1/"
    assert credentials.server_address("index.docker.io") == "https://index.docker.io/v1/"
    assert credentials.server_address("ghcr.io") == "ghcr.io"
    assert credentials.server_address("localhost:5000") == "localhost:5000"
    assert credentials.normalize_registry("https://ghcr.io/") == "ghcr.io"
    assert credentials.normalize_registry("https://index.docker.io/v1/") == "docker.io"

    _write_config(docker_config, {"auths": {
        "https://index.docker.io/v1/": {"auth": _b64("hubuser", BASIC_PW)},
        "ghcr.io": {"auth": _b64("octocat", ALICE_PW)},
    }})
    assert credentials.find("docker.io") == Credentials("hubuser", BASIC_PW)
    assert credentials.find("ghcr.io") == Credentials("octocat", ALICE_PW)
    assert credentials.find("quay.io") is None
    found = credentials.find("ghcr.io")
    assert found is not None and found.source == str(docker_config / "config.json")


@pytest.mark.parametrize("key", [
    "reg.example:5000", "https://reg.example:5000", "http://reg.example:5000",
    "https://reg.example:5000/v1/", "https://reg.example:5000/v2/", "reg.example:5000/v2/",
])
def test_auths_keys_match_as_docker_does(docker_config: Path, key: str) -> None:
    _write_config(docker_config, {"auths": {key: {"auth": _b64("u", BASIC_PW)}}})
    assert credentials.find("reg.example:5000") == Credentials("u", BASIC_PW)
    assert credentials.find("reg.example") is None  # the port is part of the name
    assert credentials.find("other.example:5000") is None


def test_exact_key_beats_an_older_spelling(docker_config: Path) -> None:
    _write_config(docker_config, {"auths": {
        "https://reg.example": {"auth": _b64("old", WRONG_PW)},
        "reg.example": {"auth": _b64("new", BASIC_PW)},
    }})
    assert credentials.find("reg.example") == Credentials("new", BASIC_PW)


def test_auths_entry_forms(docker_config: Path) -> None:
    _write_config(docker_config, {"auths": {
        "fields.example": {"username": "u", "password": BASIC_PW},
        "token.example": {"auth": _b64("u", ""), "identitytoken": IDENTITY_TOKEN},
        "empty.example": {},  # docker leaves this beside a credential helper
        "bad.example": {"auth": base64.b64encode(b"no-colon-" + WRONG_PW.encode()).decode()},
    }})
    assert credentials.find("fields.example") == Credentials("u", BASIC_PW)
    token = credentials.find("token.example")
    assert token == Credentials("u", "", identity_token=IDENTITY_TOKEN)
    assert credentials.find("empty.example") is None
    with pytest.raises(CredentialStoreError) as info:
        credentials.find("bad.example")
    assert "bad.example" in str(info.value) and "config.json" in str(info.value)
    _assert_clean(info.value)


def test_unreadable_config_is_a_clear_error(docker_config: Path) -> None:
    docker_config.mkdir()
    (docker_config / "config.json").write_text('{"auths": {"x": {"auth": "' + BASIC_PW + '"}')
    with pytest.raises(CredentialStoreError, match="is not valid JSON") as info:
        credentials.find("x")
    _assert_clean(info.value)


def test_credentials_repr_hides_every_secret() -> None:
    both = Credentials("someone", BASIC_PW, identity_token=IDENTITY_TOKEN, source="somewhere")
    _assert_no_secret(repr(both), str(both), repr([both]))
    assert "someone" in repr(both) and "identity_token=***" in repr(both)
    assert Credentials("a", "b") == Credentials("a", "b", source="elsewhere")  # source is not identity


# -- store and erase ---------------------------------------------------------------------------


def test_store_creates_the_directory_0700_and_the_file_0600(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tmp_path / "nested" / "docker"
    monkeypatch.setenv("DOCKER_CONFIG", str(directory))
    where = credentials.store("reg.example:5000", "u", BASIC_PW)
    path = directory / "config.json"
    assert where == credentials.Location(path) and str(where) == str(path)
    assert _mode(directory) == 0o700
    assert _mode(path) == 0o600
    assert json.loads(path.read_text()) == {"auths": {"reg.example:5000": {"auth": _b64("u", BASIC_PW)}}}
    assert credentials.find("reg.example:5000") == Credentials("u", BASIC_PW)


def test_store_and_erase_keep_everything_else(docker_config: Path) -> None:
    original = {
        "auths": {
            "other.example": {"auth": _b64("o", ALICE_PW), "email": "o@example.com"},
            "https://reg.example": {"auth": _b64("stale", WRONG_PW)},
        },
        "proxies": {"default": {"httpProxy": "http://proxy:3128"}},
        "currentContext": "desktop-linux",
        "plugins": {"x": {"k": "v"}},
    }
    path = _write_config(docker_config, original)
    path.chmod(0o644)
    credentials.store("reg.example", "u", BASIC_PW)
    document = json.loads(path.read_text())
    assert document["auths"] == {
        "other.example": original["auths"]["other.example"],
        "reg.example": {"auth": _b64("u", BASIC_PW)},  # the stale https:// spelling is gone
    }
    assert {k: v for k, v in document.items() if k != "auths"} == {k: v for k, v in original.items() if k != "auths"}
    assert _mode(path) == 0o600
    assert sorted(p.name for p in docker_config.iterdir()) == ["config.json"]  # no temporary left

    assert credentials.erase("reg.example") == credentials.Location(path)
    document = json.loads(path.read_text())
    assert document["auths"] == {"other.example": original["auths"]["other.example"]}
    assert document["proxies"] == original["proxies"]
    assert credentials.erase("reg.example") is None
    assert credentials.find("reg.example") is None


# -- credential helpers -------------------------------------------------------------------------


def test_cred_helpers_store_get_erase(docker_config: Path, helper: FakeHelper) -> None:
    path = _write_config(docker_config, {
        "credHelpers": {"reg.example:5000": "test"},
        "auths": {"reg.example:5000": {"auth": _b64("plain", WRONG_PW)}, "other.example": {"auth": _b64("o", ALICE_PW)}},
    })
    where = credentials.store("reg.example:5000", "u", BASIC_PW)
    assert where.helper == "test" and str(where) == "credential helper 'test'"
    assert helper.entries() == {"reg.example:5000": {"Username": "u", "Secret": BASIC_PW}}
    # The plain-text copy is gone, other registries stay.
    assert json.loads(path.read_text())["auths"] == {"other.example": {"auth": _b64("o", ALICE_PW)}}
    found = credentials.find("reg.example:5000")
    assert found == Credentials("u", BASIC_PW) and found.source == "credential helper 'test'"
    assert credentials.find("other.example") == Credentials("o", ALICE_PW)  # no helper for it: auths
    assert credentials.erase("reg.example:5000") == credentials.Location(path, "test")
    assert helper.entries() == {}
    assert credentials.erase("reg.example:5000") is None
    assert [c["action"] for c in helper.calls()] == ["store", "get", "erase", "erase"]
    assert helper.calls()[0] == {"action": "store", "server": "reg.example:5000", "username": "u"}


def test_creds_store_and_docker_hub(docker_config: Path, helper: FakeHelper) -> None:
    _write_config(docker_config, {"credsStore": "test"})
    credentials.store("docker.io", "hubuser", BASIC_PW)
    assert helper.entries() == {"https://index.docker.io/v1/": {"Username": "hubuser", "Secret": BASIC_PW}}
    assert credentials.find("docker.io") == Credentials("hubuser", BASIC_PW)
    assert credentials.find("ghcr.io") is None  # "credentials not found": anonymous
    assert json.loads((docker_config / "config.json").read_text()) == {"credsStore": "test"}


def test_cred_helpers_beat_creds_store(docker_config: Path, helper: FakeHelper) -> None:
    _write_config(docker_config, {"credHelpers": {"reg.example": "test"}, "credsStore": "missing"})
    helper.put("reg.example", "u", BASIC_PW)
    assert credentials.find("reg.example") == Credentials("u", BASIC_PW)
    with pytest.raises(CredentialHelperError):
        credentials.find("another.example")  # falls to credsStore, which is missing


def test_helper_identity_token(docker_config: Path, helper: FakeHelper) -> None:
    _write_config(docker_config, {"credsStore": "test"})
    helper.put("reg.example", "<token>", IDENTITY_TOKEN)
    assert credentials.find("reg.example") == Credentials("", "", identity_token=IDENTITY_TOKEN)


def test_missing_helper_is_a_typed_error(docker_config: Path) -> None:
    _write_config(docker_config, {"credsStore": "missing"})
    for call in (lambda: credentials.find("reg.example"), lambda: credentials.store("reg.example", "u", BASIC_PW)):
        with pytest.raises(CredentialHelperError) as info:
            call()
        assert info.value.helper == "missing"
        assert "docker-credential-missing not found" in str(info.value)
        assert "config.json" in (info.value.hint or "")
        _assert_clean(info.value)


def test_failing_helper_names_itself_and_masks_the_secret(docker_config: Path, tmp_path: Path) -> None:
    script = tmp_path / "bin" / "docker-credential-broken"
    script.write_text(BROKEN_HELPER)
    script.chmod(0o755)
    _write_config(docker_config, {"credsStore": "broken"})
    with pytest.raises(CredentialHelperError, match=r"docker-credential-broken failed \(get .*exit 1\): backend is locked"):
        credentials.find("reg.example")
    with pytest.raises(CredentialHelperError) as info:
        credentials.store("reg.example", "u", BASIC_PW)
    assert "backend rejected" in str(info.value) and "***" in str(info.value)
    _assert_clean(info.value)


@pytest.mark.slow
def test_slow_helper_times_out(docker_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "bin" / "docker-credential-slow"
    script.write_text(SLOW_HELPER)
    script.chmod(0o755)
    _write_config(docker_config, {"credsStore": "slow"})
    monkeypatch.setattr(credentials, "HELPER_TIMEOUT", 0.5)
    started = time.monotonic()
    with pytest.raises(CredentialHelperError, match="did not answer within 0.5 s"):
        credentials.find("reg.example")
    assert time.monotonic() - started < 60  # far below the helper's 120 s: it was not waited for


def test_helper_name_cannot_be_a_path(docker_config: Path) -> None:
    _write_config(docker_config, {"credsStore": "../../bin/sh"})
    with pytest.raises(CredentialHelperError, match="invalid credential helper"):
        credentials.find("reg.example")


# -- against the registries ---------------------------------------------------------------------


def test_auths_base64_push_and_pull(
    basic_registry: LocalRegistry, docker_config: Path, repo_name: str, model_dir: Path, tmp_path: Path
) -> None:
    _write_config(docker_config, {"auths": {basic_registry.host: {"auth": _b64(BASIC_USER, BASIC_PW)}}})
    ref = f"{basic_registry.host}/{repo_name}:v1"
    pushed = api.push(model_dir, ref)
    pulled = api.pull(ref, tmp_path / "out")
    assert pulled.digest == pushed.digest and tree_digest(tmp_path / "out") == tree_digest(model_dir)


def test_stored_wrong_password_is_refused_cleanly(
    basic_registry: LocalRegistry, token_registry: LocalRegistry, docker_config: Path, repo_name: str, tmp_path: Path
) -> None:
    _write_config(docker_config, {"auths": {
        basic_registry.host: {"auth": _b64(BASIC_USER, WRONG_PW)},
        token_registry.host: {"auth": _b64("alice", WRONG_PW)},
    }})
    with pytest.raises(AuthenticationError) as info:
        api.pull(f"{basic_registry.host}/{repo_name}:v1", tmp_path / "a")
    _assert_clean(info.value)
    with pytest.raises(AuthenticationError) as info:
        api.pull(f"{token_registry.host}/{repo_name}:v1", tmp_path / "b")
    assert "refused the credentials" in str(info.value)
    assert str(docker_config / "config.json") in (info.value.hint or "")  # says where they came from
    _assert_clean(info.value)


def test_cred_helper_push_and_pull(
    basic_registry: LocalRegistry, docker_config: Path, helper: FakeHelper, repo_name: str, model_dir: Path, tmp_path: Path
) -> None:
    _write_config(docker_config, {"credHelpers": {basic_registry.host: "test"}})
    helper.put(basic_registry.host, BASIC_USER, BASIC_PW)
    ref = f"{basic_registry.host}/{repo_name}:v1"
    api.push(model_dir, ref)
    api.pull(ref, tmp_path / "out")
    assert tree_digest(tmp_path / "out") == tree_digest(model_dir)
    calls = helper.calls()
    assert calls and all(c == {"action": "get", "server": basic_registry.host, "found": True} for c in calls)


def test_creds_store_with_token_auth(
    token_registry: LocalRegistry, tokens: TokenServer, docker_config: Path, helper: FakeHelper,
    repo_name: str, model_dir: Path,
) -> None:
    _write_config(docker_config, {"credsStore": "test"})
    helper.put(token_registry.host, "alice", ALICE_PW)
    api.push(model_dir, f"{token_registry.host}/{repo_name}:v1")
    assert tokens.token_requests() and all(r.user == "alice" for r in tokens.token_requests())


def test_helper_without_credentials_means_anonymous(
    basic_registry: LocalRegistry, docker_config: Path, helper: FakeHelper, repo_name: str, tmp_path: Path
) -> None:
    """As docker: a registry whose helper has nothing is anonymous, even if ``auths`` has an
    entry for it (the helper is the only place looked at)."""
    _write_config(docker_config, {
        "credsStore": "test",
        "auths": {basic_registry.host: {"auth": _b64(BASIC_USER, BASIC_PW)}},
    })
    with pytest.raises(AuthenticationError, match="authentication required"):
        api.pull(f"{basic_registry.host}/{repo_name}:v1", tmp_path / "out")
    assert helper.calls() == [{"action": "get", "server": basic_registry.host, "found": False}]


def test_identity_token_from_auths(
    token_registry: LocalRegistry, tokens: TokenServer, docker_config: Path, repo_name: str, model_dir: Path, tmp_path: Path
) -> None:
    _write_config(docker_config, {"auths": {token_registry.host: {"auth": _b64("alice", ""), "identitytoken": IDENTITY_TOKEN}}})
    ref = f"{token_registry.host}/{repo_name}:v1"
    pushed = api.push(model_dir, ref)
    assert api.pull(ref, tmp_path / "out").digest == pushed.digest
    requests = tokens.token_requests()
    assert requests and all(r.method == "POST" and r.status == 200 and r.user == "alice" for r in requests)
    assert all(not r.had_authorization for r in requests)  # no password sent anywhere
    assert all(r.param("grant_type") == "refresh_token" and r.param("client_id") == "ocimodel" for r in requests)
    assert all(r.param("service") == "test-registry" for r in requests)
    assert f"repository:{repo_name}:pull,push" in {r.param("scope") for r in requests}


def test_identity_token_from_helper(
    token_registry: LocalRegistry, tokens: TokenServer, docker_config: Path, helper: FakeHelper,
    repo_name: str, model_dir: Path,
) -> None:
    _write_config(docker_config, {"credHelpers": {token_registry.host: "test"}})
    helper.put(token_registry.host, "<token>", IDENTITY_TOKEN)
    api.push(model_dir, f"{token_registry.host}/{repo_name}:v1")
    assert tokens.token_requests() and all(r.method == "POST" and r.user == "alice" for r in tokens.token_requests())


def test_rotated_refresh_token_is_used_for_the_next_fetch(
    token_registry: LocalRegistry, tokens: TokenServer, repo_name: str, model_dir: Path
) -> None:
    """A token service that hands out a new refresh token with each answer and retires the
    old one: a copy to a second repository needs a token for another scope, so that fetch
    works only with the rotated token."""
    tokens.rotate_refresh_tokens = True
    tokens.refresh_tokens = {"rt-rotating-first": "alice"}
    credentials = Credentials("", "", identity_token="rt-rotating-first")
    options = ConnectionOptions(credentials=credentials)
    with options.client_for(token_registry.host) as client:
        for repository in (repo_name, f"{repo_name}-b"):  # the second scope needs the rotated token
            with pytest.raises(NotFound):  # nothing pushed there: answered, so authorised
                client.list_tags(repository)
    requests = tokens.token_requests()
    assert len(requests) >= 2 and all(r.status == 200 for r in requests)
    assert "rt-rotating-first" not in tokens.refresh_tokens


def test_unknown_identity_token_is_refused_cleanly(
    token_registry: LocalRegistry, tokens: TokenServer, docker_config: Path, repo_name: str, tmp_path: Path
) -> None:
    _write_config(docker_config, {"auths": {token_registry.host: {"identitytoken": UNKNOWN_TOKEN}}})
    with pytest.raises(AuthenticationError) as info:
        api.pull(f"{token_registry.host}/{repo_name}:v1", tmp_path / "out")
    assert "refused the identity token (400 invalid_grant)" in str(info.value)
    assert "ocimodel login" in (info.value.hint or "")
    _assert_clean(info.value)
    assert [r.status for r in tokens.token_requests()] == [400]


def test_precedence_explicit_then_environment_then_config(
    token_registry: LocalRegistry, tokens: TokenServer, docker_config: Path,
    repo_name: str, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Who pulled is what the token service saw: config (reader) < environment (bob) <
    the API parameter (alice)."""
    ref = f"{token_registry.host}/public/{repo_name.split('/', 1)[1]}:v1"
    api.push(model_dir, ref, credentials=("alice", ALICE_PW))

    runs = iter(range(100))

    def pulled_as(**kwargs) -> set[str | None]:
        tokens.clear()
        api.pull(ref, tmp_path / f"out-{next(runs)}", **kwargs)
        return {r.user for r in tokens.token_requests()}

    assert pulled_as() == {None}  # nothing anywhere: anonymous (public/ allows it)
    _write_config(docker_config, {"auths": {token_registry.host: {"auth": _b64("reader", READER_PW)}}})
    assert pulled_as() == {"reader"}
    monkeypatch.setenv("OCIMODEL_USERNAME", "bob")
    assert pulled_as() == {"reader"}  # a username without a password is not a credential
    monkeypatch.setenv("OCIMODEL_PASSWORD", BOB_PW)
    assert pulled_as() == {"bob"}
    assert pulled_as(credentials=("alice", ALICE_PW)) == {"alice"}


# -- ocimodel login / logout (CLI in a subprocess) ----------------------------------------------


def test_cli_login_stores_0600_then_pull_then_logout(
    basic_registry: LocalRegistry, docker_config: Path, repo_name: str, model_dir: Path, tmp_path: Path
) -> None:
    host = basic_registry.host
    proc = _cli("login", host, "-u", BASIC_USER, "--password-stdin", stdin=BASIC_PW + "\n")
    assert proc.returncode == 0, proc.stderr
    path = docker_config / "config.json"
    assert f"stored in {path}" in proc.stdout
    assert "unencrypted" in proc.stderr
    assert _mode(docker_config) == 0o700 and _mode(path) == 0o600
    assert json.loads(path.read_text()) == {"auths": {host: {"auth": _b64(BASIC_USER, BASIC_PW)}}}

    ref = f"{host}/{repo_name}:v1"
    api.push(model_dir, ref)  # the API finds them too
    proc = _cli("pull", ref, str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    assert tree_digest(tmp_path / "out") == tree_digest(model_dir)

    proc = _cli("logout", host)
    assert proc.returncode == 0 and f"from {path}" in proc.stdout
    assert json.loads(path.read_text()) == {"auths": {}}
    proc = _cli("logout", host)
    assert proc.returncode == 0 and "Not logged in" in proc.stdout
    proc = _cli("pull", ref, str(tmp_path / "again"))
    assert proc.returncode == 1 and "authentication required" in proc.stderr


@pytest.mark.registry
@pytest.mark.parametrize("scheme", ["basic", "token"])
def test_cli_login_with_a_wrong_password_stores_nothing(
    scheme: str, request: pytest.FixtureRequest, docker_config: Path
) -> None:
    reg: LocalRegistry = request.getfixturevalue(f"{scheme}_registry")
    user = BASIC_USER if scheme == "basic" else "alice"
    proc = _cli("login", reg.host, "-u", user, "--password-stdin", stdin=WRONG_PW, debug=True)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"error: login to {reg.host} failed" in proc.stderr
    assert "nothing was stored" in proc.stderr
    assert "Traceback" in proc.stderr  # --debug showed it, still without a secret (_cli checks)
    assert not docker_config.exists()


def test_cli_login_with_token_auth_verifies_by_fetching_a_token(
    token_registry: LocalRegistry, tokens: TokenServer, docker_config: Path
) -> None:
    proc = _cli("login", token_registry.host, "-u", "alice", "--password-stdin", "--json", stdin=ALICE_PW)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result == {
        "registry": token_registry.host, "username": "alice",
        "stored_in": str(docker_config / "config.json"), "helper": None, "verified": True,
    }
    assert [(r.user, r.status) for r in tokens.token_requests()] == [("alice", 200)]


def test_cli_login_through_a_helper(
    token_registry: LocalRegistry, docker_config: Path, helper: FakeHelper, repo_name: str, model_dir: Path, tmp_path: Path
) -> None:
    host = token_registry.host
    path = _write_config(docker_config, {"credHelpers": {host: "test"}, "currentContext": "default"})
    before = path.read_bytes()
    proc = _cli("login", host, "-u", "alice", "--password-stdin", stdin=ALICE_PW + "\n")
    assert proc.returncode == 0, proc.stderr
    assert "stored in credential helper 'test'" in proc.stdout
    assert "unencrypted" not in proc.stderr
    assert helper.entries() == {host: {"Username": "alice", "Secret": ALICE_PW}}
    assert path.read_bytes() == before  # nothing in plain text

    ref = f"{host}/{repo_name}:v1"
    assert _cli("push", str(model_dir), ref, "-q").returncode == 0
    assert _cli("pull", ref, str(tmp_path / "out"), "-q").returncode == 0
    assert tree_digest(tmp_path / "out") == tree_digest(model_dir)

    proc = _cli("logout", host)
    assert proc.returncode == 0 and "from credential helper 'test'" in proc.stdout
    assert helper.entries() == {}
    actions = [c["action"] for c in helper.calls()]
    assert actions[0] == "store" and actions[-1] == "erase" and set(actions[1:-1]) == {"get"}


def test_cli_missing_helper_is_one_error_line(basic_registry: LocalRegistry, docker_config: Path, tmp_path: Path) -> None:
    _write_config(docker_config, {"credsStore": "missing"})
    for args, stdin in (
        (["pull", f"{basic_registry.host}/test/x:v1", str(tmp_path / "out")], ""),
        (["login", basic_registry.host, "-u", BASIC_USER, "--password-stdin"], BASIC_PW),
    ):
        proc = _cli(*args, stdin=stdin)
        assert proc.returncode == 1, proc.stderr
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert errors == [
            f"error: credential helper docker-credential-missing not found on PATH (set in {docker_config / 'config.json'})"
        ]
        assert "Traceback" not in proc.stderr
    assert json.loads((docker_config / "config.json").read_text()) == {"credsStore": "missing"}


def test_cli_password_option_warns(basic_registry: LocalRegistry, docker_config: Path) -> None:
    proc = _cli("login", basic_registry.host, "-u", BASIC_USER, "-p", BASIC_PW)
    assert proc.returncode == 0, proc.stderr
    assert "--password is insecure" in proc.stderr and "shell history" in proc.stderr
    assert credentials.find(basic_registry.host) == Credentials(BASIC_USER, BASIC_PW)


@pytest.mark.parametrize("args, message", [
    (["--password-stdin"], "--password-stdin needs --username"),
    (["-u", "x", "-p", "y", "--password-stdin"], "exclude each other"),
    (["-u", "x"], "no password"),  # stdin is not a terminal: no prompt
    (["-u", "a:b", "--password-stdin"], "without ':'"),
])
@pytest.mark.slow
def test_cli_login_usage_errors(args: list[str], message: str, docker_config: Path) -> None:
    proc = _cli("login", "reg.example", *args, stdin="pw\n")
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert not docker_config.exists()


def test_cli_debug_never_shows_stored_secrets(
    token_registry: LocalRegistry, docker_config: Path, repo_name: str, tmp_path: Path
) -> None:
    for entry in ({"identitytoken": UNKNOWN_TOKEN}, {"auth": _b64("alice", WRONG_PW)}):
        _write_config(docker_config, {"auths": {token_registry.host: entry}})
        proc = _cli("pull", f"{token_registry.host}/{repo_name}:v1", str(tmp_path / "out"), debug=True)
        assert proc.returncode == 1 and "Traceback" in proc.stderr  # _cli asserts: no secret
        assert "refused the" in proc.stderr
