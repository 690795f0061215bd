"""The pure half of the admission webhook (ocimodel.admission.review): where models are
found, how a reference is pinned, what the patch and the answer look like. No registry,
no server: the end-to-end tests are in tests/test_admission.py."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import jsonpatch
import pytest

from ocimodel.admission.review import (
    AnnotationPins,
    MalformedReview,
    Pin,
    find_models,
    json_patch,
    parse_review,
    pinned_reference,
    response,
    split_references,
)

DATA = Path(__file__).parent / "data" / "admission"
DIGEST = "sha256:" + "ab" * 32


def _review(kind: str) -> dict:
    text = (DATA / f"{kind}.json").read_text()
    for name in ("MODEL", "MODEL_AS_IMAGE", "IMAGE", "ANNOTATED"):
        text = text.replace("{{" + name + "}}", f"r.example/{name.lower()}:1")
    return json.loads(text)


@pytest.mark.parametrize(("kind", "base"), [
    ("pod", "/spec"), ("deployment", "/spec/template/spec"), ("statefulset", "/spec/template/spec"),
    ("daemonset", "/spec/template/spec"), ("replicaset", "/spec/template/spec"), ("job", "/spec/template/spec"),
    ("cronjob", "/spec/jobTemplate/spec/template/spec"),
])
def test_every_place_a_model_can_be_named_is_found(kind, base):
    found = find_models(parse_review(json.dumps(_review(kind)).encode()))
    places = {(f.pointer, f.reference, f.candidate) for f in found}
    assert (f"{base}/volumes/0/image/reference", "r.example/model:1", False) in places
    assert (f"{base}/initContainers/0/image", "r.example/model_as_image:1", True) in places
    assert (f"{base}/containers/0/image", "r.example/image:1", True) in places  # a candidate: looked up
    annotated = [f for f in found if f.source == "annotation"]
    # The object's annotation, and the pod template's for the workload kinds.
    assert {f.pointer for f in annotated} >= {"/metadata/annotations/models.ocimodel.dev~1references"}
    assert len(annotated) == (1 if kind == "pod" else 2)


def test_references_pin_to_the_digest_keeping_the_name_as_written():
    assert pinned_reference("localhost:5000/team/m:1.0", DIGEST) == f"localhost:5000/team/m@{DIGEST}"
    assert pinned_reference("localhost:5000/team/m", DIGEST) == f"localhost:5000/team/m@{DIGEST}"  # a port, no tag
    assert pinned_reference("team/m:1@sha256:" + "cd" * 32, DIGEST) == f"team/m@{DIGEST}"
    assert split_references(" a:1 ,\nb@x\n\n,c ") == ["a:1", "b@x", "c"]


def test_the_patch_tests_then_replaces_and_applies_to_the_object():
    obj = {"metadata": {"annotations": {"models.ocimodel.dev/references": "r/a:1, r/b:2"}},
           "spec": {"volumes": [{"image": {"reference": "r/a:1"}}]}}
    pointer = "/metadata/annotations/models.ocimodel.dev~1references"
    entry = AnnotationPins(pointer, "r/a:1, r/b:2", {"r/a:1": f"r/a@{DIGEST}"})
    patch = json_patch([Pin("/spec/volumes/0/image/reference", "r/a:1", f"r/a@{DIGEST}")], [entry])
    assert [op["op"] for op in patch] == ["test", "replace", "test", "replace"]
    patched = jsonpatch.apply_patch(obj, patch)
    assert patched["spec"]["volumes"][0]["image"]["reference"] == f"r/a@{DIGEST}"
    assert patched["metadata"]["annotations"]["models.ocimodel.dev/references"] == f"r/a@{DIGEST}, r/b:2"
    # An object that changed since it was judged makes the patch fail instead of pinning
    # something else.
    obj["spec"]["volumes"][0]["image"]["reference"] = "r/other:1"
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.apply_patch(obj, patch)
    answer = response("u-1", True, "ok", patch=patch)["response"]
    assert answer["patchType"] == "JSONPatch" and json.loads(base64.b64decode(answer["patch"])) == patch


@pytest.mark.parametrize(("body", "uid", "reason"), [
    (b"[]", None, "not a JSON object"),
    (b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}', None, "no request"),
    (b'{"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {"uid": "u"}}', "u", "expected"),
    (b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "u", "kind": {"kind": "Pod"},'
     b' "operation": "CREATE"}}', "u", "without an object"),
    (b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "u", "kind": {"kind": "Pod"},'
     b' "operation": "CREATE", "object": {}, "dryRun": "yes"}}', "u", "dryRun"),
    (b'{"request": ' + b"[" * 200_000, None, "nested too deeply"),  # within the body limit
])
def test_a_malformed_review_says_why_and_keeps_a_readable_uid(body, uid, reason):
    with pytest.raises(MalformedReview) as raised:
        parse_review(body)
    assert raised.value.uid == uid and reason in raised.value.reason


def test_other_kinds_and_deletes_name_no_models():
    document = _review("pod")
    document["request"]["kind"]["kind"] = "ConfigMap"
    assert find_models(parse_review(json.dumps(document).encode())) == []
    document = _review("pod")
    document["request"].update(operation="DELETE", object=None)
    assert find_models(parse_review(json.dumps(document).encode())) == []
