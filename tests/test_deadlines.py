"""Deadlines (issue 12, defect 4): a registry that accepts connections and never answers,
or answers a byte at a time, costs a bounded, configurable time and says so.

- a small request (tag list, manifest, token...) ends within OCIMODEL_REQUEST_TIMEOUT in
  all, its retries included, with a typed error naming the registry, the request, the wait
  and the setting;
- OCIMODEL_READ_TIMEOUT bounds each wait for a byte, and its tries fit in the total;
- the CLI says it is waiting after 5 s instead of sitting silent;
- a blob body that keeps moving is not cut by the total.

The servers here are plain sockets on loopback (stdlib only): they accept, read the
request, and then say nothing, or trickle. Time bounds are loose (5x the deadline)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import ocimodel
from ocimodel.errors import RequestTimeout
from tests.support.badregistry import BadRegistry, Reply
from tests.support.faultproxy import FaultProxy
from tests.support.files import tree_digest

# Deadlines and grace periods waited out, with (loose) bounds on the time taken: `make test`
# runs these alone (serial, tests/conftest.py).
pytestmark = pytest.mark.serial

MiB = 1 << 20


class QuietServer:
    """Accepts TCP connections on 127.0.0.1 and reads each request head; then sends
    nothing (``head=None``) or ``head`` and ``body`` one byte every ``interval`` seconds
    (``trickle="head"`` or ``"body"``). Every connection is closed after ``hold`` seconds
    at the latest, so code without a deadline fails its test instead of hanging it."""

    def __init__(self, *, head: bytes | None = None, body: bytes = b"", trickle: str = "body",
                 interval: float = 0.1, hold: float = 30.0) -> None:
        self.head = head
        self.body = body
        self.trickle = trickle
        self.interval = interval
        self.hold = hold
        self.connections = 0
        self.requests: list[bytes] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.1)
        self.host = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> QuietServer:
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            with self._lock:
                self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        until = time.monotonic() + self.hold
        conn.settimeout(0.1)
        try:
            data = b""
            while b"\r\n\r\n" not in data and time.monotonic() < until and not self._stop.is_set():
                try:
                    piece = conn.recv(65536)
                except TimeoutError:
                    continue
                if not piece:
                    return
                data += piece
            with self._lock:
                self.requests.append(data.split(b"\r\n", 1)[0])
            out = b"" if self.head is None else self.head + self.body
            slow_from = 0 if self.trickle == "head" else len(self.head or b"")
            if out[:slow_from]:
                conn.sendall(out[:slow_from])
            for i in range(slow_from, len(out)):
                if self._stop.wait(self.interval) or time.monotonic() > until:
                    return
                conn.sendall(out[i:i + 1])
            while not self._stop.wait(0.1) and time.monotonic() < until:
                pass
        except OSError:
            pass
        finally:
            conn.close()


REGISTRY_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    b"Docker-Distribution-API-Version: registry/2.0\r\nContent-Length: 4000\r\n\r\n"
)
TAGS_BODY = b'{"name":"team/m","tags":["v1"]}'.ljust(4000)


@pytest.fixture
def patient(monkeypatch: pytest.MonkeyPatch) -> None:
    """Five tries and a short total: the tries must fit in the total, not multiply it."""
    monkeypatch.setenv("OCIMODEL_RETRIES", "5")
    monkeypatch.setenv("OCIMODEL_RETRY_DELAY", "0.01")
    monkeypatch.setenv("OCIMODEL_REQUEST_TIMEOUT", "2")
    monkeypatch.delenv("OCIMODEL_READ_TIMEOUT", raising=False)


def _timed(action) -> tuple[BaseException, float]:
    started = time.monotonic()
    with pytest.raises(RequestTimeout) as caught:
        action()
    return caught.value, time.monotonic() - started


@pytest.mark.parametrize("op", ["ls", "pull", "inspect"])
@pytest.mark.slow
def test_a_silent_registry_fails_within_the_request_timeout(op, patient, tmp_path: Path) -> None:
    with QuietServer() as server:
        ref = f"{server.host}/team/m"
        action = {
            "ls": lambda: ocimodel.list_tags(ref),
            "pull": lambda: ocimodel.pull(f"{ref}:v1", tmp_path / "out"),
            "inspect": lambda: ocimodel.inspect(f"{ref}:v1"),
        }[op]
        error, took = _timed(action)
    assert took < 10, took  # 2 s asked; was 5 tries of 300 s
    assert error.message.startswith(f"{server.host} did not answer within 2 s ("), error.message
    assert "team/m" in error.message
    assert "OCIMODEL_REQUEST_TIMEOUT=SECONDS (now 2)" in error.hint
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_short_read_timeout_is_retried_inside_the_total(patient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each try waits OCIMODEL_READ_TIMEOUT for a byte; the tries stop at the total, and the
    message names the setting that ended them."""
    monkeypatch.setenv("OCIMODEL_READ_TIMEOUT", "0.3")
    monkeypatch.setenv("OCIMODEL_RETRIES", "3")
    monkeypatch.setenv("OCIMODEL_REQUEST_TIMEOUT", "20")
    with QuietServer() as server:
        error, took = _timed(lambda: ocimodel.list_tags(f"{server.host}/team/m"))
    assert server.requests.count(b"GET /v2/team/m/tags/list HTTP/1.1") == 3
    assert took < 10, took
    assert error.message == f"{server.host} sent nothing for 0.3 s (tags of team/m, 3 tries)"
    assert "OCIMODEL_READ_TIMEOUT=SECONDS (now 0.3)" in error.hint


@pytest.mark.parametrize("trickle", ["head", "body"])
@pytest.mark.slow
def test_a_trickling_registry_hits_the_total(trickle, patient) -> None:
    """One byte every 0.1 s never trips a read timeout; the total still ends the request."""
    with QuietServer(head=REGISTRY_HEAD, body=TAGS_BODY, trickle=trickle, interval=0.1) as server:
        error, took = _timed(lambda: ocimodel.list_tags(f"{server.host}/team/m"))
    assert took < 10, took
    assert error.message.startswith(f"{server.host} did not answer within 2 s"), error.message


@pytest.mark.slow
def test_a_silent_token_service_counts_against_the_request(patient) -> None:
    """The token fetch in the middle of a request is part of it: a token service that
    never answers costs the request's deadline, not 300 s."""
    with QuietServer() as tokens, BadRegistry() as registry:
        challenge = f'Bearer realm="http://{tokens.host}/token",service="test"'
        registry.set("GET", "/v2/team/m/tags/list", Reply(status=401, body=b"{}", headers={
            "WWW-Authenticate": challenge, "Docker-Distribution-API-Version": "registry/2.0",
        }))
        error, took = _timed(lambda: ocimodel.list_tags(f"{registry.host}/team/m"))
    assert took < 10, took
    assert tokens.connections >= 1
    assert error.message.startswith(f"the token service at {tokens.host} did not answer within 2 s"), error.message


@pytest.mark.slow
def test_the_cli_says_it_is_waiting_and_gives_up(tmp_path: Path) -> None:
    """After 5 s without an answer one line says what is going on; at the deadline the
    command fails with the error and the setting to change."""
    env = dict(os.environ, OCIMODEL_REQUEST_TIMEOUT="7", OCIMODEL_RETRIES="5", OCIMODEL_RETRY_DELAY="0.01")
    env.pop("OCIMODEL_READ_TIMEOUT", None)
    with QuietServer(hold=60) as server:
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "ocimodel.cli.app", "ls", f"{server.host}/team/m"],
            env=env, capture_output=True, text=True, timeout=45, check=False,
        )
        took = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0] == f"waiting for {server.host} (no answer for 5 s; gives up after 7 s)...", lines
    assert lines[1] == f"error: {server.host} did not answer within 7 s (tags of team/m)", lines
    assert lines[2].startswith("hint: ") and "OCIMODEL_REQUEST_TIMEOUT" in lines[2]
    assert len(lines) == 3, lines
    assert done.stdout == ""
    assert took < 35, took


def test_a_quick_answer_prints_no_wait_line(registry, model_dir: Path, repo_name: str) -> None:
    ocimodel.push(model_dir, f"{registry.host}/{repo_name}:v1")
    done = subprocess.run(
        [sys.executable, "-m", "ocimodel.cli.app", "ls", f"{registry.host}/{repo_name}"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "waiting" not in done.stderr


def test_a_stalled_manifest_answer_through_a_proxy_is_bounded(registry, model_dir, repo_name, patient, tmp_path):
    """The real registry behind a proxy that holds the manifest's answer back."""
    ocimodel.push(model_dir, f"{registry.host}/{repo_name}:v1")
    with FaultProxy(registry.host) as proxy:
        stall = proxy.stall(30, "GET", r"/manifests/", after=None, times=None)
        error, took = _timed(lambda: ocimodel.pull(f"{proxy.host}/{repo_name}:v1", tmp_path / "out"))
        stall.release()
    assert took < 10, took
    assert stall.fired >= 1
    assert f"manifest {repo_name}:v1" in error.message
    assert not (tmp_path / "out").exists()


def test_a_blob_body_that_keeps_moving_has_no_total(registry, repo_name, monkeypatch, tmp_path):
    """A body that pauses (but less than the read timeout) and goes on takes longer than
    the total, and must not be cut: only the no-progress timeout applies to blob bodies."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(os.urandom(4 * MiB))
    (model / "config.json").write_text("{}\n")
    ocimodel.push(model, f"{registry.host}/{repo_name}:v1")
    monkeypatch.setenv("OCIMODEL_REQUEST_TIMEOUT", "1")
    monkeypatch.setenv("OCIMODEL_READ_TIMEOUT", "10")
    with FaultProxy(registry.host) as proxy:
        hex_digest = tree_digest(model)["weights.bin"][0]
        pause = proxy.stall(2.5, "GET", hex_digest, after=2 * MiB)
        started = time.monotonic()
        result = ocimodel.pull(f"{proxy.host}/{repo_name}:v1", tmp_path / "out")
        took = time.monotonic() - started
    assert pause.fired == 1
    assert took > 2.4  # longer than the total, in one piece
    assert result.retries == 0
    assert tree_digest(tmp_path / "out") == tree_digest(model)


@pytest.mark.slow
def test_a_bad_request_timeout_is_a_usage_error() -> None:
    env = dict(os.environ, OCIMODEL_REQUEST_TIMEOUT="soon")
    done = subprocess.run(
        [sys.executable, "-m", "ocimodel", "ls", "127.0.0.1:9/team/m"], env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "OCIMODEL_REQUEST_TIMEOUT='soon' is not valid" in done.stderr


@pytest.mark.slow
def test_parallel_waits_make_one_line() -> None:
    """Four transfers waiting on one stalled registry: one line, not four; an answer in
    time: none."""
    from ocimodel.transport.deadline import Deadline, WaitNotices

    lines: list[str] = []
    notices = WaitNotices(lines.append, "reg.example", after=0.2, quiet=30)
    with notices.watch(Deadline(5), 300):
        pass  # answered at once
    time.sleep(0.4)
    assert lines == []
    done = threading.Event()

    def wait() -> None:
        with notices.watch(Deadline(None), 300):
            done.wait(5)

    threads = [threading.Thread(target=wait) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.8)
    done.set()
    for thread in threads:
        thread.join()
    assert lines == ["waiting for reg.example (no answer for 0 s; gives up after 300 s without a byte)..."]
