"""Large blobs pulled over several connections with Range requests (transport/ranged.py,
docs/ranged-pulls.md), through a fault-injecting proxy in front of the real registry.

What a user relies on: the pulled file is the blob, byte for byte, whatever the network
did (cut connections resume their own part); bytes that do not match the digest (in one
part, or in a resumed part) refuse the whole blob and leave nothing in the destination; a
registry that ignores Range still works (one stream); a redirect to storage on another
host gets the Range header and never our credentials.

The sizes are scaled down (a 1 MiB threshold, 256 KiB parts) so a ~3 MiB blob is cut in
13 parts: the same code paths as a 1 GiB pull, in well under a second each."""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import ocimodel
from ocimodel.errors import DigestMismatch, TransportError
from ocimodel.transport import body, ranged
from tests.support.faultproxy import FaultProxy
from tests.support.htpasswd import write_htpasswd
from tests.support.modeltrees import one_weights_model
from tests.support.registry import LocalRegistry

KiB = 1 << 10
PART = 256 * KiB
SIZE = 12 * PART + 12_345  # 13 parts, the last one short
POLICY = ocimodel.RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05)
OPTIONS = ocimodel.ConnectionOptions(retry=POLICY)
STAGING = ".ocimodel-pull-"


@pytest.fixture(autouse=True)
def _small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ranged, "MIN_BYTES", 1 << 20)
    monkeypatch.setattr(ranged, "PART_BYTES", PART)
    monkeypatch.setattr(body, "RAW_MIN_BYTES", 64 * KiB)  # parts are read from the socket, as 16 MiB ones are
    monkeypatch.setenv("OCIMODEL_PULL_CONNECTIONS", "3")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return one_weights_model(tmp_path_factory.mktemp("ranged") / "model", SIZE, 20, "ranged")


@pytest.fixture(scope="module")
def pushed(registry, model: Path) -> str:
    ref = f"{registry.host}/test/ranged-{secrets.token_hex(3)}:v1"
    ocimodel.push(model, ref, options=OPTIONS)
    return ref


@pytest.fixture
def proxy(registry):
    with FaultProxy(registry.host) as p:
        yield p


def _weights_hex(model: Path) -> str:
    return hashlib.sha256((model / "weights.bin").read_bytes()).hexdigest()


def _part_gets(proxy: FaultProxy, hexdigest: str) -> list:
    return [s for s in proxy.seen("GET", hexdigest) if "range" in s.headers]


def _ranges(seen: list) -> list[tuple[int, int]]:
    return sorted(tuple(map(int, re.fullmatch(r"bytes=(\d+)-(\d+)", s.headers["range"]).groups())) for s in seen)


def _no_staging(*places: Path) -> None:
    for place in places:
        if place.is_dir():
            assert not [p.name for p in place.iterdir() if p.name.startswith(STAGING)]


def test_large_blob_is_fetched_in_parts(proxy, pushed, model, tmp_path):
    out = tmp_path / "out"
    result = ocimodel.pull(proxy.via(pushed), out, options=OPTIONS)

    assert (out / "weights.bin").read_bytes() == (model / "weights.bin").read_bytes()
    parts = _part_gets(proxy, _weights_hex(model))
    # Every part asked for once, exactly its bytes, and every answer a 206.
    assert _ranges(parts) == [(s, min(s + PART, SIZE) - 1) for s in range(0, SIZE, PART)]
    assert {s.status for s in parts} == {206}
    assert proxy.count("GET", _weights_hex(model)) == len(parts)  # no whole-blob GET besides
    assert result.retries == 0
    assert result.bytes_downloaded == SIZE + (model / "config.json").stat().st_size


def test_cut_connections_resume_their_own_part(proxy, pushed, model, tmp_path):
    hexdigest = _weights_hex(model)
    # The first three parts are cut 100,000 bytes in (their first tries only); each
    # resumes from there.
    cut = proxy.cut("GET", hexdigest, after=100_000, times=3, range=rf"^bytes=(0|{PART}|{2 * PART})-")
    out = tmp_path / "out"
    result = ocimodel.pull(proxy.via(pushed), out, options=OPTIONS)

    assert (out / "weights.bin").read_bytes() == (model / "weights.bin").read_bytes()
    assert cut.fired == 3
    resumed = [r for r in _ranges(_part_gets(proxy, hexdigest)) if r[0] % PART]
    assert resumed == [(k * PART + 100_000, (k + 1) * PART - 1) for k in range(3)]
    assert result.retries == 3
    _no_staging(tmp_path, out)


def test_wrong_bytes_in_one_part_refuse_the_whole_blob(proxy, pushed, model, tmp_path):
    """One flipped byte in the fifth part: DigestMismatch, and nothing of the model lands,
    neither in a new directory nor over an older file in an existing one."""
    hexdigest = _weights_hex(model)
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "weights.bin").write_bytes(b"the previous version\n")
    for destination in (tmp_path / "new", existing):
        proxy.clear()
        flipped = proxy.corrupt("GET", hexdigest, after=5_000, range=rf"^bytes={4 * PART}-")
        with pytest.raises(DigestMismatch):
            ocimodel.pull(proxy.via(pushed), destination, options=OPTIONS)
        assert flipped.fired == 1
        # Not started over: a digest mismatch is not a fault that may pass.
        assert len([r for r in _ranges(_part_gets(proxy, hexdigest)) if r[0] == 4 * PART]) == 1
    assert not (tmp_path / "new").exists()
    assert [p.name for p in existing.iterdir()] == ["weights.bin"]
    assert (existing / "weights.bin").read_bytes() == b"the previous version\n"
    _no_staging(tmp_path, existing)


def test_resumed_part_is_verified_too(proxy, pushed, model, tmp_path):
    """A part cut 100,000 bytes in, and the resumed request for the rest of it answered
    with one wrong byte: the whole blob is refused."""
    hexdigest = _weights_hex(model)
    cut = proxy.cut("GET", hexdigest, after=100_000, range=rf"^bytes={2 * PART}-")
    flipped = proxy.corrupt("GET", hexdigest, after=10, range=rf"^bytes={2 * PART + 100_000}-")
    out = tmp_path / "out"
    with pytest.raises(DigestMismatch):
        ocimodel.pull(proxy.via(pushed), out, options=OPTIONS)
    assert cut.fired == 1 and flipped.fired == 1
    assert not out.exists()
    _no_staging(tmp_path)


def test_a_part_that_keeps_failing_fails_the_pull_cleanly(proxy, pushed, model, tmp_path):
    """Every request for one part is cut: a typed error after exactly the policy's tries
    for that part (not tries x blob restarts), and nothing left behind."""
    hexdigest = _weights_hex(model)
    proxy.cut("GET", hexdigest, after=1_000, times=None, range=rf"^bytes=\d+-{2 * PART - 1}$")  # part 1, resumed or not
    out = tmp_path / "out"
    with pytest.raises(TransportError):
        ocimodel.pull(proxy.via(pushed), out, options=OPTIONS)
    tries = [r for r in _ranges(_part_gets(proxy, hexdigest)) if PART <= r[0] < 2 * PART]
    assert len(tries) == POLICY.attempts
    assert not out.exists()
    _no_staging(tmp_path)


def test_a_registry_that_ignores_range_gets_one_stream(proxy, pushed, model, tmp_path):
    hexdigest = _weights_hex(model)
    proxy.ignore_range("GET", hexdigest)
    out = tmp_path / "out"
    result = ocimodel.pull(proxy.via(pushed), out, options=OPTIONS)

    assert (out / "weights.bin").read_bytes() == (model / "weights.bin").read_bytes()
    gets = proxy.seen("GET", hexdigest)
    # The parts' first answers were whole blobs (200), closed unread; then one plain GET
    # streamed it.
    assert all(s.status == 200 for s in gets)
    assert {s.fault for s in gets if "range" in s.headers} == {"ignore_range"}
    plain = [s for s in gets if "range" not in s.headers]
    assert len(plain) == 1 and plain[0].down == SIZE
    assert result.retries == 0
    _no_staging(tmp_path, out)


# -- a registry that redirects blob GETs to storage on another host ---------------------


class _Storage:
    """Plays the storage service a registry redirects blob GETs to (S3 behind a presigned
    URL): serves the registry's own blob files by digest, honours Range, and records the
    Range and Authorization headers it was sent."""

    def __init__(self, registry: LocalRegistry) -> None:
        self.seen: list[tuple[str | None, str | None]] = []
        storage = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                storage.seen.append((self.headers.get("Range"), self.headers.get("Authorization")))
                data = registry.blob_path(self.path.rsplit("/", 1)[1]).read_bytes()
                match = re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range") or "")
                if match:
                    start, end = int(match[1]), min(int(match[2]), len(data) - 1)
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                    data = data[start:end + 1]
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        # "localhost", not the registry's "127.0.0.1": another origin, as storage is.
        self.base = f"http://localhost:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.registry
def test_parts_follow_a_redirect_without_our_credentials(model, tmp_path):
    htpasswd = write_htpasswd(tmp_path / "htpasswd", "alice", "wonderland-secret")
    options = ocimodel.ConnectionOptions(retry=POLICY, credentials=ocimodel.Credentials("alice", "wonderland-secret"))
    with LocalRegistry(htpasswd=htpasswd) as registry:
        ref = f"{registry.host}/test/redirected:v1"
        ocimodel.push(model, ref, options=options)
        hexdigest = _weights_hex(model)
        storage = _Storage(registry)
        try:
            with FaultProxy(registry.host) as proxy:
                proxy.reply(307, "GET", f"/blobs/sha256:{hexdigest}", times=None,
                            location=f"{storage.base}/blobs/sha256:{hexdigest}")
                out = tmp_path / "out"
                ocimodel.pull(proxy.via(ref), out, options=options)
                # The registry itself was asked with our credentials (the redirecting answers).
                assert all("authorization" in s.headers for s in proxy.seen("GET", hexdigest))
        finally:
            storage.close()
    assert (out / "weights.bin").read_bytes() == (model / "weights.bin").read_bytes()
    ranges = Counter(bool(r) for r, _ in storage.seen)
    assert ranges == Counter({True: 13})  # every part went to storage with its Range
    assert {auth for _, auth in storage.seen} == {None}  # and never with our Authorization


def test_default_is_one_stream_from_this_machine_and_parts_elsewhere(proxy, pushed, model, tmp_path, monkeypatch):
    """Without OCIMODEL_PULL_CONNECTIONS: a registry on loopback (whose CPU competes with
    ours) gets one stream per blob, any other host several connections."""
    monkeypatch.delenv("OCIMODEL_PULL_CONNECTIONS")
    out = tmp_path / "out"
    ocimodel.pull(proxy.via(pushed), out, options=OPTIONS)
    assert (out / "weights.bin").read_bytes() == (model / "weights.bin").read_bytes()
    assert _part_gets(proxy, _weights_hex(model)) == []
    assert ranged.wanted("registry.example", SIZE) and ranged.connections("registry.example") == 4
    assert not ranged.wanted("localhost:5000", SIZE) and not ranged.wanted("[::1]:5000", SIZE)
    monkeypatch.setenv("OCIMODEL_PULL_CONNECTIONS", "1")
    assert not ranged.wanted("registry.example", SIZE)
