"""An AdmissionReview (``admission.k8s.io/v1``) read, the model references in its object
found, and the answer written. Pure: no registry, no clock, no I/O.

Where a model can be named in a pod spec (docs/admission.md):

- an image volume, ``spec.volumes[].image.reference`` (Kubernetes 1.31+): always a model
  candidate, an OCI artifact mounted read-only into the pod;
- a container (init, regular, ephemeral) image: a *candidate*, judged a model only when
  its manifest says so (the caller looks; an ordinary container image is left alone);
- the annotation ``models.ocimodel.dev/references`` of the object or of its pod template:
  references separated by commas or newlines, each a model.

The pod spec is at ``spec`` of a Pod, ``spec.template.spec`` of a Deployment, StatefulSet,
DaemonSet, ReplicaSet and Job, and ``spec.jobTemplate.spec.template.spec`` of a CronJob.
Each place found carries its JSON pointer (RFC 6901), so the mutating answer can pin it."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

API_VERSION = "admission.k8s.io/v1"
ANNOTATION = "models.ocimodel.dev/references"
MAX_REFERENCE = 4096  # longer than any reference a registry takes: refused, not parsed

# Where the pod spec of each kind is, as a path of keys from the object.
POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


class MalformedReview(ValueError):
    """The body is not an AdmissionReview this webhook can answer. ``uid`` is the request's
    uid when it could be read (then the answer is a deny that echoes it), else None (then
    the answer is HTTP 400)."""

    def __init__(self, reason: str, uid: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.uid = uid


@dataclass(frozen=True)
class Review:
    uid: str
    kind: str  # request.kind.kind: Pod, Deployment, ...
    namespace: str
    name: str  # metadata.name, else metadata.generateName (a Pod of a ReplicaSet has none yet)
    operation: str  # CREATE, UPDATE, DELETE, CONNECT
    dry_run: bool
    sub_resource: str
    obj: dict[str, Any] | None
    owned: bool  # the object has ownerReferences (a Pod of a ReplicaSet, a Job of a CronJob)
    owners: tuple[str, ...] = ()  # the kinds of its ownerReferences (ReplicaSet, CronJob, ...)


@dataclass(frozen=True)
class Found:
    """A reference named in the object. ``candidate``: a container image, a model only if
    its manifest says so. ``pointer``: the JSON pointer of the string that holds it (for an
    annotation, of the whole annotation value)."""

    reference: str
    pointer: str
    source: str  # "volume <name>", "container <name>", "initContainer <name>", "annotation"
    candidate: bool = False


@dataclass
class Pin:
    """A reference to replace by its digest-pinned form."""

    pointer: str
    old: str
    new: str


@dataclass
class AnnotationPins:
    pointer: str
    value: str
    pinned: dict[str, str] = field(default_factory=dict)  # reference as written -> pinned


def parse_review(body: bytes) -> Review:
    """The request of an AdmissionReview; raises MalformedReview."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedReview(f"the body is not JSON: {str(exc)[:120]}") from None
    except RecursionError:  # a malformed answer (400), not an unhandled error of the server
        raise MalformedReview("the body is not JSON: nested too deeply") from None
    if not isinstance(document, dict):
        raise MalformedReview("the body is not a JSON object")
    request = document.get("request")
    uid = request.get("uid") if isinstance(request, dict) else None
    uid = uid if isinstance(uid, str) and 0 < len(uid) <= 256 else None
    if document.get("apiVersion") != API_VERSION or document.get("kind") != "AdmissionReview":
        raise MalformedReview(
            f"expected apiVersion {API_VERSION} kind AdmissionReview, got "
            f"{_short(document.get('apiVersion'))} {_short(document.get('kind'))}", uid)
    if not isinstance(request, dict):
        raise MalformedReview("the AdmissionReview has no request")
    if uid is None:
        raise MalformedReview("the request has no uid")
    kind = request.get("kind")
    kind_name = kind.get("kind") if isinstance(kind, dict) else None
    if not isinstance(kind_name, str) or not kind_name:
        raise MalformedReview("the request has no kind", uid)
    operation = request.get("operation")
    if not isinstance(operation, str):
        raise MalformedReview("the request has no operation", uid)
    obj = request.get("object")
    if obj is not None and not isinstance(obj, dict):
        raise MalformedReview("the request's object is not a JSON object", uid)
    if obj is None and operation in ("CREATE", "UPDATE"):
        raise MalformedReview(f"a {operation} request without an object", uid)
    dry_run = request.get("dryRun", False)
    if not isinstance(dry_run, bool):
        raise MalformedReview("dryRun is not a boolean", uid)
    metadata = (obj or {}).get("metadata") or {}
    if not isinstance(metadata, dict):
        raise MalformedReview("the object's metadata is not a JSON object", uid)
    name = request.get("name") or metadata.get("name") or metadata.get("generateName") or ""
    namespace = request.get("namespace") or metadata.get("namespace") or ""
    return Review(
        uid=uid, kind=kind_name, namespace=str(namespace), name=str(name), operation=operation, dry_run=dry_run,
        sub_resource=str(request.get("subResource") or ""), obj=obj, owned=bool(metadata.get("ownerReferences")),
        owners=_owner_kinds(metadata.get("ownerReferences")),
    )


def find_models(review: Review) -> list[Found]:
    """Every place in the object that names a model or may (a container image). Raises
    MalformedReview when a place has the wrong shape (a volume that is not an object, an
    image that is not a string): an object the API server would not have sent."""
    obj = review.obj
    path = POD_SPEC_PATHS.get(review.kind)
    if obj is None or path is None:
        return []
    found: list[Found] = list(_annotation(obj, ("metadata",), review.uid))
    spec: Any = obj
    for key in path:
        spec = spec.get(key) if isinstance(spec, dict) else None
    if spec is None:
        return found
    if not isinstance(spec, dict):
        raise MalformedReview(f"{'.'.join(path)} is not a JSON object", review.uid)
    if len(path) > 1:  # a pod template has metadata of its own
        found += _annotation(obj, (*path[:-1], "metadata"), review.uid)
    base = "/" + "/".join(path)
    for i, volume in enumerate(_list(spec, "volumes", review.uid)):
        image = volume.get("image")
        if image is None:
            continue
        reference = image.get("reference") if isinstance(image, dict) else None
        if not isinstance(reference, str):
            raise MalformedReview(f"volume {_short(volume.get('name'))}: image.reference is not a string", review.uid)
        found.append(Found(_checked(reference, review.uid), f"{base}/volumes/{i}/image/reference",
                           f"volume {volume.get('name')}"))
    for field_name in CONTAINER_LISTS:
        for i, container in enumerate(_list(spec, field_name, review.uid)):
            image = container.get("image")
            if image is None:  # a Deployment may leave it to a later mutating webhook
                continue
            if not isinstance(image, str):
                raise MalformedReview(f"{field_name}[{i}].image is not a string", review.uid)
            found.append(Found(_checked(image, review.uid), f"{base}/{field_name}/{i}/image",
                               f"{field_name[:-1]} {container.get('name')}", candidate=True))
    return found


def split_references(value: str) -> list[str]:
    """The references an annotation value lists: separated by commas or newlines, blank
    entries ignored."""
    return [part.strip() for part in value.replace("\n", ",").split(",") if part.strip()]


def pinned_reference(written: str, digest: str) -> str:
    """``written`` (as the pod spec has it: ``[registry/]repository[:tag][@digest]``) with
    its tag or digest replaced by ``digest``: ``repo@sha256:...``. The name stays as
    written, so the node resolves the same registry and repository."""
    name = written.rsplit("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:  # a tag, not a registry's port
        name = name[:colon]
    return f"{name}@{digest}"


def json_patch(pins: list[Pin], annotations: list[AnnotationPins]) -> list[dict[str, Any]]:
    """RFC 6902 operations: a ``test`` of the old value, then its ``replace``, for each
    pinned place (the test makes the patch fail on an object that changed meanwhile,
    instead of overwriting something else)."""
    ops: list[dict[str, Any]] = []
    for pin in pins:
        if pin.old == pin.new:
            continue
        ops.append({"op": "test", "path": pin.pointer, "value": pin.old})
        ops.append({"op": "replace", "path": pin.pointer, "value": pin.new})
    for entry in annotations:
        parts = [entry.pinned.get(ref, ref) for ref in split_references(entry.value)]
        value = ("\n" if "\n" in entry.value.strip() else ", ").join(parts)
        if value == entry.value:
            continue
        ops.append({"op": "test", "path": entry.pointer, "value": entry.value})
        ops.append({"op": "replace", "path": entry.pointer, "value": value})
    return ops


def response(uid: str, allowed: bool, message: str, *, patch: list[dict[str, Any]] | None = None,
             warnings: list[str] | None = None) -> dict[str, Any]:
    """The AdmissionReview answer. A deny carries status 403 and the message the user sees
    (kubectl prints it after 'admission webhook ... denied the request:')."""
    answer: dict[str, Any] = {"uid": uid, "allowed": allowed}
    if allowed:
        if message:
            answer["status"] = {"code": 200, "message": message}
    else:
        answer["status"] = {"code": 403, "reason": "Forbidden", "message": message}
    if patch:
        answer["patchType"] = "JSONPatch"
        answer["patch"] = base64.b64encode(json.dumps(patch, separators=(",", ":")).encode()).decode()
    if warnings:
        answer["warnings"] = warnings[:20]
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": answer}


def pointer_token(key: str) -> str:
    """One key as a JSON pointer token (RFC 6901: ``~`` -> ``~0``, ``/`` -> ``~1``)."""
    return key.replace("~", "~0").replace("/", "~1")


# -- helpers ------------------------------------------------------------------------------


def _annotation(obj: dict[str, Any], path: tuple[str, ...], uid: str) -> Iterator[Found]:
    metadata: Any = obj
    for key in path:
        metadata = metadata.get(key) if isinstance(metadata, dict) else None
    if not isinstance(metadata, dict):
        return
    annotations = metadata.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise MalformedReview(f"{'.'.join(path)}.annotations is not a JSON object", uid)
    value = annotations.get(ANNOTATION)
    if value is None:
        return
    if not isinstance(value, str):
        raise MalformedReview(f"the annotation {ANNOTATION} is not a string", uid)
    pointer = "/" + "/".join((*path, "annotations", pointer_token(ANNOTATION)))
    for reference in split_references(value):
        yield Found(_checked(reference, uid), pointer, "annotation")


def _owner_kinds(references: Any) -> tuple[str, ...]:
    if not isinstance(references, list):
        return ()
    return tuple(r["kind"] for r in references if isinstance(r, dict) and isinstance(r.get("kind"), str))


def _list(spec: dict[str, Any], key: str, uid: str) -> list[dict[str, Any]]:
    items = spec.get(key) or []
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise MalformedReview(f"{key} is not a list of objects", uid)
    return items


def _checked(reference: str, uid: str) -> str:
    if not reference or len(reference) > MAX_REFERENCE:
        raise MalformedReview(f"a reference of {len(reference)} characters", uid)
    return reference


def _short(value: Any) -> str:
    return repr(value)[:60]


def value_at(obj: Any, pointer: str) -> Any:
    """The value at a JSON pointer of ``obj`` (None when there is none)."""
    for token in pointer.split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(obj, dict):
            obj = obj.get(token)
        elif isinstance(obj, list) and token.isdigit() and int(token) < len(obj):
            obj = obj[int(token)]
        else:
            return None
    return obj
