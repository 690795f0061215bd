"""The admission webhook (issue 19), end to end: `ocimodel admission serve` run as a
process on a free loopback port with real TLS (a CA and server certificate made here; the
client verifies against that CA), against the real registry, fed AdmissionReviews as the
API server sends them (tests/data/admission/).

One server for the module (start-up costs a second); the tests that stop it or need
another deadline start their own."""

from __future__ import annotations

import base64
import copy
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import jsonpatch
import pytest

import ocimodel
from tests.support.faultproxy import FaultProxy
from tests.support.htpasswd import write_htpasswd
from tests.support.pki import make_pki
from tests.support.registry import LocalRegistry

pytestmark = pytest.mark.registry

DATA = Path(__file__).parent / "data" / "admission"
KINDS = ("pod", "deployment", "statefulset", "daemonset", "replicaset", "job", "cronjob")
DEADLINE = 2.0
WEBHOOK_TIMEOUT = 10.0  # the API server's timeoutSeconds in deploy/: longer than the deadline
# A pickle that calls os.system when loaded: the real scanner flags it critical.
MALICIOUS_PICKLE = b"cos\nsystem\n(S'id'\ntR."
SECRET = "s3cret-admission-password"


class Webhook:
    """`ocimodel admission serve` in a subprocess; stderr (its JSON log) collected."""

    def __init__(self, tmp: Path, policy: Path, *extra: str, tls: tuple[Path, Path, Path] | None = None,
                 env: dict[str, str] | None = None) -> None:
        if tls is None:  # (CA, certificate, key); made here unless given
            pki = make_pki(tmp / "pki")
            tls = (pki.ca, *pki.server)
        self.ca, cert, key = tls
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ocimodel", "admission", "serve", "--policy", str(policy), "--tls-cert", str(cert),
             "--tls-key", str(key), "--host", "127.0.0.1", "--port", "0", "--deadline", str(DEADLINE), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        listening = self.wait_for(lambda e: e.get("event") == "listening", 30)
        self.url = f"https://127.0.0.1:{listening['port']}"
        self.client = httpx.Client(verify=ssl.create_default_context(cafile=str(self.ca)), timeout=WEBHOOK_TIMEOUT)

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def entries(self) -> list[dict]:
        out = []
        for line in list(self.lines):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def wait_for(self, match, seconds: float) -> dict:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for entry in self.entries():
                if match(entry):
                    return entry
            if self.process.poll() is not None:
                time.sleep(0.2)  # the reader may still hold the last lines
                break
            time.sleep(0.05)
        for entry in self.entries():
            if match(entry):
                return entry
        raise AssertionError(f"not logged within {seconds} s; stderr: {''.join(self.lines)[-3000:]}")

    def review(self, document: dict, path: str = "/validate") -> dict:
        answer = self.client.post(self.url + path, json=document)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def stop(self) -> int:
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(20)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self._reader.join(5)


def _review(kind: str, **refs: str) -> dict:
    text = (DATA / f"{kind}.json").read_text()
    for name, value in refs.items():
        text = text.replace("{{" + name + "}}", json.dumps(value)[1:-1])  # inside a JSON string
    assert "{{" not in text, text
    return json.loads(text)


def _model_dir(root: Path, weights: bytes, license: str) -> Path:
    root.mkdir(parents=True)
    (root / "config.json").write_bytes(b'{"hidden_size": 4}\n')
    (root / "weights.pkl").write_bytes(weights)
    return root


def _push_image(registry: str, repository: str, tag: str) -> str:
    """An ordinary container image (OCI image config, a rootfs layer): not a model."""
    import hashlib

    base = f"http://{registry}/v2/{repository}"
    blobs = {}
    with httpx.Client() as http:
        for data in (b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}', b"\x1f\x8b layer"):
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            start = http.post(f"{base}/blobs/uploads/")
            location = start.headers["location"]
            location = location if location.startswith("http") else f"http://{registry}{location}"
            sep = "&" if "?" in location else "?"
            http.put(f"{location}{sep}digest={digest}", content=data,
                     headers={"content-type": "application/octet-stream"}).raise_for_status()
            blobs[data] = (digest, len(data))
        (config, config_size), (layer, layer_size) = blobs.values()
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer, "size": layer_size}],
        }).encode()
        http.put(f"{base}/manifests/{tag}", content=manifest,
                 headers={"content-type": "application/vnd.oci.image.manifest.v1+json"}).raise_for_status()
    return f"{registry}/{repository}:{tag}"


class Models:
    """The models of the module, pushed once: each a tag reference and its digest."""

    def __init__(self, registry: LocalRegistry, tmp: Path) -> None:
        self.tmp = tmp
        self.private, self.public = tmp / "ci.key", tmp / "ci.pub"
        ocimodel.generate_key_pair(self.private, self.public)
        self.policy = tmp / "policy.yaml"
        self.policy.write_text(
            f"signers:\n  ci: {{key: {self.public}}}\n"
            "scan: {max_severity: medium, signers: [ci]}\n"
            "licenses: {allow: [Apache-2.0, MIT], unknown: deny, base_models: false}\n"
        )
        host = registry.host
        self.good, self.good_digest = self.push(f"{host}/adm/good:1.0", b"fine weights", "Apache-2.0")
        self.unsigned, _ = self.push(f"{host}/adm/unsigned:1.0", b"fine weights", "Apache-2.0", sign=False)
        self.malicious, _ = self.push(f"{host}/adm/malicious:1.0", MALICIOUS_PICKLE, "Apache-2.0")
        self.noncommercial, _ = self.push(f"{host}/adm/noncommercial:1.0", b"fine weights 2", "CC-BY-NC-4.0")
        self.image = _push_image(host, "adm/server", "1.0")

    def push(self, ref: str, weights: bytes, license: str, *, sign: bool = True) -> tuple[str, str]:
        stem = ref.rsplit("/", 1)[1].replace(":", "-") + f"-{len(list(self.tmp.iterdir()))}"
        pushed = ocimodel.push(_model_dir(self.tmp / stem, weights, license), ref, licenses=[license])
        if sign:
            ocimodel.sign(ref, key=self.private, file_signature=False)
            ocimodel.scan(ref, attest=True, key=self.private)
        return ref, pushed.digest


@pytest.fixture(scope="module")
def models(registry, tmp_path_factory) -> Models:
    return Models(registry, tmp_path_factory.mktemp("admission-models"))


@pytest.fixture(scope="module")
def webhook(models, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("admission-server")
    docker = tmp / "docker" / "config.json"
    docker.parent.mkdir()
    # Credentials for a registry the tests never use: they must never reach the log.
    docker.write_text(json.dumps({"auths": {"registry.example": {
        "auth": base64.b64encode(f"robot:{SECRET}".encode()).decode()}}}))
    server = Webhook(tmp, models.policy, "--docker-config", str(docker), "--record-deployments", "test")
    server.docker_config = docker
    yield server
    server.stop()


def _allowed(answer: dict, uid: str) -> dict:
    response = answer["response"]
    assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
    assert response["uid"] == uid
    assert response["allowed"] is True, response.get("status")
    return response


def _denied(answer: dict, uid: str) -> str:
    response = answer["response"]
    assert response["uid"] == uid
    assert response["allowed"] is False, response
    assert response["status"]["code"] == 403
    return response["status"]["message"]


# -- allowed: every kind, and the patch that pins ----------------------------------------


def _refs(models: Models, model: str | None = None) -> dict[str, str]:
    good = models.good
    return {"MODEL": model or good, "MODEL_AS_IMAGE": good, "IMAGE": models.image, "ANNOTATED": f"{good},\n{good}"}


@pytest.mark.parametrize("kind", KINDS)
def test_a_signed_compliant_model_is_allowed_and_pinned(webhook, models, kind):
    document = _review(kind, **_refs(models))
    uid = document["request"]["uid"]
    response = _allowed(webhook.review(document), uid)
    assert "patch" not in response  # the validating webhook does not mutate
    assert models.good in response["status"]["message"] and models.good_digest in response["status"]["message"]

    response = _allowed(webhook.review(document, "/mutate"), uid)
    assert response["patchType"] == "JSONPatch"
    patch = json.loads(base64.b64decode(response["patch"]))
    obj = document["request"]["object"]
    patched = jsonpatch.apply_patch(obj, patch)  # applies cleanly, its tests included
    pinned = models.good.rsplit(":", 1)[0] + "@" + models.good_digest
    text = json.dumps(patched)
    assert models.good not in text  # every tag reference of the model is pinned...
    assert text.count(pinned) == json.dumps(obj).count(models.good)
    assert models.image in text  # ...and the ordinary container image is left alone
    annotations = patched["metadata"]["annotations"]
    assert annotations["models.ocimodel.dev/references"] == f"{pinned}\n{pinned}"
    # The pinned object is allowed as it is (what the validating webhook sees after /mutate).
    again = copy.deepcopy(document)
    again["request"]["object"] = patched
    assert "patch" not in _allowed(webhook.review(again, "/mutate"), uid)


def test_an_ephemeral_container_running_a_model_is_judged(webhook, models):
    """kubectl debug adds an ephemeral container through the pods/ephemeralcontainers
    subresource: an UPDATE of the Pod."""
    document = _review("pod", **_refs(models))
    request = document["request"]
    request.update(operation="UPDATE", subResource="ephemeralcontainers", oldObject=copy.deepcopy(request["object"]))
    request["object"]["spec"]["ephemeralContainers"] = [{"name": "debugger", "image": models.unsigned,
                                                         "targetContainerName": "server"}]
    message = _denied(webhook.review(document), request["uid"])
    assert models.unsigned in message and "ephemeralContainer debugger" in message


# -- denied, each with its reason -----------------------------------------------------------


@pytest.mark.parametrize(("which", "rule", "reason"), [
    ("unsigned", "signature", "[unsigned]"),
    ("malicious", "scan", "found critical"),
    ("noncommercial", "licenses", "CC-BY-NC-4.0"),
])
def test_a_model_the_policy_refuses_is_denied_with_its_reason(webhook, models, which, rule, reason):
    ref = getattr(models, which)
    for kind in ("pod", "deployment"):
        document = _review(kind, **_refs(models, model=ref))
        for path in ("/validate", "/mutate"):
            answer = webhook.review(document, path)
            message = _denied(answer, document["request"]["uid"])
            assert "patch" not in answer["response"]
            assert f"model {ref}" in message and "volume weights" in message
            assert f"denied by {rule}" in message and reason in message, message
            assert models.good not in message  # only the refused model is named


def test_a_tag_moved_to_an_unsigned_model_is_denied(webhook, models, tmp_path):
    moving = models.good.replace("adm/good:1.0", "adm/moving:prod")
    _, signed = models.push(moving, b"moving weights", "MIT")
    document = _review("deployment", **_refs(models, model=moving))
    _allowed(webhook.review(document), document["request"]["uid"])
    # The tag moves to a model nobody signed: the next request resolves it afresh.
    _, unsigned = models.push(moving, b"other weights", "MIT", sign=False)
    assert unsigned != signed
    message = _denied(webhook.review(document), document["request"]["uid"])
    assert f"model {moving} ({unsigned})" in message and "denied by signature" in message


# -- fail closed ---------------------------------------------------------------------------


def test_a_malformed_request_is_denied_or_refused(webhook, models):
    not_json = webhook.client.post(webhook.url + "/validate", content=b"{not json")
    assert not_json.status_code == 400 and "not an AdmissionReview" in not_json.json()["error"]
    document = _review("pod", **_refs(models))
    uid = document["request"]["uid"]
    broken = copy.deepcopy(document)
    broken["request"]["object"]["spec"]["volumes"][0]["image"]["reference"] = 42
    message = _denied(webhook.review(broken), uid)  # the uid is readable: a deny that echoes it
    assert "malformed request" in message and "image.reference is not a string" in message
    old = copy.deepcopy(document)
    old["apiVersion"] = "admission.k8s.io/v1beta1"
    assert "expected apiVersion admission.k8s.io/v1" in _denied(webhook.review(old), uid)
    no_uid = copy.deepcopy(document)
    del no_uid["request"]["uid"]
    assert webhook.client.post(webhook.url + "/validate", json=no_uid).status_code == 400


def test_a_huge_body_is_refused_and_many_denied_models_give_a_bounded_message(webhook, models):
    from ocimodel.admission.app import MAX_BODY

    huge = webhook.client.post(webhook.url + "/validate", content=b" " * (MAX_BODY + 1))
    assert huge.status_code == 400 and "larger than" in huge.json()["error"]
    # An annotation naming many models none of which exists: every one is denied, and the
    # message the user reads (and the API server keeps in its events) stays a few lines.
    host = models.good.split("/", 1)[0]
    missing = [f"{host}/adm/absent-{i}:1.0" for i in range(60)]
    document = _review("pod", **_refs(models))
    document["request"]["object"]["metadata"]["annotations"]["models.ocimodel.dev/references"] = ",".join(missing)
    message = _denied(webhook.review(document), document["request"]["uid"])
    assert missing[0] in message and "and 50 more models denied" in message, message[:500]
    assert len(message) < 6000


def _rewrite(path: Path, text: str) -> None:
    path.write_text(text)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a new stamp even within one clock tick


def test_a_head_or_body_sent_too_slowly_is_answered_408_and_the_connection_closed(webhook):
    import socket

    context = ssl.create_default_context(cafile=str(webhook.ca))
    host, port = webhook.url.removeprefix("https://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as raw:  # far beyond the deadline
        with context.wrap_socket(raw, server_hostname=host) as tls:
            tls.sendall(b"POST /validate HTTP/1.1\r\nHost: webhook\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 1000\r\n\r\n{\"apiVersion\":")  # and nothing more
            received = b""
            while chunk := tls.recv(65536):  # ends when the server closes the connection
                received += chunk
    assert received.startswith(b"HTTP/1.1 408"), received[:200]
    assert b"not read within" in received
    with socket.create_connection((host, int(port)), timeout=30) as raw:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            tls.sendall(b"POST /validate HTTP/1.1\r\nHost: webhook\r\n")  # the head never ends
            received = b""
            while chunk := tls.recv(65536):
                received += chunk
    assert received.startswith(b"HTTP/1.1 408"), received[:200]


def test_a_changed_policy_applies_at_once_and_one_that_stops_loading_denies(webhook, models):
    document = _review("pod", **_refs(models))
    uid = document["request"]["uid"]
    _allowed(webhook.review(document), uid)  # now cached under this policy's digest
    saved = models.policy.read_text()
    try:
        # A stricter policy: the cached verdict of the old one is not reused.
        _rewrite(models.policy, saved.replace("allow: [Apache-2.0, MIT]", "allow: [MIT]"))
        message = _denied(webhook.review(document), uid)
        assert "denied by licenses" in message and "Apache-2.0" in message
        _rewrite(models.policy, saved + "signature: {match: all_of}\n")
        message = _denied(webhook.review(document), uid)
        assert "denied by policy" in message and "does not load" in message
        ready = webhook.client.get(webhook.url + "/readyz")
        assert ready.status_code == 503 and "match" in ready.text
    finally:
        _rewrite(models.policy, saved)
    _allowed(webhook.review(document), uid)
    assert webhook.client.get(webhook.url + "/readyz").status_code == 200


def test_a_registry_stopped_or_stalled_mid_test_gives_a_deny_within_the_deadline(webhook, models, tmp_path):
    with LocalRegistry() as own:
        ref, _ = models.push(f"{own.host}/adm/elsewhere:1.0", b"elsewhere", "MIT")
        document = _review("pod", **_refs(models, model=ref))
        _allowed(webhook.review(document), document["request"]["uid"])
        with FaultProxy(own.host) as proxy:
            stall = proxy.stall(30, path=r"/manifests/", after=None, times=None)
            stalled = _review("pod", **_refs(models, model=ref.replace(own.host, proxy.host)))
            # The webhook answers at its deadline, before the API server's timeout (the client's).
            message = _denied(webhook.review(stalled), document["request"]["uid"])
            # At the webhook's deadline, or sooner when the read timeout of one request
            # (shorter than the deadline) fires first, as it can on a loaded machine.
            assert ("denied by deadline" in message and f"deadline of {DEADLINE:g} s" in message) or (
                "denied by registry" in message and "did not answer within" in message), message
            assert proxy.host in message
            stall.release()
        own.stop()
        # The tag must be resolved again: the registry being down is a deny naming it.
        message = _denied(webhook.review(document), document["request"]["uid"])
        assert f"model {ref}" in message and own.host in message


def test_too_many_models_are_denied_unasked_and_a_slow_request_leaves_workers_for_the_next(webhook, models):
    document = _review("pod", **_refs(models))
    many = ",".join(f"{models.good.rsplit(':', 1)[0]}-{i}:1.0" for i in range(65))
    document["request"]["object"]["metadata"]["annotations"]["models.ocimodel.dev/references"] = many
    message = _denied(webhook.review(document), document["request"]["uid"])
    assert "denied by limit" in message and "more than the 64" in message
    registry = models.good.split("/", 1)[0]
    with FaultProxy(registry) as proxy:
        stall = proxy.stall(30, path=r"/manifests/", after=None, times=None)
        try:
            # Two requests, each naming 20 models on a registry that never answers: 40 checks,
            # more than the webhook's 32 workers. Each is denied at the deadline...
            slow = _review("pod", **_refs(models))
            slow["request"]["object"]["metadata"]["annotations"]["models.ocimodel.dev/references"] = ",".join(
                f"{proxy.host}/adm/slow-{i}:1.0" for i in range(20))
            for _ in range(2):
                assert "denied by deadline" in _denied(webhook.review(slow), slow["request"]["uid"])
            # ...having started only part of its checks, so the next request finds a free worker.
            assert len([r for r in proxy.requests if "/manifests/" in r.target]) < 40
            fresh = _review("pod", **_refs(models))
            _allowed(webhook.review(fresh), fresh["request"]["uid"])
        finally:
            stall.release()


def test_a_request_that_waited_past_its_deadline_for_a_thread_asks_no_registry(models):
    from ocimodel.admission.review import Found
    from ocimodel.admission.verdicts import PolicyHolder, Verdicts
    from ocimodel.transport.connection import ConnectionOptions

    verdicts = Verdicts(PolicyHolder(models.policy), ConnectionOptions(), deadline=DEADLINE)
    try:
        with FaultProxy(models.good.split("/", 1)[0]) as proxy:
            found = [Found(models.good.replace(models.good.split("/", 1)[0], proxy.host), "/x", "annotation")]
            # It arrived a minute ago: the API server has given up on it; nothing is started.
            [verdict] = verdicts.judge(found, started=time.monotonic() - 60)
            assert verdict.rule == "deadline" and not verdict.allowed
            assert proxy.requests == []
    finally:
        verdicts.close()


def test_a_private_registry_is_read_with_the_mounted_docker_config(webhook, models, tmp_path):
    password = "pw-" + SECRET
    with LocalRegistry(htpasswd=write_htpasswd(tmp_path / "htpasswd", "reader", password)) as private:
        ref = f"{private.host}/adm/private:1.0"
        pushed = ocimodel.push(_model_dir(tmp_path / "private", b"private", "MIT"), ref, licenses=["MIT"],
                               credentials=("reader", password))
        ocimodel.sign(ref, key=models.private, file_signature=False, credentials=("reader", password))
        ocimodel.scan(ref, attest=True, key=models.private, credentials=("reader", password))
        document = _review("pod", **_refs(models, model=ref))
        uid = document["request"]["uid"]
        # No credentials for it in the config yet: the registry refuses, so the model is denied.
        message = _denied(webhook.review(document), uid)
        assert f"model {ref}" in message and "denied by registry" in message
        config = json.loads(webhook.docker_config.read_text())
        saved = json.dumps(config)
        config["auths"][private.host] = {"auth": base64.b64encode(f"reader:{password}".encode()).decode()}
        webhook.docker_config.write_text(json.dumps(config))  # read again for each registry client
        try:
            assert pushed.digest in _allowed(webhook.review(document), uid)["status"]["message"]
        finally:
            webhook.docker_config.write_text(saved)
    assert password not in "".join(webhook.lines)


# -- records, logs, metrics, and stopping --------------------------------------------------


def test_an_admitted_workload_gets_a_deployment_record_and_a_dry_run_none(webhook, models):
    recorded = models.good.replace("adm/good:1.0", "adm/recorded:1.0")
    _, digest = models.push(recorded, b"recorded weights", "MIT")
    dry = _review("deployment", **_refs(models, model=recorded))
    dry["request"]["dryRun"] = True
    dry["request"]["object"]["metadata"]["name"] = dry["request"]["name"] = "dry"
    _allowed(webhook.review(dry), dry["request"]["uid"])
    # The ReplicaSet of a rollout and the Job of a CronJob: their owners carry the record.
    for kind, owner in (("replicaset", "Deployment"), ("job", "CronJob")):
        owned = _review(kind, **_refs(models, model=recorded))
        owned["request"]["object"]["metadata"]["ownerReferences"] = [
            {"apiVersion": "apps/v1" if owner == "Deployment" else "batch/v1", "kind": owner, "name": "sentiment",
             "uid": "0b9c4f7e-0000-4000-8000-000000000001", "controller": True}]
        _allowed(webhook.review(owned), owned["request"]["uid"])
    real = _review("deployment", **_refs(models, model=recorded))
    _allowed(webhook.review(real), real["request"]["uid"])
    repository = recorded.rsplit(":", 1)[0]
    for _ in range(200):  # written off the request path: wait for it, boundedly
        records = ocimodel.deployments(repository).records
        if records:
            break
        time.sleep(0.05)
    assert [(r.digest, r.environment, r.target) for r in records] == [(digest, "test", "k8s://serving/deployment/sentiment")]


def test_a_pod_owned_by_an_operator_gets_its_record_and_a_pod_of_a_replicaset_none(webhook, models):
    recorded = models.good.replace("adm/good:1.0", "adm/operated:1.0")
    _, digest = models.push(recorded, b"operated weights", "MIT")
    for name, owner in (("of-a-replicaset", "ReplicaSet"), ("sentiment", "RayCluster")):
        pod = _review("pod", **_refs(models, model=recorded))
        pod["request"]["object"]["metadata"]["name"] = pod["request"]["name"] = name
        pod["request"]["object"]["metadata"]["ownerReferences"] = [
            {"apiVersion": "ray.io/v1" if owner == "RayCluster" else "apps/v1", "kind": owner, "name": "ray", "uid": "0b9c4f7e-0000-4000-8000-000000000002"}]
        _allowed(webhook.review(pod), pod["request"]["uid"])
    repository = recorded.rsplit(":", 1)[0]
    for _ in range(200):  # written in order, off the request path: the second one's record ends the wait
        records = ocimodel.deployments(repository).records
        if records:
            break
        time.sleep(0.05)
    assert [(r.digest, r.target) for r in records] == [(digest, "k8s://serving/pod/sentiment")]


def test_records_signed_with_the_mounted_key_are_trusted_by_a_policy_that_trusts_it(models, tmp_path):
    password = "record-key-password"  # encrypted, as a key in a Secret should be: the env gives the password
    ocimodel.generate_key_pair(tmp_path / "webhook.key", tmp_path / "webhook.pub", password)
    ocimodel.generate_key_pair(tmp_path / "other.key", tmp_path / "other.pub")
    recorded = models.good.replace("adm/good:1.0", "adm/signed-record:1.0")
    _, digest = models.push(recorded, b"signed record weights", "MIT")
    server = Webhook(tmp_path, models.policy, "--record-deployments", "prod", "--record-key", str(tmp_path / "webhook.key"),
                     env={**os.environ, "OCIMODEL_KEY_PASSWORD": password})
    repository = recorded.rsplit(":", 1)[0]
    try:
        document = _review("deployment", **_refs(models, model=recorded))
        _allowed(server.review(document), document["request"]["uid"])
        for _ in range(200):  # written off the request path: wait for it, boundedly
            if ocimodel.deployments(repository).records:
                break
            time.sleep(0.05)
    finally:
        server.stop()
    for name in ("webhook", "other"):
        (tmp_path / f"{name}.yaml").write_text(f"signers:\n  {name}: {{key: {name}.pub}}\n")
    [trusted] = ocimodel.deployments(repository, policy=tmp_path / "webhook.yaml").records
    assert (trusted.digest, trusted.environment, trusted.target) == (digest, "prod", "k8s://serving/deployment/sentiment")
    assert (trusted.trust, trusted.signers) == ("trusted", ["webhook"])
    [other] = ocimodel.deployments(repository, policy=tmp_path / "other.yaml").records
    assert other.trust == "untrusted" and other.record == trusted.record
    log = "".join(server.lines)
    assert password not in log and "PRIVATE KEY" not in log


def test_a_record_key_that_does_not_load_or_has_no_records_to_sign_refuses_to_start(models, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from ocimodel.cli.app import app

    monkeypatch.delenv("OCIMODEL_KEY_PASSWORD", raising=False)
    pki = make_pki(tmp_path / "pki")
    garbage = tmp_path / "garbage.key"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5IGF0IGFsbA==\n-----END PRIVATE KEY-----\n")
    ocimodel.generate_key_pair(tmp_path / "locked.key", tmp_path / "locked.pub", "no env gives this")
    # A port already taken: a server that wrongly starts fails to listen (exit 1) instead of serving forever here.
    with socket.create_server(("127.0.0.1", 0)) as busy:
        serve = ["admission", "serve", "--policy", str(models.policy), "--tls-cert", str(pki.server[0]),
                 "--tls-key", str(pki.server[1]), "--host", "127.0.0.1", "--port", str(busy.getsockname()[1])]
        for key, reason in ((garbage, "is not a PEM private key"), (tmp_path / "locked.key", "is encrypted")):
            run = CliRunner().invoke(app, [*serve, "--record-deployments", "prod", "--record-key", str(key)])
            first = run.stderr.splitlines()[0]
            assert run.exit_code == 2 and first.startswith("error: cannot load --record-key") and str(key) in first, run.output
            assert reason in first and "Traceback" not in run.output and "bm90IGEga2V5" not in run.output
        run = CliRunner().invoke(app, [*serve, "--record-key", str(tmp_path / "locked.key")])
        assert run.exit_code == 2 and "needs --record-deployments" in run.stderr, run.output


def test_the_records_already_written_are_remembered_boundedly(models):
    from ocimodel.admission.records import RecordWriter
    from ocimodel.transport.connection import ConnectionOptions

    written = threading.Semaphore(0)
    writer = RecordWriter(ConnectionOptions(), "test", on_result=lambda result: written.release(), max_seen=2)
    pinned = f"{models.good.rsplit(':', 1)[0]}@{models.good_digest}"
    try:
        for target in ("t1", "t2", "t3", "t1", "t3"):  # t1 was pruned (oldest of 3 > 2); t3 is remembered
            writer.submit(pinned, f"k8s://bounded/deployment/{target}")
    finally:
        writer.close(timeout=30)
    results = 0
    while written.acquire(timeout=0):
        results += 1
    assert results == 4


def test_logs_are_one_json_line_per_request_without_secrets(webhook, models):
    document = _review("job", **_refs(models))
    _allowed(webhook.review(document), document["request"]["uid"])
    entry = webhook.wait_for(lambda e: e.get("uid") == document["request"]["uid"] and e.get("kind") == "Job", 10)
    assert entry["namespace"] == "serving" and entry["name"] == "sentiment-eval" and entry["verdict"] == "allowed"
    assert models.good in {m["reference"] for m in entry["models"]} and isinstance(entry["ms"], float)
    assert SECRET not in "".join(webhook.lines)
    assert base64.b64encode(f"robot:{SECRET}".encode()).decode() not in "".join(webhook.lines)


def test_health_readiness_and_metrics(webhook, models):
    assert webhook.client.get(webhook.url + "/healthz").text == "ok\n"
    assert webhook.client.get(webhook.url + "/readyz").status_code == 200
    document = _review("pod", **_refs(models))
    webhook.review(document)
    webhook.review(document)  # the second is answered from the verdict cache
    text = webhook.client.get(webhook.url + "/metrics").text
    assert 'ocimodel_admission_requests_total{endpoint="validate",result="allowed"}' in text
    assert 'ocimodel_admission_verdicts_total{result="denied"}' in text
    assert 'ocimodel_admission_request_seconds_bucket{endpoint="validate",le="0.01"}' in text
    hits = [line for line in text.splitlines() if line.startswith('ocimodel_admission_cache_total{cache="verdict",result="hit"}')]
    assert hits and float(hits[0].split()[-1]) >= 1


def test_a_key_file_the_policy_names_is_watched_like_the_policy(tmp_path):
    """A key kept apart from the policy (another Secret) that is replaced or removed: the
    policy is read again, so no verdict of the old key is reused and a missing key denies."""
    from ocimodel.admission.verdicts import PolicyHolder, PolicyUnavailable

    keys = tmp_path / "keys"
    keys.mkdir()
    ocimodel.generate_key_pair(tmp_path / "old.key", keys / "release.pub")
    policy = tmp_path / "policy.yaml"
    policy.write_text("signers:\n  release: {key: keys/release.pub}\n")
    holder = PolicyHolder(policy)
    _, before = holder.current()
    ocimodel.generate_key_pair(tmp_path / "new.key", tmp_path / "new.pub")
    _rewrite(keys / "release.pub", (tmp_path / "new.pub").read_text())
    _, after = holder.current()
    assert after != before  # the new key's verdicts are not the old key's
    (keys / "release.pub").unlink()
    with pytest.raises(PolicyUnavailable, match="release.pub"):
        holder.current()


def test_a_reload_never_pairs_one_policy_with_another_s_digest(tmp_path, monkeypatch):
    """A request that looked at the file just before it changed reads the policy while
    another request reloads it: it gets the old policy and digest or the new ones, never
    the new policy under the old digest (its verdicts would be cached as the old policy's,
    and reused if that policy came back). The reloading thread is paused between its
    assignments, so the interleaving is forced, not timed."""
    from ocimodel.admission import verdicts as module

    class Paused(module.PolicyHolder):
        pause: threading.Event | None = None
        go = threading.Event()

        @property
        def digest(self) -> str:
            return self.__dict__.get("_digest", "")

        @digest.setter
        def digest(self, value: str) -> None:
            if self.pause is not None and threading.current_thread() is not threading.main_thread():
                self.pause.set()
                self.go.wait(10)
            self.__dict__["_digest"] = value

    ocimodel.generate_key_pair(tmp_path / "ci.key", tmp_path / "ci.pub")
    policy = tmp_path / "policy.yaml"
    policy.write_text("signers:\n  ci: {key: ci.pub}\n")
    holder = Paused(policy)
    old_policy, old_digest = holder.current()
    real = module._stamp
    before = {path: real(path) for path in (policy, tmp_path / "ci.pub")}
    # This (main) thread saw the files as they were before the change; the other sees them now.
    monkeypatch.setattr(module, "_stamp", lambda path: before[path] if threading.current_thread()
                        is threading.main_thread() and path in before else real(path))
    _rewrite(policy, "signers:\n  ci: {key: ci.pub}\nversion: 1\n")
    Paused.pause = threading.Event()
    reloader = threading.Thread(target=holder.current)
    reloader.start()
    try:
        assert Paused.pause.wait(10)
        seen_policy, seen_digest = holder.current()
    finally:
        Paused.go.set()
        reloader.join(10)
        Paused.pause = None
    assert (seen_policy is old_policy) == (seen_digest == old_digest), "a policy paired with another's digest"


def test_a_policy_swapped_while_it_is_read_gets_the_digest_of_what_was_parsed(tmp_path, monkeypatch):
    from ocimodel.admission import verdicts as module

    ocimodel.generate_key_pair(tmp_path / "ci.key", tmp_path / "ci.pub")
    policy = tmp_path / "policy.yaml"
    policy.write_text("signers:\n  ci: {key: ci.pub}\n")
    holder = module.PolicyHolder(policy)
    real, swaps = module.load_policy, []

    def swapped_first(path):  # the file is replaced between its read for the digest and its parse
        if not swaps:
            swaps.append(path)
            _rewrite(policy, "signers:\n  ci: {key: ci.pub}\nversion: 1\n# third\n")
        return real(path)

    monkeypatch.setattr(module, "load_policy", swapped_first)
    _rewrite(policy, "signers:\n  ci: {key: ci.pub}\nversion: 1\n")  # an update: the next request reloads
    _, digest = holder.current()
    monkeypatch.setattr(module, "load_policy", real)
    assert swaps and digest == module.PolicyHolder(policy).current()[1]


def test_cache_times_that_are_not_finite_numbers_are_refused(tmp_path):
    from ocimodel.admission.server import ServeOptions, check
    from ocimodel.errors import UsageError

    cert, key = make_pki(tmp_path / "pki").server
    check(ServeOptions(policy=tmp_path / "p.yaml", tls_cert=cert, tls_key=key, cache_ttl=0, resolve_ttl=60))
    for option in ("cache_ttl", "resolve_ttl"):
        for value in (float("nan"), float("inf"), -1.0):  # nan would keep every entry forever
            with pytest.raises(UsageError, match="--cache-ttl and --resolve-ttl"):
                check(ServeOptions(policy=tmp_path / "p.yaml", tls_cert=cert, tls_key=key, **{option: value}))


def test_it_refuses_to_start_without_its_policy_and_stops_gracefully_on_sigterm(models, tmp_path):
    from typer.testing import CliRunner

    from ocimodel.cli.app import app

    bad = tmp_path / "bad.yaml"
    bad.write_text("signers: {}\n")
    pki = make_pki(tmp_path / "pki")
    serve = ["admission", "serve", "--tls-key", str(pki.server[1]), "--port", "0"]
    run = CliRunner().invoke(app, [*serve, "--policy", str(bad), "--tls-cert", str(pki.server[0])])
    assert run.exit_code == 2 and run.stderr.startswith(f"error: {bad}: signers"), run.output
    run = CliRunner().invoke(app, [*serve, "--policy", str(models.policy), "--tls-cert", str(pki.ca)])
    assert run.exit_code == 2 and "cannot load the TLS certificate" in run.stderr, run.output

    # An answer in progress when SIGTERM comes is finished, then the process exits 0.
    server = Webhook(tmp_path / "second", models.policy)
    with FaultProxy(models.good.split("/")[0]) as proxy:
        stall = proxy.stall(30, path=r"/manifests/", after=None, times=None)
        document = _review("pod", **_refs(models, model=models.good.replace(models.good.split("/")[0], proxy.host)))
        answers: list[dict] = []
        pending = threading.Thread(target=lambda: answers.append(server.review(document)))
        pending.start()
        for _ in range(400):
            if proxy.requests:
                break
            time.sleep(0.01)
        assert proxy.requests, "the webhook never asked the registry"
        server.process.send_signal(signal.SIGTERM)
        pending.join(WEBHOOK_TIMEOUT)
        stall.release()
        # Its own exit, waited for: stop() would send a second SIGTERM, and one that lands
        # after the server put the default handlers back (its last step before exit), or
        # that uvicorn takes as "stop now", kills it (-15).
        code = server.process.wait(60)
    server.stop()
    assert code == 0
    assert len(answers) == 1
    message = _denied(answers[0], document["request"]["uid"])
    assert "denied by deadline" in message or "did not answer within" in message, message
    assert server.entries()[-1]["event"] == "stopped"
