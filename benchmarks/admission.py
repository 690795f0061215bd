#!/usr/bin/env python3
"""Benchmark of the admission webhook: latency (p50, p99) and throughput of /validate for
cached and uncached verdicts, on loopback, bounded in count and time.

    PYTHONPATH=src .venv/bin/python benchmarks/admission.py [--rate 200] [--seconds 10] [--uncached 60] [--out FILE]

Starts Debian's docker-registry on a free loopback port (tests/support/registry.py),
pushes a small model, signs it and attests a scan of it with a key, then starts
`ocimodel admission serve` twice over TLS (a CA made here): one with the verdict cache on
(--cache-ttl 300), one with it off (--cache-ttl 0). Each request is the Pod of
tests/data/admission/pod.json, its image volume, init container and annotation naming the
model (the container image is an ordinary image, looked up once per digest).

Scenarios (one markdown row each):

- floor: GET /healthz at the same pacing: what the TLS and HTTP stack, the client and the
  machine's load cost before any review is read.
- cached, pinned: references by digest (what the validating webhook sees after /mutate
  pinned them): no registry request at all. Sent open-loop at --rate requests/s for
  --seconds (at most rate x seconds requests) from 8 client threads.
- cached, tags: references by tag; the verdict is cached but each tag is resolved again
  (one HEAD per reference), as a validating-only set-up does. Same pacing.
- uncached: references by digest, verdict cache off: every request verifies the model
  (referrers, bundles, signatures, scan and licenses) -- --uncached requests, 4 at a time.

Latency is measured by the client, from send to the whole answer (TLS connections are
kept alive, as the API server does); "server" columns are the webhook's own time per
answer, from its log (body read to answer written, TLS and HTTP parsing excluded). Goals (issue 19): cached p99 < 10 ms at 200 requests/s,
uncached p99 < 1 s. The machine's other load shows in the figures: say so with them."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "src")]
os.environ.setdefault("OCIMODEL_REFERRERS_SETTLE", "0")
os.environ.setdefault("OCIMODEL_TAG_SETTLE", "0")

import httpx  # noqa: E402

import ocimodel  # noqa: E402
from tests.support.pki import make_pki  # noqa: E402
from tests.support.registry import LocalRegistry  # noqa: E402

POD = REPO_ROOT / "tests" / "data" / "admission" / "pod.json"
MAX_REQUESTS = 5000  # whatever the options say


def _review(model: str, image: str, uid: str) -> bytes:
    text = POD.read_text()
    for name, value in {"MODEL": model, "MODEL_AS_IMAGE": model, "IMAGE": image, "ANNOTATED": model}.items():
        text = text.replace("{{" + name + "}}", value)
    document = json.loads(text)
    document["request"]["uid"] = uid
    return json.dumps(document).encode()


def _push_image(registry: str) -> str:
    """An ordinary container image: the container of the Pod."""
    import hashlib

    base = f"http://{registry}/v2/bench/server"
    digests = []
    with httpx.Client() as http:
        for data in (b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}', b"layer"):
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            location = http.post(f"{base}/blobs/uploads/").headers["location"]
            location = location if location.startswith("http") else f"http://{registry}{location}"
            http.put(f"{location}{'&' if '?' in location else '?'}digest={digest}", content=data).raise_for_status()
            digests.append((digest, len(data)))
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digests[0][0],
                       "size": digests[0][1]},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digests[1][0],
                        "size": digests[1][1]}],
        }).encode()
        answer = http.put(f"{base}/manifests/1.0", content=manifest,
                          headers={"content-type": "application/vnd.oci.image.manifest.v1+json"})
        answer.raise_for_status()
        return f"{registry}/bench/server@{answer.headers['docker-content-digest']}"


class Server:
    def __init__(self, tmp: Path, policy: Path, *extra: str) -> None:
        pki = make_pki(tmp)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ocimodel", "admission", "serve", "--policy", str(policy), "--tls-cert",
             str(pki.server[0]), "--tls-key", str(pki.server[1]), "--host", "127.0.0.1", "--port", "0", *extra],
            stderr=subprocess.PIPE, text=True,
        )
        assert self.process.stderr is not None
        port = None
        end = time.monotonic() + 60
        while port is None and time.monotonic() < end:
            line = self.process.stderr.readline()
            if not line:
                raise SystemExit("the server did not start")
            if '"listening"' in line:
                port = json.loads(line)["port"]
        # The log (one line per request) gives the server's own time per answer; read it
        # all, so the pipe never fills.
        self.server_ms: list[float] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.url = f"https://127.0.0.1:{port}/validate"
        self.context = ssl.create_default_context(cafile=str(pki.ca))

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            if '"event":"admission"' in line:
                self.server_ms.append(json.loads(line)["ms"])

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _send(clients: list[httpx.Client], index: int, url: str, body: bytes | None) -> float:
    started = time.perf_counter()
    client = clients[index % len(clients)]
    if body is None:  # the floor: the same connection, TLS and HTTP stack, no review
        answer = client.get(url.replace("/validate", "/healthz"))
        seconds = time.perf_counter() - started
        answer.raise_for_status()
        return seconds
    answer = client.post(url, content=body, headers={"content-type": "application/json"})
    seconds = time.perf_counter() - started
    answer.raise_for_status()
    if answer.json()["response"]["allowed"] is not True:
        raise SystemExit(f"denied: {answer.json()['response']}")
    return seconds


def _run(server: Server, bodies: list[bytes | None], rate: float | None, workers: int) -> tuple[list[float], float]:
    """Latencies and the wall time. ``rate``: open loop, request i sent at i / rate."""
    # TCP_NODELAY, as the API server's client has it (Go sets it on every TCP connection):
    # without it a request written in two pieces waits for the delayed ACK of the first,
    # about 40 ms on Linux, and that is all a client-side p50 would measure.
    nodelay = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
    clients = [httpx.Client(verify=server.context, timeout=30,
                            transport=httpx.HTTPTransport(verify=server.context, socket_options=nodelay))
               for _ in range(workers)]
    try:
        for i in range(workers):  # TLS handshakes and the first verdict out of the way
            _send(clients, i, server.url, bodies[0])
        time.sleep(0.2)
        server.server_ms.clear()
        started = time.perf_counter()

        def one(i: int) -> float:
            if rate is not None:
                delay = started + i / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            return _send(clients, i, server.url, bodies[i % len(bodies)])

        with ThreadPoolExecutor(workers) as pool:
            latencies = list(pool.map(one, range(len(bodies))))
        return latencies, time.perf_counter() - started
    finally:
        for client in clients:
            client.close()


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def _row(name: str, server: Server, latencies: list[float], wall: float) -> str:
    time.sleep(0.5)  # the last log lines
    own = server.server_ms  # empty for /healthz, which is not logged
    mine = f"{statistics.median(own):.2f} | {_p99(own):.2f}" if own else "- | -"
    return (f"| {name} | {len(latencies)} | {statistics.median(latencies) * 1000:.1f} | {_p99(latencies) * 1000:.1f} "
            f"| {mine} | {len(latencies) / wall:.0f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200.0, help="requests/s of the cached scenarios")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each cached scenario")
    parser.add_argument("--uncached", type=int, default=60, help="requests of the uncached scenario")
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    args = parser.parse_args()
    count = min(MAX_REQUESTS, int(args.rate * args.seconds))
    tmp = Path(tempfile.mkdtemp(prefix="ocimodel-bench-admission-"))
    servers: list[Server] = []
    try:
        with LocalRegistry() as registry:
            model = tmp / "model"
            model.mkdir()
            (model / "config.json").write_text('{"hidden_size": 4}\n')
            (model / "weights.safetensors").write_bytes(b"\0" * 4096)
            private, public = tmp / "ci.key", tmp / "ci.pub"
            ocimodel.generate_key_pair(private, public)
            tag = f"{registry.host}/bench/model:1.0"
            digest = ocimodel.push(model, tag, licenses=["Apache-2.0"]).digest
            ocimodel.sign(tag, key=private, file_signature=False)
            ocimodel.scan(tag, attest=True, key=private)
            pinned = f"{registry.host}/bench/model@{digest}"
            image = _push_image(registry.host)
            policy = tmp / "policy.yaml"
            policy.write_text(f"signers:\n  ci: {{key: {public}}}\nscan: {{max_severity: medium, signers: [ci]}}\n"
                              "licenses: {allow: [Apache-2.0], unknown: deny, base_models: false}\n")
            cached = Server(tmp / "pki-cached", policy, "--cache-ttl", "300")
            servers.append(cached)
            uncached = Server(tmp / "pki-uncached", policy, "--cache-ttl", "0")
            servers.append(uncached)
            rows = ["| scenario | requests | p50 ms | p99 ms | server p50 ms | server p99 ms | requests/s |",
                    "|---|---|---|---|---|---|---|"]
            rows.append(_row(f"floor: GET /healthz, {args.rate:g}/s offered", cached,
                             *_run(cached, [None] * count, args.rate, 8)))
            bodies = [_review(pinned, image, f"uid-{i}") for i in range(count)]
            rows.append(_row(f"cached, pinned, {args.rate:g}/s offered", cached, *_run(cached, bodies, args.rate, 8)))
            bodies = [_review(tag, image, f"uid-{i}") for i in range(count)]
            rows.append(_row(f"cached, tags, {args.rate:g}/s offered", cached, *_run(cached, bodies, args.rate, 8)))
            bodies = [_review(pinned, image, f"uid-{i}") for i in range(min(args.uncached, MAX_REQUESTS))]
            rows.append(_row("uncached (verify every request), 4 at a time", uncached, *_run(uncached, bodies, None, 4)))
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    table = "\n".join(rows)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
