"""Records carry their one small layer inside their referrer manifest (the layer
descriptor's ``data``, image spec 1.1), against the real registry (distribution 2.8, no
referrers API) through a counting proxy: a record written now is read with one request
(its manifest), signed or not; a ``data`` that does not match its digest makes the record
malformed even though the blob is fine; a record written without ``data`` (older ocimodel,
other tools) is still read, from its blob; records copied with their model keep it."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest

import ocimodel
from ocimodel.api import functions as reg
from ocimodel.api import trust as api_trust
from ocimodel.api.common import as_reference, open_store
from ocimodel.api.evaluations import EVALUATION_PREDICATE
from ocimodel.api.statements import ANNOTATION_STATEMENT_PREDICATE, UNSIGNED_STATEMENT, scan
from ocimodel.oci import mediatypes as mt
from ocimodel.oci.models import Descriptor
from ocimodel.signing.statement import attestation_statement
from ocimodel.targets.referrers import MAX_EMBEDDED, push_bytes, push_record, push_referrer
from ocimodel.transport.connection import ConnectionOptions
from tests.support.faultproxy import FaultProxy

pytestmark = pytest.mark.registry


@pytest.fixture
def model(registry, repo_name, model_dir, tmp_path) -> tuple[str, str]:
    """(repository, model digest): version 1.0 with a push-time accuracy."""
    repo = f"{registry.host}/{repo_name}"
    shutil.copytree(model_dir, tmp_path / "m")
    digest = ocimodel.push(tmp_path / "m", f"{repo}:1.0", name="m", version="1.0",
                           metadata={"metrics": {"accuracy": 0.95}}).digest
    return repo, digest


@pytest.fixture(scope="module")
def key(tmp_path_factory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("keys")
    api_trust.generate_key_pair(directory / "evaluator.key", directory / "evaluator.pub")
    return directory / "evaluator.key", directory / "evaluator.pub"


def _manifest(repo: str, digest: str) -> dict:
    """A referrer manifest as the registry returns it (bytes checked against the digest)."""
    with open_store(ConnectionOptions(), as_reference(f"{repo}@{digest}")) as store:
        data = store.fetch_manifest(store.resolve(digest))
    return json.loads(data)


def _statement(subject: str, accuracy: float) -> bytes:
    return attestation_statement(subject, EVALUATION_PREDICATE, {
        "metrics": [{"name": "accuracy", "value": accuracy}], "time": "2026-11-01T00:00:00Z"}).to_json()


def _values(history) -> list[tuple[float, str | None]]:
    return [(p.metrics[0].value, p.trust) for p in history.records if not p.baseline]


def test_a_record_embeds_its_layer_and_is_read_with_one_request(registry, repo_name, model, key, tmp_path):
    repo, digest = model
    unsigned = reg.record_evaluation(f"{repo}:1.0", {"accuracy": 0.91}, time="2026-10-01T00:00:00Z")
    signed = reg.record_evaluation(f"{repo}:1.0", {"accuracy": 0.93}, time="2026-11-01T00:00:00Z", key=key[0])
    for record, media_type in ((unsigned.record, UNSIGNED_STATEMENT), (signed.record, mt.BUNDLE_MEDIA_TYPE)):
        manifest = _manifest(repo, record)
        # Media types and annotations as before (cosign and Kyverno read these), plus data.
        assert manifest["artifactType"] == media_type and manifest["subject"]["digest"] == digest
        [layer] = manifest["layers"]
        assert layer["mediaType"] == media_type
        assert len(base64.b64decode(layer["data"], validate=True)) == layer["size"]

    policy = tmp_path / "policy.yaml"
    policy.write_text(f"version: 1\nsigners:\n  evaluator: {{key: {key[1]}}}\n")
    with FaultProxy(registry.host) as proxy:
        history = reg.evaluation_history(f"{proxy.host}/{repo_name}:1.0", policy=policy)
        assert _values(history) == [(0.91, "unsigned"), (0.93, "trusted")]
        # Each record is its manifest alone: no blob is asked for.
        assert proxy.count("GET", r"/blobs/") == 0, [s.target for s in proxy.requests]
        assert proxy.count("GET", rf"/manifests/({unsigned.record}|{signed.record})$") == 2
    # The blobs are still there, the same bytes, for tools that GET them (cosign, Kyverno).
    with open_store(ConnectionOptions(), as_reference(f"{repo}:1.0")) as store:
        for record in (unsigned.record, signed.record):
            layer = Descriptor.model_validate(_manifest(repo, record)["layers"][0])
            with store.open_blob(layer) as chunks:
                assert base64.b64encode(b"".join(chunks)).decode() == layer.data


def test_data_that_does_not_match_its_digest_is_refused_though_the_blob_is_fine(registry, repo_name, model):
    repo, digest = model
    with open_store(ConnectionOptions(), as_reference(f"{repo}:1.0")) as store:
        root = store.resolve("1.0")
        layer = push_bytes(store, UNSIGNED_STATEMENT, _statement(digest, 0.51))  # the blob: 0.51
        forged = layer.model_copy(update={"data": base64.b64encode(_statement(digest, 0.99)).decode()})
        bad, _ = push_referrer(store, root, UNSIGNED_STATEMENT, [forged],
                               {ANNOTATION_STATEMENT_PREDICATE: EVALUATION_PREDICATE})
        # Not base64 at all, over a fine blob too.
        junk = layer.model_copy(update={"data": "not base64!"})
        worse, _ = push_referrer(store, root, UNSIGNED_STATEMENT, [junk],
                                 {ANNOTATION_STATEMENT_PREDICATE: EVALUATION_PREDICATE, "n": "2"})
    reg.record_evaluation(f"{repo}:1.0", {"accuracy": 0.9}, time="2026-12-01T00:00:00Z")
    with FaultProxy(registry.host) as proxy:
        history = reg.evaluation_history(f"{proxy.host}/{repo_name}:1.0")
        assert proxy.count("GET", r"/blobs/") == 0  # a bad data is refused, not replaced by the blob
    # Neither the forged 0.99 nor the blob's 0.51 (the same length: only the digest tells):
    # the record is malformed, and said so.
    assert _values(history) == [(0.9, "unsigned")]
    for record in (bad.digest, worse.digest):
        assert any(record in w for w in history.warnings), history.warnings
    with open_store(ConnectionOptions(), as_reference(f"{repo}:1.0")) as store:
        judged = {r.digest: r for r in scan(store, [digest]).referrers}
    assert judged[bad.digest].trust == judged[worse.digest].trust == "malformed"
    assert "embedded" in judged[bad.digest].detail and "base64" in judged[worse.digest].detail


def test_a_record_without_data_is_still_read_from_its_blob(registry, repo_name, model, key):
    repo, digest = model
    with open_store(ConnectionOptions(), as_reference(f"{repo}:1.0")) as store:
        root = store.resolve("1.0")
        # As ocimodel wrote records before, and as other tools do: the blob only.
        layer = push_bytes(store, UNSIGNED_STATEMENT, _statement(digest, 0.88))
        old, _ = push_referrer(store, root, UNSIGNED_STATEMENT, [layer], {ANNOTATION_STATEMENT_PREDICATE: EVALUATION_PREDICATE})
        # Larger than the bound: pushed as a blob only, read the same way.
        big = attestation_statement(digest, EVALUATION_PREDICATE, {
            "metrics": [{"name": "accuracy", "value": 0.87}], "time": "2026-12-01T00:00:00Z",
            "notes": "x" * MAX_EMBEDDED}).to_json()
        large = push_record(store, root, UNSIGNED_STATEMENT, UNSIGNED_STATEMENT, big,
                            {ANNOTATION_STATEMENT_PREDICATE: EVALUATION_PREDICATE})
    assert "data" not in _manifest(repo, old.digest)["layers"][0]
    assert "data" not in _manifest(repo, large.digest)["layers"][0]
    with FaultProxy(registry.host) as proxy:
        history = reg.evaluation_history(f"{proxy.host}/{repo_name}:1.0")
        assert proxy.count("GET", r"/blobs/") == 2
    assert _values(history) == [(0.88, "unsigned")]
    with open_store(ConnectionOptions(), as_reference(f"{repo}:1.0")) as store:
        judged = {r.digest: r for r in scan(store, [digest]).referrers}
    # Read in full from its blob (an evaluation refuses notes that long, a statement does not).
    assert judged[large.digest].trust == "unsigned" and judged[large.digest].statement.to_json() == big


def test_copied_records_keep_their_data_and_their_trust(registry, repo_name, model, key, tmp_path):
    repo, _ = model
    reg.record_evaluation(f"{repo}:1.0", {"accuracy": 0.93}, time="2026-10-01T00:00:00Z", key=key[0])
    reg.record_evaluation(f"{repo}:1.0", {"accuracy": 0.91}, time="2026-11-01T00:00:00Z")
    reg.copy(f"{repo}:1.0", f"{repo}-copy:1.0", with_referrers=True)
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"version: 1\nsigners:\n  evaluator: {{key: {key[1]}}}\n")
    with FaultProxy(registry.host) as proxy:
        history = reg.evaluation_history(f"{proxy.host}/{repo_name}-copy:1.0", policy=policy)
        assert proxy.count("GET", r"/blobs/") == 0
    assert _values(history) == [(0.93, "trusted"), (0.91, "unsigned")]
