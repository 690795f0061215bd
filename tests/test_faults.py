"""Faults between ocimodel and a real registry (docs/threats.md 7, issue 3 "Faults").

A fault-injecting proxy (tests/support/faultproxy.py) sits in front of the session's
docker-registry and cuts connections mid-body, answers 500/503/429 bursts, stalls, and
plays a registry that ignores Range. A multi-file ~200 MiB model goes through it. Every
transfer either completes byte-exact or fails with a typed error, leaving no file, no
staging directory and no tag on a partial model; every retry is counted and asserted:
``result.retries`` (client retries + engine restarts), the clients' ``RetryStats`` by
reason, and the requests the proxy saw.

Tests set their own retry policy (conftest sets OCIMODEL_RETRIES=1 for the suite)."""

from __future__ import annotations

import hashlib
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

import ocimodel
from ocimodel.errors import RegistryError, TransportError
from ocimodel.transport.connection import ConnectionOptions
from tests.support.faultproxy import FaultProxy
from tests.support.files import tree_digest

MiB = 1 << 20
SHARD_SIZE = 64 * MiB
SHARDS = 3
POLICY = ocimodel.RetryPolicy(attempts=5, base_delay=0.01, max_delay=0.2)
# A stall no operation here may wait out. Tests that show one was not waited out bound their
# time by a fraction of it: generous on any machine (speed is measured in benchmarks/).
STALL = 240.0
OPTIONS = ocimodel.ConnectionOptions(retry=POLICY)
STAGING = ".ocimodel-pull-"


# -- the model ---------------------------------------------------------------------------


def _shard(seed: int, size: int) -> bytes:
    # A pseudo-random block of prime length, repeated: fast to make, and no resume or skip
    # mistake by a whole number of blocks could go unnoticed by the digest.
    block = random.Random(seed).randbytes(1_048_583)
    return (block * (size // len(block) + 1))[:size]


@pytest.fixture(scope="module")
def big_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 x 64 MiB weight shards and a few small files: ~200 MiB, same bytes every run."""
    root = tmp_path_factory.mktemp("faults") / "model"
    (root / "weights").mkdir(parents=True)
    for i in range(SHARDS):
        (root / "weights" / f"shard-{i}.bin").write_bytes(_shard(i, SHARD_SIZE))
    (root / "tokenizer.txt").write_bytes(b"".join(b"token-%06d\n" % i for i in range(700_000)))  # ~8 MiB
    (root / "config.json").write_text('{"model_type": "faulty", "hidden_size": 4096}\n')
    (root / "README.md").write_text("# A model pushed through faults\n")
    return root


@pytest.fixture(scope="module")
def digests(big_model: Path) -> dict[str, str]:
    """relpath -> sha256 hex of every file of the big model."""
    return {rel: hexdigest for rel, (hexdigest, _) in tree_digest(big_model).items()}


def _shard_hex(digests: dict[str, str], i: int) -> str:
    return digests[f"weights/shard-{i}.bin"]


def _shards_pattern(digests: dict[str, str]) -> str:
    return "(" + "|".join(_shard_hex(digests, i) for i in range(SHARDS)) + ")"


@pytest.fixture(scope="module")
def pushed(registry, big_model: Path) -> str:
    """The big model pushed once, straight to the registry: the source of the pull tests."""
    ref = f"{registry.host}/test/faults-source-{secrets.token_hex(3)}:v1"
    ocimodel.push(big_model, ref, options=OPTIONS)
    return ref


# -- fixtures and helpers ---------------------------------------------------------------


@pytest.fixture(autouse=True)
def _one_stream_per_blob(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pulls here take each blob as one stream (the path of small blobs and of
    registries that ignore Range), so every cut and resume is counted on one connection;
    large blobs in parts, through the same faults: tests/test_ranged_pull.py."""
    monkeypatch.setenv("OCIMODEL_PULL_CONNECTIONS", "1")


@pytest.fixture
def proxy(registry):
    with FaultProxy(registry.host) as p:
        yield p


@pytest.fixture
def clients(monkeypatch: pytest.MonkeyPatch) -> list:
    """Every RegistryClient the API makes during the test, to read their RetryStats."""
    made: list = []
    original = ConnectionOptions.client_for

    def client_for(self, registry, *args, **kwargs):
        client = original(self, registry, *args, **kwargs)
        made.append(client)
        return client

    monkeypatch.setattr(ConnectionOptions, "client_for", client_for)
    return made


def _retries(clients: list) -> Counter:
    total: Counter = Counter()
    for client in clients:
        total.update(client.stats.counts)
    return +total


def _assert_same_files(pulled: Path, model: Path) -> None:
    assert tree_digest(pulled) == tree_digest(model)


def _no_staging(*places: Path) -> None:
    for place in places:
        if place.is_dir():
            assert not [p.name for p in place.iterdir() if p.name.startswith(STAGING)]


def _settled_missing(registry, repo_name: str, digests: dict) -> set[str]:
    previous = None
    for _ in range(20):
        missing = {h for h in set(digests.values()) if not _registry_has_blob(registry, repo_name, h)}
        if missing == previous:
            return missing
        previous = missing
        time.sleep(0.5)
    return previous


def _upload_puts(proxy: FaultProxy) -> Counter:
    """Blob upload PUTs seen, by the digest (hex) they were for."""
    counts: Counter = Counter()
    for seen in proxy.seen("PUT", r"/blobs/uploads/"):
        digest = parse_qs(urlsplit(seen.target).query).get("digest", [""])[0]
        counts[digest.rpartition(":")[2]] += 1
    return counts


def _registry_tags(registry, repo: str) -> list[str]:
    """Tags as the registry lists them, read without ocimodel."""
    response = httpx.get(f"{registry.url}/v2/{repo}/tags/list")
    if response.status_code == 404:
        return []
    response.raise_for_status()
    return sorted(response.json().get("tags") or [])  # the registry lists them unsorted


def _registry_has_blob(registry, repo: str, hexdigest: str) -> bool:
    return httpx.head(f"{registry.url}/v2/{repo}/blobs/sha256:{hexdigest}").status_code == 200


def _abandoned_sessions(proxy: FaultProxy) -> set[str]:
    """Upload sessions (paths) the client sent a body or a commit to and never completed:
    no PUT to them was answered 201."""
    used = {seen.path for seen in proxy.seen("PUT|PATCH", r"/blobs/uploads/[^/?]+")}
    done = {seen.path for seen in proxy.seen("PUT", r"/blobs/uploads/[^/?]+") if seen.status == 201}
    return used - done


def _cancelled_sessions(proxy: FaultProxy) -> set[str]:
    return {seen.path for seen in proxy.seen("DELETE", r"/blobs/uploads/[^/?]+")}


def _assert_abandoned_sessions_cancelled(proxy: FaultProxy) -> None:
    """Every session the client gave up was cancelled, and no completed one. (A session
    opened but never written to is given up too, so there may be more cancels.)"""
    proxy.settle()  # every answer the client acted on is recorded (a 201 included)
    completed = {seen.path for seen in proxy.seen("PUT", r"/blobs/uploads/[^/?]+") if seen.status == 201}
    cancelled = _cancelled_sessions(proxy)
    assert _abandoned_sessions(proxy) <= cancelled
    assert not cancelled & completed


def _registry_keeps_session(registry, repo: str, path: str) -> bool:
    """Read in the registry's storage: an open session is a directory under ``_uploads``
    with its ``data`` and ``startedat`` (a cancel leaves only the empty hash-state tree)."""
    session = registry.root / "docker" / "registry" / "v2" / "repositories" / repo / "_uploads" / path.rpartition("/")[2]
    return (session / "data").exists() or (session / "startedat").exists()


# -- pull ---------------------------------------------------------------------------------


def test_pull_resumes_each_cut_with_a_range_request(proxy, pushed, big_model, digests, clients, tmp_path):
    cut = proxy.cut("GET", r"/blobs/sha256:" + _shards_pattern(digests), after=7 * MiB, times=4)
    out = tmp_path / "out"
    result = ocimodel.pull(proxy.via(pushed), out, options=OPTIONS)

    _assert_same_files(out, big_model)
    assert cut.fired == 4
    ranged = [s for s in proxy.seen("GET", r"/blobs/") if "range" in s.headers]
    assert len(ranged) == 4
    for seen in ranged:  # each resume starts exactly where its cut stopped (a multiple of 7 MiB)
        offset = int(re.fullmatch(r"bytes=(\d+)-", seen.headers["range"]).group(1))
        assert offset % (7 * MiB) == 0 and offset > 0
        assert seen.status == 206
    assert _retries(clients) == Counter({"resume": 4})
    assert result.retries == 4
    assert result.bytes_downloaded == sum(f.stat().st_size for f in big_model.rglob("*") if f.is_file())
    _no_staging(tmp_path, out)


def test_pull_from_a_registry_that_ignores_range(proxy, pushed, big_model, digests, clients, tmp_path):
    """The registry answers a Range request with 200 and the whole blob: the client drops
    what it already has and the digest still covers every byte once."""
    proxy.ignore_range("GET", r"/blobs/")
    cut = proxy.cut("GET", r"/blobs/sha256:" + _shard_hex(digests, 1), after=20 * MiB, times=2)
    out = tmp_path / "out"
    result = ocimodel.pull(proxy.via(pushed), out, options=OPTIONS)

    _assert_same_files(out, big_model)
    assert cut.fired == 2
    gets = proxy.seen("GET", _shard_hex(digests, 1))
    assert [("range" in s.headers, s.status, s.fault) for s in gets] == [
        (False, 200, "cut"), (True, 200, "cut"), (True, 200, "ignore_range"),
    ]
    assert gets[2].down == SHARD_SIZE  # the whole blob again, of which 40 MiB were dropped
    assert _retries(clients) == Counter({"resume": 2})
    assert result.retries == 2


def test_pull_rides_out_error_bursts(proxy, pushed, big_model, digests, clients, tmp_path):
    proxy.reply(500, "GET", r"/manifests/", times=2)
    proxy.reply(503, "GET", r"/blobs/", times=2)
    proxy.reply(429, "GET", r"/blobs/", times=2, retry_after="0")
    out = tmp_path / "out"
    result = ocimodel.pull(proxy.via(pushed), out, options=OPTIONS)

    _assert_same_files(out, big_model)
    assert _retries(clients) == Counter({"500": 2, "503": 2, "429": 2})
    assert result.retries == 6
    assert [r.fired for r in proxy.rules] == [2, 2, 2]


def test_retry_after_is_honoured_and_capped(registry, proxy, model_dir, repo_name, clients, tmp_path, monkeypatch):
    """The waits are recorded as the client chose them (1 s as asked, then 120 s capped to
    max_delay), not inferred from a wall-clock window; the clock only shows that the client
    did wait (a lower bound, which a slow machine cannot break). Without the cap this test
    fails after a 2-minute wait rather than hanging."""
    from ocimodel.transport import retry as retry_module

    waits: list[tuple[str, float]] = []
    real_wait = retry_module.wait

    def recording_wait(policy, attempt, what, reason, retry_after=None, **deadline):
        waits.append((reason, policy.delay(attempt, retry_after)))
        return real_wait(policy, attempt, what, reason, retry_after, **deadline)

    monkeypatch.setattr(retry_module, "wait", recording_wait)
    ref = f"{registry.host}/{repo_name}:v1"
    ocimodel.push(model_dir, ref, options=OPTIONS)
    proxy.reply(429, "GET", r"/manifests/", times=1, retry_after="1")
    proxy.reply(429, "GET", r"/manifests/", times=1, retry_after="120")  # capped at max_delay
    options = ocimodel.ConnectionOptions(retry=ocimodel.RetryPolicy(attempts=5, base_delay=0.01, max_delay=1.5))
    waits.clear()
    started = time.monotonic()
    result = ocimodel.pull(proxy.via(ref), tmp_path / "out", options=options)
    elapsed = time.monotonic() - started

    assert waits == [("429", 1.0), ("429", 1.5)]
    assert elapsed >= 2.5, elapsed
    assert result.retries == 2
    assert _retries(clients) == Counter({"429": 2})
    _assert_same_files(tmp_path / "out", model_dir)


def test_stall_longer_than_the_read_timeout_is_retried(
    proxy, pushed, big_model, digests, clients, tmp_path, monkeypatch
):
    """OCIMODEL_READ_TIMEOUT bounds each read; a stall before a manifest answer is retried,
    one in the middle of a blob is resumed, and neither waits for the stall to end."""
    monkeypatch.setenv("OCIMODEL_READ_TIMEOUT", "1")
    # Stalls far longer than this pull (seconds): finishing well before they end shows
    # neither was waited out, with a bound no slow machine comes near.
    head_stall = proxy.stall(STALL, "GET", r"/manifests/", after=None)
    body_stall = proxy.stall(STALL, "GET", _shard_hex(digests, 2), after=10 * MiB)
    out = tmp_path / "out"
    started = time.monotonic()
    result = ocimodel.pull(proxy.via(pushed), out, options=OPTIONS)
    elapsed = time.monotonic() - started

    _assert_same_files(out, big_model)
    assert head_stall.fired == 1 and body_stall.fired == 1
    assert _retries(clients) == Counter({"ReadTimeout": 1, "resume": 1})
    assert result.retries == 2
    assert elapsed < STALL / 4, elapsed


@pytest.mark.parametrize("fault", ["cut", "503"])
def test_pull_fails_cleanly_when_the_fault_never_stops(fault, proxy, pushed, digests, clients, tmp_path):
    """Every GET of one blob fails: a typed error after exactly the policy's number of tries
    (not tries x restarts), no file in the destination and no staging directory."""
    target = _shard_hex(digests, 0)
    expected = TransportError if fault == "cut" else RegistryError
    out = tmp_path / "out"
    existing = tmp_path / "existing"
    existing.mkdir()
    for destination in (out, existing):
        proxy.clear()
        if fault == "cut":
            proxy.cut("GET", target, after=1 * MiB, times=None)
        else:
            proxy.reply(503, "GET", target, times=None)
        with pytest.raises(expected) as caught:
            ocimodel.pull(proxy.via(pushed), destination, options=OPTIONS)
        assert caught.value.message
        assert proxy.count("GET", target) == POLICY.attempts
    assert not out.exists()
    assert list(existing.iterdir()) == []
    _no_staging(tmp_path, existing)


def test_copy_to_a_layout_resumes_cut_downloads(proxy, pushed, digests, clients, tmp_path):
    proxy.cut("GET", r"/blobs/sha256:" + _shards_pattern(digests), after=9 * MiB, times=2)
    layout = tmp_path / "store"
    result = ocimodel.copy(proxy.via(pushed), f"oci:{layout}:v1", options=OPTIONS)

    assert result.retries == 2
    assert _retries(clients) == Counter({"resume": 2})
    for hexdigest in digests.values():
        blob = layout / "blobs" / "sha256" / hexdigest
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == hexdigest


def _seed(registry, repo_name, tmp_path) -> None:
    """Give the repository a tag first: into a repository that holds something, files are
    hashed before upload (known digests, one PUT each), the path these tests target. A
    new repository gets files uploaded while hashed: see the *_streamed tests."""
    seed = tmp_path / "seed"
    seed.mkdir(exist_ok=True)
    (seed / "seed.txt").write_text("seed\n")
    ocimodel.push(seed, f"{registry.host}/{repo_name}:seed", options=OPTIONS)


# -- push ---------------------------------------------------------------------------------


def test_push_rides_out_error_bursts(registry, proxy, big_model, digests, repo_name, clients, tmp_path):
    proxy.reply(503, "HEAD", r"/blobs/", times=1)
    proxy.reply(500, "POST", r"/blobs/uploads/", times=2)
    proxy.reply(429, "POST", r"/blobs/uploads/", times=1, retry_after="0")
    proxy.cut("POST", r"/blobs/uploads/", direction="up", after=None)  # closed, no answer
    proxy.reply(500, "PUT", r"/manifests/", times=1)
    ref = f"{proxy.host}/{repo_name}:v1"
    result = ocimodel.push(big_model, ref, options=OPTIONS)

    assert _retries(clients) == Counter({"500": 3, "503": 1, "429": 1, "RemoteProtocolError": 1})
    assert result.retries == 6
    assert [r.fired for r in proxy.rules] == [1, 2, 1, 1, 1]
    blobs = len(digests) + 1  # the files and the config
    assert set(_upload_puts(proxy).values()) == {1} and len(_upload_puts(proxy)) == blobs
    assert proxy.count("POST", r"/blobs/uploads/") == blobs + 4
    assert _registry_tags(registry, repo_name) == ["v1"]
    out = tmp_path / "out"
    ocimodel.pull(f"{registry.host}/{repo_name}:v1", out, options=OPTIONS)
    _assert_same_files(out, big_model)


@pytest.mark.parametrize("fault", ["cut", "500", "session-killed"])
def test_push_restarts_only_the_blob_whose_upload_broke(
    fault, registry, proxy, big_model, digests, repo_name, clients, tmp_path
):
    _seed(registry, repo_name, tmp_path)
    target = _shard_hex(digests, 1)
    if fault == "cut":
        rule = proxy.cut("PUT", target, direction="up", after=10 * MiB)
    elif fault == "500":
        rule = proxy.reply(500, "PUT", target)
    else:  # what distribution answers when the session died (e.g. after a cut PATCH)
        rule = proxy.reply(404, "PUT", target, code="BLOB_UPLOAD_INVALID")
    result = ocimodel.push(big_model, f"{proxy.host}/{repo_name}:v1", options=OPTIONS)

    assert rule.fired == 1
    puts = _upload_puts(proxy)
    assert puts[target] == 2
    assert all(n == 1 for digest, n in puts.items() if digest != target)
    assert len(puts) == len(digests) + 1
    assert proxy.count("POST", r"/blobs/uploads/") == len(digests) + 2
    assert result.retries == 1 and _retries(clients) == Counter()
    assert len(result.uploaded) == len(digests) + 1
    assert _registry_tags(registry, repo_name) == ["seed", "v1"]
    out = tmp_path / "out"
    ocimodel.pull(f"{registry.host}/{repo_name}:v1", out, options=OPTIONS)
    _assert_same_files(out, big_model)


@pytest.mark.parametrize("fault", ["blob upload cut", "manifest 500"])
def test_push_that_keeps_failing_leaves_no_tag(fault, registry, proxy, big_model, repo_name, clients, tmp_path):
    _seed(registry, repo_name, tmp_path)
    if fault == "blob upload cut":
        proxy.cut("PUT", r"/blobs/uploads/", direction="up", after=1 * MiB, times=None)
        expected = TransportError
    else:
        proxy.reply(500, "PUT", r"/manifests/", times=None)
        expected = RegistryError
    with pytest.raises(expected):
        ocimodel.push(big_model, f"{proxy.host}/{repo_name}:v1", options=OPTIONS)

    assert "v1" not in _registry_tags(registry, repo_name)
    assert httpx.head(
        f"{registry.url}/v2/{repo_name}/manifests/v1",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    ).status_code == 404
    if fault == "blob upload cut":
        assert proxy.count("PUT", r"/manifests/") == 0
        puts = _upload_puts(proxy)
        assert max(puts.values()) == POLICY.attempts  # restarts are bounded per blob
        assert all(n <= POLICY.attempts for n in puts.values())
    else:
        assert proxy.count("PUT", r"/manifests/") == POLICY.attempts  # tried, never stored


# -- push interrupted: no upload session left open ---------------------------------------------


class _InterruptAfter:
    """A progress callback that plays Ctrl-C once ``limit`` bytes have been sent."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.sent = 0

    def transfer_started(self, blobs) -> None:
        pass

    def blob_started(self, descriptor, label) -> None:
        pass

    def blob_advanced(self, descriptor, nbytes: int) -> None:
        self.sent += nbytes
        if self.sent > self.limit:
            raise KeyboardInterrupt

    def blob_finished(self, descriptor, skipped) -> None:
        pass


@pytest.mark.parametrize("seeded", [False, True], ids=["streamed", "hashed-first"])
def test_interrupted_push_cancels_its_upload_sessions(seeded, registry, proxy, big_model, repo_name, tmp_path):
    """Ctrl-C in the middle of blob uploads: every session the push abandoned is
    cancelled (DELETE), so the registry need not keep it and its partial data for a week.
    Into a new repository files are streamed (PATCH, then PUT); into a used one they are
    hashed first and PUT whole: both kinds of session. (distribution 2.x refuses to cancel
    a session whose body was cut: its upload state no longer matches what it stored. The
    test below shows a session it does drop.)"""
    if seeded:
        _seed(registry, repo_name, tmp_path)
    with pytest.raises(KeyboardInterrupt):
        ocimodel.push(big_model, f"{proxy.host}/{repo_name}:v1", options=OPTIONS, progress=_InterruptAfter(24 * MiB))
    # Read the proxy's record once every body it relayed is counted and every answer
    # recorded: the client may have acted on an answer before the proxy noted it.
    proxy.settle()
    assert _abandoned_sessions(proxy), "the push was interrupted before any upload"
    _assert_abandoned_sessions_cancelled(proxy)
    # A cancelled session that had received nothing is gone from the registry's storage.
    written = {seen.path for seen in proxy.seen("PUT|PATCH", r"/blobs/uploads/[^/?]+") if seen.up}
    for path in _cancelled_sessions(proxy) - written:
        assert not _registry_keeps_session(registry, repo_name, path)
    assert proxy.count("PUT", r"/manifests/") == 0


@pytest.mark.parametrize("seeded", [False, True], ids=["streamed", "hashed-first"])
def test_push_interrupted_before_any_body_byte_leaves_no_session(seeded, registry, proxy, big_model, repo_name, tmp_path):
    """Ctrl-C as the first bytes of the blobs are read: the sessions the push opened are
    cancelled and gone from storage, and no body request was begun. (One begun and dropped
    before its first byte would race its cancel in distribution 2.8: the aborted request
    stores the session's hash state while the DELETE removes the session's directory; the
    removal fails, the DELETE is answered 204 all the same, and the session stays. That
    race is rare, so its cause is asserted too: no PATCH or PUT to a session left.)"""
    if seeded:
        _seed(registry, repo_name, tmp_path)
    with pytest.raises(KeyboardInterrupt):
        ocimodel.push(big_model, f"{proxy.host}/{repo_name}:v1", options=OPTIONS, progress=_InterruptAfter(0))
    proxy.settle()
    opened = proxy.count("POST", r"/blobs/uploads/")
    assert opened, "the push was interrupted before any upload session"
    assert len(_cancelled_sessions(proxy)) == opened
    assert proxy.count("PUT|PATCH", r"/blobs/uploads/") == 0
    uploads = registry.root / "docker" / "registry" / "v2" / "repositories" / repo_name / "_uploads"
    for session in uploads.iterdir() if uploads.exists() else ():
        assert not _registry_keeps_session(registry, repo_name, session.name)


def test_failed_upload_cancels_its_session_before_starting_over(registry, proxy, big_model, repo_name, clients):
    """A blob upload cut mid-body is started over in a new session; the broken one is
    cancelled, not left behind."""
    cut = proxy.cut("PATCH", r"/blobs/uploads/", direction="up", after=1 * MiB, times=1)
    ocimodel.push(big_model, f"{proxy.host}/{repo_name}:v1", options=OPTIONS)
    assert cut.fired == 1
    assert len(_abandoned_sessions(proxy)) == 1
    assert _cancelled_sessions(proxy) == _abandoned_sessions(proxy)  # nothing else was given up


@pytest.mark.serial  # a signal to a CLI push mid-upload: `make test` runs these alone (tests/conftest.py)
def test_cli_push_interrupted_before_a_body_leaves_no_session(registry, proxy, big_model, digests, repo_name, tmp_path):
    """Ctrl-C while an upload is stuck before its body reached the registry: the worker
    cannot notice (it is blocked in the socket), and the session is cancelled on the way
    out; the registry drops it (its GET answers 404 BLOB_UPLOAD_UNKNOWN)."""
    _seed(registry, repo_name, tmp_path)
    target = _shard_hex(digests, 0)
    stall = proxy.stall(60, "PUT", target, direction="up", after=None)
    env = dict(os.environ, OCIMODEL_RETRIES="5", OCIMODEL_RETRY_DELAY="0.01")
    process = subprocess.Popen(
        [sys.executable, "-m", "ocimodel.cli.app", "push", str(big_model), f"{proxy.host}/{repo_name}:v1"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        assert stall.started.wait(30), "the upload never reached the stall"
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        stall.release()
    assert process.returncode == 130, stderr
    [stuck] = [seen for seen in proxy.seen("PUT", target)]
    assert stuck.path in _cancelled_sessions(proxy)
    answer = httpx.get(f"{registry.url}{stuck.target}")
    assert answer.status_code == 404 and answer.json()["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"
    assert not _registry_keeps_session(registry, repo_name, stuck.path)
    _assert_abandoned_sessions_cancelled(proxy)


def test_a_mount_that_opened_an_upload_leaves_no_session(registry, repo_name):
    """A registry answers a mount it cannot do with a new upload session (202); the blob
    goes up in a session of its own, so that one is cancelled when the client closes."""
    from ocimodel.oci.digest import digest_bytes
    from ocimodel.transport.client import RegistryClient

    uploads = registry.root / "docker" / "registry" / "v2" / "repositories" / repo_name / "b" / "_uploads"
    with RegistryClient(registry.host) as client:
        assert client.mount_blob(f"{repo_name}/b", digest_bytes(b"not there"), f"{repo_name}/a") is False
        [session] = list(uploads.iterdir())
        assert (session / "startedat").exists()
    assert not (session / "startedat").exists()


# -- push interrupted in a CLI process ------------------------------------------------------


@pytest.mark.serial
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_cli_push_interrupted_mid_upload_leaves_no_tag_and_resumes(
    sig, registry, proxy, big_model, digests, repo_name, tmp_path
):
    _seed(registry, repo_name, tmp_path)
    target = _shard_hex(digests, 0)
    stall = proxy.stall(STALL, "PUT", target, direction="up", after=8 * MiB, then="cut")
    env = dict(os.environ, OCIMODEL_RETRIES="5", OCIMODEL_RETRY_DELAY="0.01")
    process = subprocess.Popen(
        [sys.executable, "-m", "ocimodel.cli.app", "push", str(big_model), f"{proxy.host}/{repo_name}:v1"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        assert stall.started.wait(30), "the upload never reached the stall"
        time.sleep(0.2)  # let the other uploads run on a little
        interrupted = time.monotonic()
        process.send_signal(sig)
        _, stderr = process.communicate(timeout=STALL / 2)
        took = time.monotonic() - interrupted
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        stall.release()
    if sig == signal.SIGINT:
        assert process.returncode == 130, stderr
        assert b"interrupted" in stderr
        # Far below the stall: Ctrl-C did not wait for the stalled upload to end.
        assert took < STALL / 4, f"Ctrl-C took {took:.1f}s while an upload was stalled"
        # Even the upload stuck in the stall had its session cancelled on the way out.
        _assert_abandoned_sessions_cancelled(proxy)
    else:
        assert process.returncode == -signal.SIGKILL

    assert proxy.count("PUT", r"/manifests/") == 0
    assert _registry_tags(registry, repo_name) == ["seed"]
    # A killed client may have sent a whole body the registry is still committing: read
    # what is missing once the registry has settled (two equal readings in a row).
    missing = _settled_missing(registry, repo_name, digests)
    assert target in missing

    proxy.clear()
    result = ocimodel.push(big_model, f"{proxy.host}/{repo_name}:v1", options=OPTIONS)
    uploaded = {d.rpartition(":")[2] for d in result.uploaded}
    assert uploaded & set(digests.values()) == missing
    assert set(_upload_puts(proxy)) & set(digests.values()) == missing
    assert _registry_tags(registry, repo_name) == ["seed", "v1"]
    out = tmp_path / "out"
    ocimodel.pull(f"{registry.host}/{repo_name}:v1", out, options=OPTIONS)
    _assert_same_files(out, big_model)


def test_cut_inside_a_small_body_is_retried(registry, proxy, model_dir, repo_name, clients):
    """A tag list cut mid-body is asked for again, like any cut connection."""
    ocimodel.push(model_dir, f"{registry.host}/{repo_name}:v1", options=OPTIONS)
    cut = proxy.cut("GET", r"/tags/list", after=5)
    assert ocimodel.list_tags(f"{proxy.host}/{repo_name}", options=OPTIONS) == ["v1"]
    assert cut.fired == 1
    assert _retries(clients) == Counter({"body": 1})


def test_cut_inside_a_manifest_body_is_retried(registry, proxy, model_dir, repo_name, clients, tmp_path):
    ocimodel.push(model_dir, f"{registry.host}/{repo_name}:v1", options=OPTIONS)
    cut = proxy.cut("GET", r"/manifests/", after=100)
    result = ocimodel.pull(f"{proxy.host}/{repo_name}:v1", tmp_path / "out", options=OPTIONS)
    assert cut.fired == 1
    assert result.retries == 1
    _assert_same_files(tmp_path / "out", model_dir)


def test_pull_writer_takes_a_restarted_blob(tmp_path):
    """The copy engine starts a blob over after a transient error that escaped the client
    (e.g. a connection cut while an error body was read). A pull's writer must take the
    second attempt (it once raised FileExistsError here)."""
    from contextlib import contextmanager

    from ocimodel.oci.models import Descriptor
    from ocimodel.packaging.unpack import DirectoryWriter, PlannedFile
    from ocimodel.targets.copy import TransferResult, copy_blobs

    data = b"weights" * 1000
    descriptor = Descriptor(
        mediaType="application/vnd.cncf.model.weight.v1.raw",
        digest="sha256:" + hashlib.sha256(data).hexdigest(), size=len(data),
    )

    class FlakySource:
        name = "flaky"
        opened = 0

        @contextmanager
        def open_blob(self, _descriptor):
            self.opened += 1
            first = self.opened == 1

            def chunks():
                yield data[:100]
                if first:
                    raise TransportError("connection cut")
                yield data[100:]

            yield chunks()

    result = TransferResult(descriptor=descriptor)
    with DirectoryWriter(tmp_path / "out", [PlannedFile("w.bin", descriptor, 0o644)]) as writer:
        copy_blobs(FlakySource(), writer, [descriptor], result, concurrency=1, retry=POLICY)
        writer.commit()
    assert result.restarts == 1
    assert (tmp_path / "out" / "w.bin").read_bytes() == data


# -- push into a new repository: files are uploaded while hashed (POST, PATCH, PUT ?digest=)


def test_streamed_upload_cut_restarts_only_that_file(registry, proxy, big_model, digests, repo_name, clients, tmp_path):
    rule = proxy.cut("PATCH", r"/blobs/uploads/", direction="up", after=10 * MiB, times=1)
    result = ocimodel.push(big_model, f"{proxy.host}/{repo_name}:v1", options=OPTIONS)
    assert rule.fired == 1
    files = len(list(p for p in big_model.rglob("*") if p.is_file()))
    assert proxy.count("PATCH", r"/blobs/uploads/") == files + 1  # one file sent twice
    assert result.retries == 1
    assert _registry_tags(registry, repo_name) == ["v1"]
    out = tmp_path / "out"
    ocimodel.pull(f"{registry.host}/{repo_name}:v1", out, options=OPTIONS)
    _assert_same_files(out, big_model)


def test_streamed_upload_that_keeps_failing_leaves_no_tag(registry, proxy, big_model, repo_name, clients):
    proxy.cut("PATCH", r"/blobs/uploads/", direction="up", after=1 * MiB, times=None)
    with pytest.raises(TransportError):
        ocimodel.push(big_model, f"{proxy.host}/{repo_name}:v1", options=OPTIONS)
    assert proxy.count("PUT", r"/manifests/") == 0
    assert _registry_tags(registry, repo_name) == []


@pytest.mark.serial
def test_cli_push_interrupted_during_a_streamed_upload_leaves_no_tag(registry, proxy, big_model, repo_name, tmp_path):
    stall = proxy.stall(STALL, "PATCH", r"/blobs/uploads/", direction="up", after=8 * MiB, then="cut")
    env = dict(os.environ, OCIMODEL_RETRIES="5", OCIMODEL_RETRY_DELAY="0.01")
    process = subprocess.Popen(
        [sys.executable, "-m", "ocimodel.cli.app", "push", str(big_model), f"{proxy.host}/{repo_name}:v1"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        assert stall.started.wait(30), "the upload never reached the stall"
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=STALL / 2)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        stall.release()
    assert process.returncode == 130, stderr
    assert proxy.count("PUT", r"/manifests/") == 0
    assert _registry_tags(registry, repo_name) == []
    _assert_abandoned_sessions_cancelled(proxy)
    proxy.clear()
    ocimodel.push(big_model, f"{proxy.host}/{repo_name}:v1", options=OPTIONS)
    assert _registry_tags(registry, repo_name) == ["v1"]


@pytest.mark.parametrize("how", ["streamed", "monolithic"])
def test_an_upload_cut_mid_body_closes_its_source_at_once(how, registry, proxy, repo_name):
    """When a blob upload's request fails with its body half read, the source is closed on
    the way out, not left suspended until the collector finds it (the exception's
    traceback keeps it in a cycle; for a large blob it holds a hashing thread)."""
    from ocimodel.oci.digest import digest_bytes
    from ocimodel.transport.client import RegistryClient

    closed: list[bool] = []
    piece, count = b"x" * MiB, 64  # more than the socket buffers hold: the cut comes mid-body

    def source():
        try:
            for _ in range(count):
                yield piece
        finally:
            closed.append(True)

    proxy.cut("PATCH|PUT", r"/blobs/uploads/", direction="up", after=0, times=None)
    with RegistryClient(proxy.host) as client:
        with pytest.raises(TransportError) as caught:  # its traceback keeps every frame alive
            if how == "streamed":
                client.upload_unhashed(f"{repo_name}/src", count * MiB, source())
            else:
                client.upload_blob(f"{repo_name}/src", digest_bytes(piece * count), count * MiB, source())
        assert closed == [True], caught.value
