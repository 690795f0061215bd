"""What registry listings show and what they may make us do (issue 12, registry items).

- ``ls`` hides the ``sha256-<hex>`` tags the referrers fallback writes, unless ``--all``;
- ``ls`` and ``versions`` of a repository that does not exist fail (exit 1), while an
  existing repository without tags is an empty list (exit 0);
- a tag from a registry's list is checked against the tag grammar before any URL is built
  from it, in every command that reads listings (ls, versions, history, search, delete);
- an HTTP server that is not a registry is called so.

The real registry where a registry is involved; a scripted hostile one (BadRegistry) for
the tag list no honest registry sends; Python's own http.server for a web server."""

from __future__ import annotations

import functools
import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import ocimodel
from ocimodel.errors import NotARegistry, NotFound
from tests.support.badregistry import BadRegistry, Reply
from tests.test_threats import serve_model

REPO = "t/model"


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ocimodel", *args], capture_output=True, text=True, timeout=120, check=False
    )


# -- fallback tags -------------------------------------------------------------------------


def test_ls_hides_referrer_index_tags_unless_all(registry, model_dir: Path, repo_name: str, tmp_path: Path) -> None:
    ref = f"{registry.host}/{repo_name}"
    ocimodel.push(model_dir, f"{ref}:v1")
    note = tmp_path / "eval.json"
    note.write_text('{"accuracy": 0.9}\n')
    ocimodel.attach(f"{ref}:v1", [note], artifact_type="application/vnd.example.eval+json")
    everything = ocimodel.list_tags(ref, all_tags=True)
    [index_tag] = [t for t in everything if t != "v1"]  # distribution 2.x: the fallback tag
    assert index_tag.startswith("sha256-")

    assert ocimodel.list_tags(ref) == ["v1"]
    shown = cli("ls", ref)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split() == ["v1"]
    shown_all = cli("ls", ref, "--all")
    assert shown_all.returncode == 0, shown_all.stderr
    assert sorted(shown_all.stdout.split()) == sorted(everything)


# -- missing repository ----------------------------------------------------------------------


@pytest.mark.parametrize("command", ["ls", "versions"])
def test_a_missing_repository_is_an_error(command: str, registry, repo_name: str) -> None:
    ref = f"{registry.host}/{repo_name}-never-pushed"
    done = cli(command, ref)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stdout == ""
    assert f"error: repository {repo_name}-never-pushed does not exist on {registry.host} (NAME_UNKNOWN)" in done.stderr
    assert "hint: " in done.stderr
    with pytest.raises(NotFound):
        ocimodel.list_tags(ref)
    with pytest.raises(NotFound):
        ocimodel.versions(ref)


def test_an_existing_repository_without_tags_is_empty(registry, model_dir: Path, repo_name: str) -> None:
    """distribution tells the two apart: once its last tag is deleted, a repository lists
    no tags (200) instead of NAME_UNKNOWN (404)."""
    ref = f"{registry.host}/{repo_name}"
    digest = ocimodel.push(model_dir, f"{ref}:v1").digest
    response = httpx.delete(f"{registry.url}/v2/{repo_name}/manifests/{digest}")
    assert response.status_code == 202, response.text
    assert ocimodel.list_tags(ref) == []
    done = cli("ls", ref)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""
    assert ocimodel.versions(ref).versions == []


# -- tags from a hostile list ------------------------------------------------------------------

VALID = ["ok-2", "v1"]
# Each would put something else than a tag into a URL path or query, or break the grammar.
INVALID = ["../../../v2/etc", "..", "a/b", "v2?x=1", "v1#frag", "%2e%2e", "-dash", ".dot", "x" * 129, "tab\there", ""]


@pytest.fixture
def hostile() -> Iterator[BadRegistry]:
    with BadRegistry() as bad:
        serve_model(bad, {"weights.bin": b"w" * 64, "config.json": b"{}"}, tag="v1")
        body = json.dumps({"name": REPO, "tags": VALID + INVALID}).encode()
        bad.set("GET", f"/v2/{REPO}/tags/list", Reply(body=body, headers={"Content-Type": "application/json"}))
        yield bad


def _bad_requests(bad: BadRegistry) -> list[str]:
    """Requests for a manifest whose reference is none of the valid tags or a digest."""
    wrong = []
    for _method, path in bad.requests:
        if not path.startswith(f"/v2/{REPO}/"):
            if path not in ("/v2/", f"/v2/{REPO}/tags/list"):
                wrong.append(path)
            continue
        rest = path[len(f"/v2/{REPO}/"):]
        kind, _, reference = rest.partition("/")
        asked = (*VALID, "production")  # the tags, and the alias history is asked about
        if kind == "manifests" and reference not in asked and not reference.startswith(("sha256:", "sha256-")) or kind not in ("manifests", "blobs", "tags", "referrers"):
            wrong.append(path)
    return wrong


@pytest.mark.parametrize("op", ["ls", "versions", "history", "search", "delete"])
def test_tags_from_a_hostile_list_never_reach_a_url(op: str, hostile: BadRegistry, caplog) -> None:
    ref = f"{hostile.host}/{REPO}"
    actions = {
        "ls": lambda: ocimodel.list_tags(ref),
        "versions": lambda: ocimodel.versions(ref),
        "history": lambda: ocimodel.history(ref, "production"),
        "search": lambda: ocimodel.search(hostile.host, repositories=[REPO]),
        "delete": lambda: ocimodel.delete(f"{ref}:v1"),
    }
    try:
        result = actions[op]()
    except ocimodel.OcimodelError:
        result = None  # history finds no alias; delete is refused (read-only): what was asked matters
    if op == "ls":
        assert result == VALID
    if op == "versions":
        assert [v.tag for v in result.versions] == ["v1"]
    assert _bad_requests(hostile) == []
    assert any(f"/v2/{REPO}/tags/list" == path for _, path in hostile.requests)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(f"listed {len(INVALID)} invalid tag(s) of {REPO}" in w for w in warnings), warnings


@pytest.mark.slow
def test_cli_ls_warns_about_invalid_tags(hostile: BadRegistry) -> None:
    done = cli("ls", f"{hostile.host}/{REPO}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == VALID
    assert f"invalid tag(s) of {REPO}, ignored: " in done.stderr
    assert "\t" not in done.stderr  # shown escaped


# -- a web server that is not a registry -----------------------------------------------------------


@pytest.fixture
def web_server(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "index.html").write_text("<html><body>hello</body></html>\n")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("op", ["ls", "pull", "push", "inspect"])
def test_a_web_server_is_not_called_a_registry(op: str, web_server: str, model_dir: Path, tmp_path: Path) -> None:
    ref = f"{web_server}/team/model"
    actions = {
        "ls": lambda: ocimodel.list_tags(ref),
        "pull": lambda: ocimodel.pull(f"{ref}:v1", tmp_path / "out"),
        "push": lambda: ocimodel.push(model_dir, f"{ref}:v1"),
        "inspect": lambda: ocimodel.inspect(f"{ref}:v1"),
    }
    with pytest.raises(NotARegistry) as caught:
        actions[op]()
    assert caught.value.message == f"{web_server} does not look like an OCI registry (it answered 404 text/html to /v2/)"
    assert "host and port" in caught.value.hint


@pytest.mark.slow
def test_cli_names_a_web_server(web_server: str) -> None:
    done = cli("ls", f"{web_server}/team/model")
    assert done.returncode == 1
    assert f"error: {web_server} does not look like an OCI registry (it answered 404 text/html to /v2/)" in done.stderr
    assert "hint: check the host and port" in done.stderr


def test_a_registry_that_lacks_a_repository_is_still_a_registry(registry, repo_name: str, tmp_path: Path) -> None:
    """The check must not turn an honest NOT_FOUND into 'not a registry'."""
    with pytest.raises(NotFound) as caught:
        ocimodel.pull(f"{registry.host}/{repo_name}:v1", tmp_path / "out")
    assert not isinstance(caught.value, NotARegistry)
