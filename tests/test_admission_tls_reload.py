"""The admission webhook serves a renewed TLS certificate without a restart: `ocimodel
admission serve` run as a process, the certificate and key files replaced under it (as
cert-manager and the kubelet do), and new TLS handshakes checked for the certificate they
get. No registry: the reviews sent are DELETEs, answered without judging a model."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import ocimodel
from tests.support.pki import make_server_pairs
from tests.test_admission import Webhook, _review

pytestmark = pytest.mark.slow

INTERVAL = "0.2"  # --tls-reload-interval: the tests wait for a handful of checks at most
# The head of a request on a connection opened before the swap must not be cut by the
# head deadline (the --deadline) while the test waits for the new certificate.
DEADLINE = "25"


def _setup(tmp: Path, count: int, expired: int = 0) -> tuple[Path, Path, Path, list[tuple[Path, Path]]]:
    ca, pairs = make_server_pairs(tmp / "pki", count, expired=expired)
    ocimodel.generate_key_pair(tmp / "ci.key", tmp / "ci.pub")
    policy = tmp / "policy.yaml"
    policy.write_text(f"signers:\n  ci: {{key: {tmp / 'ci.pub'}}}\n")
    return tmp, policy, ca, pairs


@pytest.fixture
def setup(tmp_path):
    return _setup(tmp_path, 2)


def _start(tmp: Path, policy: Path, ca: Path, cert: Path, key: Path) -> Webhook:
    return Webhook(tmp, policy, "--deadline", DEADLINE, "--tls-reload-interval", INTERVAL, tls=(ca, cert, key))


def _start_serving(tmp: Path, policy: Path, ca: Path, pair: tuple[Path, Path]) -> tuple[Webhook, Path, Path]:
    """A server started on copies of ``pair`` at tls.crt and tls.key, which the test replaces."""
    cert, key = tmp / "tls.crt", tmp / "tls.key"
    _replace(cert, pair[0].read_bytes())
    _replace(key, pair[1].read_bytes())
    return _start(tmp, policy, ca, cert, key), cert, key


def _der(cert: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.read_text())


def _port(server: Webhook) -> int:
    return int(server.url.rsplit(":", 1)[1])


def _handshake(server: Webhook) -> ssl.SSLSocket:
    """A new connection, verified against the test CA (as the API server checks caBundle)."""
    context = ssl.create_default_context(cafile=str(server.ca))
    return context.wrap_socket(socket.create_connection(("127.0.0.1", _port(server)), timeout=10),
                               server_hostname="127.0.0.1")


def _served(server: Webhook) -> bytes:
    with _handshake(server) as tls:
        return tls.getpeercert(binary_form=True)


def _wait_served(server: Webhook, cert: Path, seconds: float = 20) -> None:
    want = _der(cert)
    end = time.monotonic() + seconds
    while _served(server) != want:
        assert time.monotonic() < end, f"{cert.name} not served within {seconds} s; log: {''.join(server.lines)[-2000:]}"
        time.sleep(0.1)


def _replace(path: Path, data: bytes) -> None:
    """Written aside, then renamed over: what an atomic writer does."""
    aside = path.with_name(path.name + ".new")
    aside.write_bytes(data)
    os.replace(aside, path)


def _reloads(server: Webhook) -> dict[str, float]:
    text = server.client.get(server.url + "/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    out = {s.labels["result"]: s.value for s in families["ocimodel_admission_tls_reloads"].samples
           if s.name.endswith("_total")}
    out["expiry"] = families["ocimodel_admission_tls_certificate_expiry_timestamp_seconds"].samples[0].value
    return out


def _not_after(cert: Path) -> float:
    from cryptography import x509

    return x509.load_pem_x509_certificate(cert.read_bytes()).not_valid_after_utc.timestamp()


def _delete_review(server: Webhook) -> None:
    document = _review("pod", MODEL="r.invalid/m:1", MODEL_AS_IMAGE="r.invalid/m:1", IMAGE="r.invalid/i:1",
                       ANNOTATED="r.invalid/m:1")
    document["request"]["operation"] = "DELETE"
    answer = server.review(document)
    assert answer["response"]["allowed"] is True and answer["response"]["uid"] == document["request"]["uid"]


def test_a_renewed_certificate_is_served_and_a_connection_in_progress_completes(setup):
    tmp, policy, ca, ((cert_a, key_a), (cert_b, key_b)) = setup
    server, cert, key = _start_serving(tmp, policy, ca, (cert_a, key_a))
    try:
        assert _served(server) == _der(cert_a)
        assert _reloads(server) == {"ok": 0, "failed": 0, "expiry": _not_after(cert_a)}
        # A connection made with A, its request begun: the renewal must not cut it.
        with _handshake(server) as early:
            early.sendall(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n")
            _replace(key, key_b.read_bytes())  # two files, two renames: a check in between refuses B's key with A
            _replace(cert, cert_b.read_bytes())
            _wait_served(server, cert_b)
            early.sendall(b"connection: close\r\n\r\n")
            answer = b""
            while chunk := early.recv(65536):
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"ok\n"), answer
            assert early.getpeercert(binary_form=True) == _der(cert_a)
        _delete_review(server)  # reviews are answered over the new certificate
        metrics = _reloads(server)
        assert metrics["ok"] == 1 and metrics["expiry"] == _not_after(cert_b)
        reloaded = server.wait_for(lambda e: e.get("event") == "tls-reloaded", 5)
        assert "CN=server-2" in reloaded["subject"] and reloaded["notAfter"]
        assert "PRIVATE KEY" not in "".join(server.lines)
    finally:
        assert server.stop() == 0


def test_a_pair_that_does_not_load_is_refused_and_the_last_good_one_kept(setup):
    tmp, policy, ca, ((cert_a, key_a), (cert_b, key_b)) = setup
    server, cert, key = _start_serving(tmp, policy, ca, (cert_a, key_a))
    try:
        failures = lambda: [e for e in server.entries() if e.get("event") == "tls-reload-failed"]  # noqa: E731
        # The new certificate with the old key: it cannot be served.
        _replace(cert, cert_b.read_bytes())
        first = server.wait_for(lambda e: e.get("event") == "tls-reload-failed", 20)
        assert first["level"] == "warning" and "mismatch" in first["reason"].lower(), first
        assert _served(server) == _der(cert_a)
        assert _reloads(server)["failed"] == 1
        # Left as it is: refused once, not at every check.
        time.sleep(1.0)
        assert len(failures()) == 1 and _reloads(server)["failed"] == 1
        # A certificate cut short (a write seen half done), with the right key.
        # (In this order: B's key beside B's whole certificate would be a good pair.)
        _replace(cert, cert_b.read_bytes()[:200])
        _replace(key, key_b.read_bytes())
        end = time.monotonic() + 20
        while not [e for e in failures() if "pem" in e["reason"].lower()]:
            assert time.monotonic() < end, "".join(server.lines)[-2000:]
            time.sleep(0.1)
        assert _served(server) == _der(cert_a)
        _delete_review(server)
        metrics = _reloads(server)
        assert metrics["failed"] >= 2 and metrics["ok"] == 0 and metrics["expiry"] == _not_after(cert_a)
        # A fifo in the certificate's place: reading it would wait for a writer forever,
        # and the checks run in the event loop; it is refused, and answers keep coming.
        aside = cert.with_name("fifo")
        os.mkfifo(aside)
        os.replace(aside, cert)
        server.wait_for(lambda e: e.get("event") == "tls-reload-failed" and "not a regular file" in e["reason"], 20)
        _delete_review(server)
        assert _served(server) == _der(cert_a)
        # Fixed: the next check serves it.
        _replace(cert, cert_b.read_bytes())
        _wait_served(server, cert_b)
        assert _reloads(server)["ok"] == 1
        assert "PRIVATE KEY" not in "".join(server.lines)
    finally:
        assert server.stop() == 0


def test_a_kubelet_secret_swap_is_served(setup):
    """The kubelet's layout: tls.crt -> ..data/tls.crt, ..data -> ..<timestamp>/; an update
    writes a new timestamped directory, renames a new ..data symlink over the old one (the
    swap, atomic: both files change at once), then removes the old directory."""
    tmp, policy, ca, ((cert_a, key_a), (cert_b, key_b)) = setup
    volume = tmp / "volume"
    volume.mkdir()

    def write_version(name: str, cert_src: Path, key_src: Path) -> None:
        version = volume / name
        version.mkdir()
        (version / "tls.crt").write_bytes(cert_src.read_bytes())
        (version / "tls.key").write_bytes(key_src.read_bytes())
        os.symlink(name, volume / "..data_tmp")
        os.replace(volume / "..data_tmp", volume / "..data")

    write_version("..2026_01_01_00_00_00.1", cert_a, key_a)
    for name in ("tls.crt", "tls.key"):
        os.symlink(f"..data/{name}", volume / name)
    server = _start(tmp, policy, ca, volume / "tls.crt", volume / "tls.key")
    try:
        assert _served(server) == _der(cert_a)
        write_version("..2026_02_01_00_00_00.2", cert_b, key_b)
        for name in ("tls.crt", "tls.key"):
            (volume / "..2026_01_01_00_00_00.1" / name).unlink()
        (volume / "..2026_01_01_00_00_00.1").rmdir()
        _wait_served(server, cert_b)
        _delete_review(server)
        metrics = _reloads(server)
        assert metrics == {"ok": 1, "failed": 0, "expiry": _not_after(cert_b)}
    finally:
        assert server.stop() == 0


def test_an_expired_certificate_is_refused_and_the_last_good_one_kept(tmp_path):
    # A rolled-back or stale file: serving it would make every client refuse the webhook.
    tmp, policy, ca, [(cert_a, key_a), (cert_b, key_b), (cert_old, key_old)] = _setup(tmp_path, 3, expired=1)
    server, live_cert, live_key = _start_serving(tmp, policy, ca, (cert_a, key_a))
    try:
        _replace(live_key, key_old.read_bytes())
        _replace(live_cert, cert_old.read_bytes())
        # (a check between the two renames may refuse the mixed pair first: that is a refusal too)
        server.wait_for(lambda e: e.get("event") == "tls-reload-failed" and "expired" in e.get("reason", ""), 20)
        assert _served(server) == _der(cert_a)
        assert _reloads(server)["failed"] >= 1 and _reloads(server)["ok"] == 0
        _replace(live_key, key_b.read_bytes())
        _replace(live_cert, cert_b.read_bytes())
        _wait_served(server, cert_b)
    finally:
        assert server.stop() == 0


def test_a_server_name_python_cannot_decode_fails_that_handshake_alone_and_logs_one_json_line(setup):
    # After a reload the SNI callback is set; Python refuses a ClientHello whose server
    # name is not valid IDNA before calling it, and reports the error as "unraisable".
    tmp, policy, ca, ((cert_a, key_a), (cert_b, key_b)) = setup
    server, cert, key = _start_serving(tmp, policy, ca, (cert_a, key_a))
    try:
        _replace(key, key_b.read_bytes())
        _replace(cert, cert_b.read_bytes())
        _wait_served(server, cert_b)
        hello = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{_port(server)}", "-servername", "\u00e4\u00e4.example"],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=20, check=False,
        )
        assert hello.returncode != 0  # that handshake was refused
        entry = server.wait_for(lambda e: e.get("event") == "unraisable", 10)
        assert entry["reason"].startswith("UnicodeDecodeError"), entry
        assert _served(server) == _der(cert_b)  # the next client is served
        for line in server.lines:
            json.loads(line)  # every line of the log is one JSON object: no traceback
    finally:
        assert server.stop() == 0


def test_a_fifo_given_as_the_certificate_refuses_to_start(setup):
    tmp, policy, _ca, ((_cert, key), _) = setup
    fifo = tmp / "tls.crt"
    os.mkfifo(fifo)
    result = subprocess.run(
        [sys.executable, "-m", "ocimodel", "admission", "serve", "--policy", str(policy), "--tls-cert", str(fifo),
         "--tls-key", str(key), "--port", "0"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "not a regular file" in result.stderr and "Traceback" not in result.stderr
