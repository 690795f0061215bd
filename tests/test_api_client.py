"""ocimodel.Client, the session object: connection settings given once and used by every
operation; the module-level functions are the same operations with a Client per call."""

from __future__ import annotations

import inspect
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import ocimodel
from ocimodel.api import functions
from ocimodel.errors import AuthenticationError, RequestTimeout, UsageError
from ocimodel.transport.auth import Credentials
from ocimodel.transport.connection import ConnectionOptions
from ocimodel.transport.retry import RetryPolicy
from tests.support.files import tree_digest
from tests.support.htpasswd import write_htpasswd
from tests.support.registry import LocalRegistry
from tests.test_deadlines import QuietServer

USER = "builder"
PASSWORD = "client-Zr42-secret"
EVALUATION = "application/vnd.example.eval.v1+json"
CONNECTION_ARGUMENTS = ("plain_http", "credentials", "options", "concurrency")


@pytest.fixture(autouse=True)
def _no_env_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OCIMODEL_USERNAME", raising=False)
    monkeypatch.delenv("OCIMODEL_PASSWORD", raising=False)


@pytest.fixture(scope="module")
def login_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    htpasswd = write_htpasswd(tmp_path_factory.mktemp("htpasswd") / "htpasswd", USER, PASSWORD)
    with LocalRegistry(htpasswd=htpasswd) as reg:
        yield reg


# -- against a registry that wants a login -------------------------------------------------


def test_one_client_holds_the_credentials_for_every_operation(
    login_registry: LocalRegistry, repo_name: str, model_dir: Path, tmp_path: Path
) -> None:
    repo = f"{login_registry.host}/{repo_name}"
    client = ocimodel.Client(credentials=(USER, PASSWORD), plain_http=True, concurrency=2)

    v1 = client.push(model_dir, f"{repo}:1.0", name="m", version="1.0")
    (model_dir / "README.md").write_text("a second version\n")
    v2 = client.push(model_dir, f"{repo}:1.1", name="m", version="1.1")
    assert client.tag(f"{repo}:1.0", "stable") == v1.digest
    assert client.list_tags(repo) == ["1.0", "1.1", "stable"]
    assert client.inspect(f"{repo}:stable").digest == v1.digest
    promoted = client.promote(f"{repo}:1.1", "production", reason="newer")
    assert promoted.to_digest == v2.digest
    listed = client.versions(repo)
    assert [(v.tag, v.aliases) for v in listed.versions] == [("1.0", ["stable"]), ("1.1", ["production"])]
    assert [e.digest for e in client.history(repo, "production").events] == [v2.digest]
    changed = client.diff(f"{repo}:1.0", f"{repo}:1.1")
    assert [f.path for f in changed.files_changed] == ["README.md"]
    attached = client.attach(f"{repo}:1.1", [], artifact_type=EVALUATION)
    assert [r.digest for r in client.referrers(f"{repo}:1.1", artifact_type=EVALUATION).referrers] == [attached.digest]
    pulled = client.pull(f"{repo}:production", tmp_path / "out")
    assert pulled.digest == v2.digest
    assert tree_digest(tmp_path / "out") == tree_digest(model_dir)

    # The credentials are what let those calls in: without them the registry refuses.
    anonymous = ocimodel.Client(plain_http=True)
    with pytest.raises(AuthenticationError):
        anonymous.versions(repo)
    with pytest.raises(AuthenticationError):
        anonymous.pull(f"{repo}:1.0", tmp_path / "refused")
    with pytest.raises(AuthenticationError):
        ocimodel.list_tags(repo)  # a module-level function without them: the same refusal
    assert ocimodel.list_tags(repo, credentials=(USER, PASSWORD)) == ["1.0", "1.1", "production", "stable"]


def test_a_module_function_and_the_client_method_give_the_same_result(
    registry: LocalRegistry, repo_name: str, model_dir: Path, tmp_path: Path
) -> None:
    repo = f"{registry.host}/{repo_name}"
    client = ocimodel.Client()
    by_function = ocimodel.push(model_dir, f"{repo}:1.0", name="m", version="1.0")
    by_method = client.push(model_dir, f"{repo}:1.0", name="m", version="1.0")
    assert by_method.digest == by_function.digest
    assert by_method.files == by_function.files and by_method.uploaded == []  # nothing sent twice

    ref = f"{repo}:1.0"
    assert client.inspect(ref) == ocimodel.inspect(ref)
    assert client.list_tags(repo) == ocimodel.list_tags(repo) == ["1.0"]
    assert client.versions(repo) == ocimodel.versions(repo)
    assert client.diff(ref, ref) == ocimodel.diff(ref, ref)
    assert client.referrers(ref) == ocimodel.referrers(ref)
    one = client.pull(ref, tmp_path / "one")
    two = ocimodel.pull(ref, tmp_path / "two")
    assert one.model_dump(exclude={"destination"}) == two.model_dump(exclude={"destination"})


# -- without a registry ---------------------------------------------------------------------


def test_the_settings_are_held_once(tmp_path: Path) -> None:
    base = ConnectionOptions(plain_http=False, retry=RetryPolicy(attempts=2))
    client = ocimodel.Client(credentials=("alice", "s3cret-Pw"), plain_http=True, concurrency=3, options=base)
    assert client.options.credentials == Credentials("alice", "s3cret-Pw")
    assert client.options.plain_http is True  # the argument wins over the options given
    assert client.options.retry == RetryPolicy(attempts=2)  # the rest of the options are kept
    assert client.options.concurrency == 3
    assert "s3cret-Pw" not in repr(client) and "alice" in repr(client)
    with pytest.raises(UsageError, match="concurrency must be at least 1, got 0"):
        ocimodel.Client(concurrency=0)
    with pytest.raises(UsageError, match="concurrency must be at least 1, got 0"):
        ocimodel.push(tmp_path, "oci:store:1", concurrency=0)  # the module function says the same


@pytest.mark.slow  # waits out a timeout
def test_the_client_timeouts_bound_a_call_to_a_silent_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """The timeouts are settings of the Client, not only of the environment: the
    environment asks for 300 s here, the Client for 1 s, and the Client wins."""
    monkeypatch.setenv("OCIMODEL_REQUEST_TIMEOUT", "300")
    monkeypatch.setenv("OCIMODEL_READ_TIMEOUT", "300")
    client = ocimodel.Client(request_timeout=1, retry=RetryPolicy(attempts=5, base_delay=0.01))
    with QuietServer() as server:
        started = time.monotonic()
        with pytest.raises(RequestTimeout) as caught:
            client.list_tags(f"{server.host}/team/m")
        took = time.monotonic() - started
    assert caught.value.message.startswith(f"{server.host} did not answer within 1 s ("), caught.value.message
    assert took < 5, took  # 1 s asked; the environment's 300 s would hang the test
    with pytest.raises(UsageError, match="request_timeout must be a positive number of seconds, got 0"):
        ocimodel.Client(request_timeout=0)
    with pytest.raises(UsageError, match="read_timeout must be a positive number of seconds, got nan"):
        ocimodel.Client(read_timeout=float("nan"))


def test_every_module_function_with_connection_arguments_is_a_client_method() -> None:
    """The wrappers and the methods stay in step: the same operations, the same
    parameters, less the connection arguments the Client holds."""
    wrapped = []
    for name in ocimodel.__all__:
        function = getattr(ocimodel, name)
        if not inspect.isfunction(function):
            continue
        parameters = inspect.signature(function).parameters
        if not {"options", "plain_http"} & set(parameters):
            continue  # generate_key_pair, logout, the blob cache: nothing to connect to
        wrapped.append(name)
        assert function is getattr(functions, name)
        method = getattr(ocimodel.Client, name)
        own = [(p.name, p.kind, p.default) for p in parameters.values() if p.name not in CONNECTION_ARGUMENTS]
        theirs = [(p.name, p.kind, p.default) for p in inspect.signature(method).parameters.values()][1:]
        assert sorted(own) == sorted(theirs), name
    assert len(wrapped) == 37  # ... license_report, record_evaluation, evaluation_history, check_evaluations, export_evaluations
    assert callable(ocimodel.Client.logout)


def test_the_client_loads_no_operation_and_a_function_only_its_own() -> None:
    import subprocess
    import sys

    code = (
        "import sys, ocimodel\nocimodel.Client()\n"
        "print(sorted(m for m in sys.modules if m.startswith('ocimodel.api.')))\n"
        "ocimodel.push\n"
        "print(sorted(m for m in sys.modules if m.startswith('ocimodel.api.')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    client_only, after_push = done.stdout.splitlines()
    assert client_only == "['ocimodel.api.client']"
    # ocimodel.push is made from Client.push, so its module comes with it; no other operation's.
    assert after_push == "['ocimodel.api.client', 'ocimodel.api.common', 'ocimodel.api.functions', 'ocimodel.api.transfer']"
