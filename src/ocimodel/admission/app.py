"""The webhook's HTTP endpoints, a Starlette application (docs/admission.md):

- ``POST /validate``: the validating webhook. Allows the object when every model in it
  passes the policy; denies otherwise, naming the model, the rule and the reason.
- ``POST /mutate``: the mutating webhook. Judges the same way, and when it allows, answers
  a JSONPatch that pins each model reference to the digest that was verified.
- ``GET /healthz`` (the process answers), ``GET /readyz`` (the policy loads),
  ``GET /metrics`` (Prometheus text format).

A body that is not an AdmissionReview is answered 400, or, when its uid can be read, with
a deny that echoes it. The verdicts are computed on worker threads; the event loop only
reads, parses and answers."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ocimodel.admission.metrics import Metrics
from ocimodel.admission.records import RecordWriter
from ocimodel.admission.review import (
    POD_SPEC_PATHS,
    AnnotationPins,
    MalformedReview,
    Pin,
    Review,
    find_models,
    json_patch,
    parse_review,
    pinned_reference,
    response,
    value_at,
)
from ocimodel.admission.verdicts import ModelVerdict, PolicyUnavailable, Verdicts

log = logging.getLogger("ocimodel.admission")

MAX_BODY = 8 * 1024 * 1024  # an object and its old copy, each at most ~1.5 MiB in etcd, with room
PREFIX = "ocimodel admission"
# The paths deploy/ points the API server and the probes at (tests/test_admission_deploy.py).
VALIDATE, MUTATE, HEALTHZ, READYZ, METRICS = "/validate", "/mutate", "/healthz", "/readyz", "/metrics"
# The models an answer's message names: an object may list thousands (the annotation), and
# the message is what kubectl prints and the API server keeps; the log names every one.
MAX_SHOWN = 10


class BodyTooLarge(Exception):
    pass


def create_app(verdicts: Verdicts, metrics: Metrics, records: RecordWriter | None = None,
               read_timeout: float | None = None) -> Starlette:
    # The API server sends its body at once: a client that trickles it (or stops) would hold
    # a connection and this request's task forever. Bounded by the deadline unless told.
    read_timeout = verdicts.deadline if read_timeout is None else read_timeout

    async def validate(request: Request) -> Response:
        return await _answer(request, "validate", verdicts, metrics, records, read_timeout)

    async def mutate(request: Request) -> Response:
        return await _answer(request, "mutate", verdicts, metrics, None, read_timeout)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(request: Request) -> Response:
        try:
            verdicts.policy.current()
        except PolicyUnavailable as exc:
            return PlainTextResponse(f"not ready: {exc}\n", status_code=503)
        return PlainTextResponse("ready\n")

    async def prometheus(request: Request) -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    return Starlette(routes=[
        Route(VALIDATE, validate, methods=["POST"]),
        Route(MUTATE, mutate, methods=["POST"]),
        Route(HEALTHZ, healthz, methods=["GET"]),
        Route(READYZ, readyz, methods=["GET"]),
        Route(METRICS, prometheus, methods=["GET"]),
    ])


async def _answer(request: Request, endpoint: str, verdicts: Verdicts, metrics: Metrics,
                  records: RecordWriter | None, read_timeout: float) -> Response:
    started, arrived = time.perf_counter(), time.monotonic()
    entry: dict[str, Any] = {"event": "admission", "endpoint": endpoint}
    try:
        try:
            with anyio.fail_after(read_timeout):
                body = await _body(request)
        except TimeoutError:
            reason = f"the body was not read within {read_timeout:g} s"
            entry.update(uid=None, verdict="malformed", reason=reason)
            metrics.requests.labels(endpoint=endpoint, result="malformed").inc()
            # Closed: what is left of the body is never read, so the connection cannot be reused.
            timed_out = JSONResponse({"error": f"{PREFIX}: {reason}"}, status_code=408, headers={"connection": "close"})
            return _done(timed_out, entry, started, endpoint, metrics)
        review = parse_review(body)
        entry.update(uid=review.uid, kind=review.kind, namespace=review.namespace, name=review.name,
                     operation=review.operation, dryRun=review.dry_run)
        found = find_models(review) if review.operation in ("CREATE", "UPDATE") else []
    except (MalformedReview, BodyTooLarge) as exc:
        reason = exc.reason if isinstance(exc, MalformedReview) else f"the body is larger than {MAX_BODY} bytes"
        uid = exc.uid if isinstance(exc, MalformedReview) else None
        entry.update(uid=uid, verdict="malformed", reason=reason)
        metrics.requests.labels(endpoint=endpoint, result="malformed").inc()
        if uid is None:
            answer: Response = JSONResponse({"error": f"{PREFIX}: not an AdmissionReview: {reason}"}, status_code=400)
        else:
            answer = JSONResponse(response(uid, False, f"{PREFIX}: malformed request, denied: {reason}"))
        return _done(answer, entry, started, endpoint, metrics)

    judged = verdicts.cached(found) if found else []
    if judged is None:  # some model must be resolved or judged: on a worker thread
        judged = await anyio.to_thread.run_sync(verdicts.judge, found, arrived)
    models = [v for v in judged if v.model]
    seen: set[str] = set()
    for v in models:  # one count per distinct reference
        if v.reference not in seen:
            seen.add(v.reference)
            metrics.verdicts.labels(result="allowed" if v.allowed else "denied").inc()
    metrics.verdicts.labels(result="not_a_model").inc(len({v.reference for v in judged if not v.model}))
    denied = _distinct([v for v in models if not v.allowed])
    entry["models"] = [
        {"reference": v.reference, "digest": v.digest, "allowed": v.allowed, "rule": v.rule, "reason": v.reason,
         "cached": v.cached} for v in _distinct(models)
    ]
    if denied:
        message = f"{PREFIX}: " + "; ".join(v.message() for v in denied[:MAX_SHOWN])
        if len(denied) > MAX_SHOWN:
            message += f"; and {len(denied) - MAX_SHOWN} more models denied (the webhook's log names each)"
        entry.update(verdict="denied", reason=message)
        metrics.requests.labels(endpoint=endpoint, result="denied").inc()
        return _done(JSONResponse(response(review.uid, False, message)), entry, started, endpoint, metrics)
    patch = _patch(review, models) if endpoint == "mutate" else None
    allowed = _distinct(models)
    shown = ", ".join(f"{v.reference} ({v.digest})" for v in allowed[:MAX_SHOWN])
    shown += f" and {len(allowed) - MAX_SHOWN} more" if len(allowed) > MAX_SHOWN else ""
    message = f"{PREFIX}: verified {shown}" if models else ""
    entry.update(verdict="allowed", patched=len(patch or []) // 2)
    metrics.requests.labels(endpoint=endpoint, result="allowed").inc()
    if records is not None and models:
        _record(review, models, records)
    return _done(JSONResponse(response(review.uid, True, message, patch=patch)), entry, started, endpoint, metrics)


def _done(answer: Response, entry: dict[str, Any], started: float, endpoint: str, metrics: Metrics) -> Response:
    seconds = time.perf_counter() - started
    metrics.latency.labels(endpoint=endpoint).observe(seconds)
    entry["ms"] = round(seconds * 1000, 2)
    log.info(entry)
    return answer


async def _body(request: Request) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise BodyTooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


def _distinct(verdicts: list[ModelVerdict]) -> list[ModelVerdict]:
    seen: dict[str, ModelVerdict] = {}
    for v in verdicts:
        seen.setdefault(v.reference, v)
    return list(seen.values())


def _patch(review: Review, models: list[ModelVerdict]) -> list[dict[str, Any]]:
    pins: list[Pin] = []
    annotations: dict[str, AnnotationPins] = {}
    for v in models:
        assert v.digest is not None  # allowed models were resolved
        new = pinned_reference(v.reference, v.digest)
        if v.source == "annotation":
            value = value_at(review.obj, v.pointer)
            if isinstance(value, str):
                annotations.setdefault(v.pointer, AnnotationPins(v.pointer, value)).pinned[v.reference] = new
        else:
            pins.append(Pin(v.pointer, v.reference, new))
    return json_patch(pins, list(annotations.values()))


def _record(review: Review, models: list[ModelVerdict], records: RecordWriter) -> None:
    if review.dry_run or not review.name:
        return
    # A Pod of a ReplicaSet or Job, a ReplicaSet of a Deployment, a Job of a CronJob: its owner
    # was recorded; a record per Pod, rollout or scheduled run would only repeat it. An owner
    # of another kind (a RayCluster, a KServe InferenceService...) is never judged here, so
    # the object it owns is recorded itself.
    if set(review.owners) & set(POD_SPEC_PATHS):
        return
    target = f"k8s://{review.namespace or 'default'}/{review.kind.lower()}/{review.name}"
    for v in _distinct(models):
        records.submit(pinned_reference(v.reference, v.digest or ""), target)


def json_line(record: logging.LogRecord) -> str:
    """A log record as one JSON line (structured entries are dicts; others a message)."""
    entry = record.msg if isinstance(record.msg, dict) else {"message": record.getMessage()}
    line = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)), "level": record.levelname.lower()}
    line.update(entry)
    return json.dumps(line, separators=(",", ":"), default=str)
