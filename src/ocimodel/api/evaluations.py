"""Evaluation records: how a model was doing, measured after it was pushed, and the
history of those measurements.

    client.record_evaluation("registry/team/sentiment:1.2", {"accuracy": 0.91}, environment="production",
                             dataset="s3://evals/june.parquet@sha256:...", key="evaluator.key")
    client.evaluation_history("registry/team/sentiment:production", metric="accuracy").records

A record is an in-toto statement about the model's digest, predicate type
``https://ocimodel.dev/evaluation/v1`` (:class:`EvaluationPredicate`):

    {"metrics": [{"name": "accuracy", "value": 0.91, "dataset": "s3://evals/june.parquet", "split": "test"}],
     "environment": "production", "time": "2026-06-01T08:00:00Z", "recorder": "alice", "notes": null}

stored as deployment records are (api/deployments.py): a cosign v3 bundle referrer of the
model when signed with a key or keyless, an unsigned in-toto statement referrer otherwise,
and read back with trust marks by ``statements.scan``. A model has any number of them;
they are referrers, so ``copy --with-referrers`` and ``export`` carry them.

History (docs/evaluations.md): the baseline (the metrics of the model card, as pushed)
and every record, oldest first; of one model (REF), of every tagged version (REPO), or of
the versions an alias held (REPO:ALIAS), each record under the version that held the alias
at the record's time, by the promotion history (api/registry.history)."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from ocimodel.api.common import DEFAULT_TAG, as_reference, open_store
from ocimodel.api.deployments import compile_policy
from ocimodel.api.registry import actor
from ocimodel.api.registry import history as alias_history
from ocimodel.api.statements import (
    ANNOTATION_STATEMENT_PREDICATE,
    MALFORMED,
    UNSIGNED,
    model_display_name,
    parse_time,
    reader_threads,
    scan,
    statement_signer,
    tagged,
    write_unsigned,
)
from ocimodel.errors import NotFound, OcimodelError, UsageError
from ocimodel.metadata.card import metric_value
from ocimodel.metadata.encoding import read_card
from ocimodel.oci import mediatypes as mt
from ocimodel.oci.digest import validate_digest
from ocimodel.oci.models import Descriptor, parse_manifest
from ocimodel.settings import cache_dir
from ocimodel.signing.statement import attestation_statement
from ocimodel.targets.contentcache import ContentCache
from ocimodel.targets.remote import RemoteRepository
from ocimodel.threads import map_threads
from ocimodel.transport.connection import ConnectionOptions
from ocimodel.trust.policy import Policy
from ocimodel.trust.sign import attest_model
from ocimodel.trust.verify import KeylessOptions, check_trusted_root
from ocimodel.versiontags import is_version_tag, version_key

EVALUATION_PREDICATE = "https://ocimodel.dev/evaluation/v1"

PathLike = str | os.PathLike[str]
MAX_METRICS = 1000  # per record
MAX_INPUT_BYTES = 1024 * 1024  # a --from file: the statement layer a reader accepts is 1 MiB
MAX_NOTES = 4000
# As the model card's metric names, so a record and the baseline name a metric alike.
METRIC_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.:/-]*$"
_METRIC_NAME = re.compile(METRIC_NAME)
_ENVIRONMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # as deployment records' environments
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DIGEST_TAIL = re.compile(r"^(?P<uri>.+)@(?P<digest>sha(?:256|512):[^@]*)$")
_DURATION = re.compile(r"^(?P<n>[0-9]{1,6})(?P<unit>[mhdw])$")
# A record dated in the future would stay "the latest" until that time: refused, with
# room for clocks that disagree a little.
CLOCK_SKEW = timedelta(minutes=5)


# -- the models -------------------------------------------------------------------------


def _finite(value: Any) -> Any:
    # Numbers only: "0.9" in a JSON file is a mistake, true is not 1, and NaN compares with nothing.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"not a number: {str(value)[:40]!r}")  # noqa: TRY004 - pydantic reports ValueError only
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {value!r}")
    return float(value)


def _dataset(value: str | None) -> str | None:
    if value is None:
        return None
    if _CONTROL.search(value):
        raise ValueError("control characters in the dataset")
    match = _DIGEST_TAIL.match(value)
    if match is not None:
        try:
            validate_digest(match.group("digest"))
        except OcimodelError:
            raise ValueError(f"{match.group('digest')[:80]!r} is not a sha256:<64 hex> (or sha512:<128 hex>) digest") from None
    return value


def _rfc3339(value: str) -> str:
    when = parse_time(value)
    if when is None:
        raise ValueError(f"{str(value)[:64]!r} is not an RFC 3339 time with a zone, e.g. 2026-06-01T08:00:00Z")
    return format_time(when)


def _line(value: str | None) -> str | None:
    if value is not None and _CONTROL.search(value):
        raise ValueError("control characters")
    return value


class EvaluationMetric(BaseModel):
    """One measured value."""

    # Read back, a field a newer version added is ignored; --from refuses unknown fields
    # (a typo), and so does the schema a monitoring job checks its output with.
    model_config = ConfigDict(extra="ignore", json_schema_extra={"additionalProperties": False})

    name: str = Field(min_length=1, max_length=128, pattern=METRIC_NAME, description="The metric, e.g. `accuracy`.")
    value: Annotated[float, BeforeValidator(_finite)] = Field(description="The measured value: a finite number.")
    dataset: Annotated[str | None, AfterValidator(_dataset)] = Field(
        default=None, min_length=1, max_length=2048,
        description="What it was measured on: a name or URI, optionally ending `@sha256:<64 hex>` (the data's digest).",
    )
    split: Annotated[str | None, AfterValidator(_line)] = Field(
        default=None, min_length=1, max_length=256, description="The dataset split, e.g. `test`."
    )


class EvaluationPredicate(BaseModel):
    """The predicate of an evaluation record (``https://ocimodel.dev/evaluation/v1``), and
    the JSON ``ocimodel eval record --from FILE`` reads (which may leave out ``time``:
    then ``--time``, or now)."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"additionalProperties": False})

    metrics: list[EvaluationMetric] = Field(min_length=1, max_length=MAX_METRICS)
    environment: str | None = Field(default=None, pattern=_ENVIRONMENT.pattern,
                                    description="Where it was measured: production, staging...")
    time: Annotated[str, AfterValidator(_rfc3339)] = Field(
        max_length=64, description="When it was measured: RFC 3339 with a zone (stored in UTC)."
    )
    recorder: Annotated[str | None, AfterValidator(_line)] = Field(
        default=None, max_length=200, description="Who recorded it (OCIMODEL_ACTOR, the CI user, or user@host)."
    )
    notes: str | None = Field(default=None, max_length=MAX_NOTES, description="Free text.")


class EvaluationResult(BaseModel):
    """What ``record_evaluation`` wrote."""

    reference: str
    digest: str  # the model's digest
    record: str  # digest of the record's referrer manifest
    signed: bool
    signer: str | None  # the key or keyless signer; None when unsigned
    predicate: EvaluationPredicate


class EvaluationRecord(BaseModel):
    """One point of history as read back: a record, or a baseline (the card's metrics)."""

    repository: str
    version: str | None  # a version tag naming the digest, if any
    digest: str  # the model's digest
    alias: str | None = None  # the alias holding this digest at `time` (history of REPO:ALIAS)
    # RFC 3339 UTC. A baseline's is the push time recorded in the model ("" when the push
    # recorded none: pushes are reproducible by default); it sorts before the version's records.
    time: str
    metrics: list[EvaluationMetric]
    environment: str | None = None
    recorder: str | None = None
    notes: str | None = None
    baseline: bool = False  # True: push-time metrics from the model card
    trust: str | None = None  # trusted | untrusted | signed | unsigned (None for a baseline)
    signers: list[str] = []  # the policy's names of the signers, when trusted
    referrer: str | None = None  # the referrer manifest digest
    identity: str | None = None  # who signed, as the bundle says (verified only when trusted)
    detail: str | None = None  # why it is untrusted


class EvaluationHistory(BaseModel):
    reference: str
    records: list[EvaluationRecord]  # baselines and records, oldest first
    warnings: list[str] = []
    kind: str = "model"  # model (REF), repository (REPO) or alias (REPO:ALIAS)
    policy: bool = False  # whether signed records were checked against a policy


# -- recording ----------------------------------------------------------------------------


def record_evaluation(
    connection: ConnectionOptions,
    reference: str,
    metrics: Mapping[str, float] | Sequence[str | EvaluationMetric | Mapping[str, Any]] | None = None,
    *,
    dataset: str | None = None,
    split: str | None = None,
    environment: str | None = None,
    time: str | datetime | None = None,
    notes: str | None = None,
    from_file: PathLike | None = None,
    key: PathLike | None = None,
    password: str | bytes | None = None,
    keyless: bool = False,
    identity_token: str | None = None,
    trust_config: PathLike | None = None,
    staging: bool = False,
) -> EvaluationResult:
    """Record how the model at ``reference`` measured: ``metrics`` as ``{"accuracy": 0.91}``,
    ``["accuracy=0.91"]`` or :class:`EvaluationMetric` values, and/or ``from_file`` (the
    JSON of an :class:`EvaluationPredicate`, or CSV with a ``metric,value[,dataset,split]``
    header; ``-`` reads standard input). ``dataset`` and ``split`` apply to the metrics
    that name none; ``environment``, ``time`` (default: now) and ``notes`` override the
    file's. Signed with ``key`` (ECDSA P-256 PEM), or keyless (``keyless=True``, or an
    ``identity_token``, ``trust_config`` or ``staging``); unsigned with neither. Bad input
    is a UsageError naming it; nothing is written then."""
    predicate = build_predicate(metrics, dataset=dataset, split=split, environment=environment, time=time,
                                notes=notes, from_file=from_file)
    signer = statement_signer(key, password, keyless, identity_token, trust_config, staging)
    ref = as_reference(reference)
    with open_store(connection, ref, for_write=True) as store:
        root = store.resolve(ref.reference or DEFAULT_TAG)
        statement = attestation_statement(root.digest, EVALUATION_PREDICATE, predicate.model_dump(mode="json"))
        if signer is None:
            written = write_unsigned(store, root, statement)
        else:
            written = attest_model(store, root, statement, signer, name=model_display_name(store, root, ref)).referrer
    return EvaluationResult(
        reference=str(ref), digest=root.digest, record=written.digest, signed=signer is not None,
        signer=signer.description if signer is not None else None, predicate=predicate,
    )


def build_predicate(
    metrics: Mapping[str, float] | Sequence[str | EvaluationMetric | Mapping[str, Any]] | None = None,
    *,
    dataset: str | None = None,
    split: str | None = None,
    environment: str | None = None,
    time: str | datetime | None = None,
    notes: str | None = None,
    from_file: PathLike | None = None,
    now: datetime | None = None,
) -> EvaluationPredicate:
    """The predicate a record would carry, checked (see :func:`record_evaluation`); a
    UsageError naming what is wrong."""
    document: dict[str, Any] = read_input(from_file) if from_file is not None else {"metrics": []}
    document["metrics"] = [*document["metrics"], *_metric_items(metrics)]
    if not document["metrics"]:
        raise UsageError("no metric to record", hint="give --metric NAME=VALUE, or --from FILE")
    if dataset is not None or split is not None:
        for item in document["metrics"]:
            if dataset is not None and item.get("dataset") is None:
                item["dataset"] = dataset
            if split is not None and item.get("split") is None:
                item["split"] = split
    if environment is not None:
        document["environment"] = environment
    if notes is not None:
        document["notes"] = notes
    now = now or datetime.now(timezone.utc)
    if time is not None:
        document["time"] = _time_text(time)
    document.setdefault("time", format_time(now, precise=True))
    document.setdefault("recorder", actor())
    predicate = _validate(document)
    when = parse_time(predicate.time)
    assert when is not None  # validated
    if when > now + CLOCK_SKEW:
        raise UsageError(f"time {predicate.time} is in the future", hint="give the time it was measured, in UTC or with a zone")
    seen: set[tuple[str, str | None, str | None]] = set()
    for m in predicate.metrics:
        if (m.name, m.dataset, m.split) in seen:
            where = f" on {m.dataset}" if m.dataset else ""
            raise UsageError(f"metric {m.name}{where} is given twice", hint="one value per metric, dataset and split")
        seen.add((m.name, m.dataset, m.split))
    return predicate


def parse_metric(text: str) -> dict[str, Any]:
    """``NAME=VALUE`` (``accuracy=0.91``) as a metric item; a UsageError naming it."""
    name, sep, value = str(text).partition("=")
    name, value = name.strip(), value.strip()
    if not sep or not name:
        raise UsageError(f"--metric expects NAME=VALUE, got {str(text)[:80]!r}", hint="e.g. --metric accuracy=0.91")
    return {"name": name, "value": _number(value, f"metric {name[:80]}")}


def read_input(path: PathLike) -> dict[str, Any]:
    """A ``--from`` file as a predicate document: JSON (an :class:`EvaluationPredicate`,
    time optional) or CSV (a header with ``metric`` and ``value`` columns, and optionally
    ``dataset`` and ``split``; one metric a row). ``-``: standard input."""
    shown = "standard input" if str(path) == "-" else str(path)
    if str(path) == "-":
        data = sys.stdin.buffer.read(MAX_INPUT_BYTES + 1)
    else:
        try:
            with open(path, "rb") as handle:
                data = handle.read(MAX_INPUT_BYTES + 1)
        except FileNotFoundError:
            raise UsageError(f"--from {shown}: no such file") from None
        except IsADirectoryError:
            raise UsageError(f"--from {shown} is a directory, not a file") from None
    if len(data) > MAX_INPUT_BYTES:
        raise UsageError(f"--from {shown} is over {MAX_INPUT_BYTES} bytes")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError(f"--from {shown} is not UTF-8 text") from None
    if not text.strip():
        raise UsageError(f"--from {shown} is empty", hint="JSON (an evaluation record) or CSV with a metric,value header")
    if text.lstrip().startswith(("{", "[")):
        return _from_json(text, shown)
    return _from_csv(text, shown)


def _from_json(text: str, shown: str) -> dict[str, Any]:
    try:
        document = json.loads(text, parse_constant=lambda c: _refuse_constant(c, shown))
    except json.JSONDecodeError as exc:
        raise UsageError(f"--from {shown} is not valid JSON: {exc.msg} (line {exc.lineno})") from None
    except RecursionError:  # nesting deeper than the parser goes: a traceback otherwise
        raise UsageError(f"--from {shown} is not valid JSON: nested too deeply") from None
    if not isinstance(document, dict):
        raise UsageError(f"--from {shown}: the JSON must be an object with a metrics list",
                         hint='e.g. {"metrics": [{"name": "accuracy", "value": 0.91}], "time": "2026-06-01T08:00:00Z"}')
    unknown = sorted(set(document) - set(EvaluationPredicate.model_fields))
    if unknown:
        raise UsageError(f"--from {shown}: unknown field {unknown[0][:80]!r}",
                         hint=f"the fields are {', '.join(EvaluationPredicate.model_fields)}")
    metrics = document.get("metrics")
    if not isinstance(metrics, list):
        raise UsageError(f"--from {shown}: metrics must be a list of {{name, value[, dataset, split]}}")
    for i, item in enumerate(metrics):
        if not isinstance(item, dict):
            raise UsageError(f"--from {shown}: metrics[{i}] is not an object")
        extra = sorted(set(item) - set(EvaluationMetric.model_fields))
        if extra:
            raise UsageError(f"--from {shown}: metrics[{i}] has an unknown field {extra[0][:80]!r}",
                             hint="a metric has name, value, dataset and split")
    return {k: v for k, v in document.items() if v is not None or k == "metrics"}


def _refuse_constant(constant: str, shown: str):
    raise UsageError(f"--from {shown}: {constant} is not a value a metric can have", hint="metrics are finite numbers")


def _from_csv(text: str, shown: str) -> dict[str, Any]:
    rows = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    header = [cell.strip().lower() for cell in rows[0]]
    if "metric" not in header or "value" not in header:
        raise UsageError(f"--from {shown}: the CSV header must name metric and value columns (optionally dataset, split)",
                         hint="first line: metric,value,dataset,split")
    unknown = [h for h in header if h not in ("metric", "value", "dataset", "split")]
    if unknown:
        raise UsageError(f"--from {shown}: unknown CSV column {unknown[0][:80]!r}", hint="the columns are metric, value, dataset, split")
    if len(rows) == 1:
        raise UsageError(f"--from {shown} has a header and no metric")
    metrics = []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise UsageError(f"--from {shown}: row {line} has {len(row)} cells, the header {len(header)}")
        cells = {h: cell.strip() for h, cell in zip(header, row)}
        item: dict[str, Any] = {"name": cells["metric"], "value": _number(cells["value"], f"row {line} ({cells['metric'][:80]})")}
        for column in ("dataset", "split"):
            if cells.get(column):
                item[column] = cells[column]
        metrics.append(item)
    return {"metrics": metrics}


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{what}: {text[:80]!r} is not a number", hint="e.g. 0.91") from None
    if not math.isfinite(value):
        raise UsageError(f"{what}: {text[:80]!r} is not a finite number", hint="NaN and infinity compare with nothing")
    return value


def _metric_items(metrics) -> list[dict[str, Any]]:
    if metrics is None:
        return []
    if isinstance(metrics, Mapping):
        return [{"name": str(k), "value": v} for k, v in metrics.items()]
    if isinstance(metrics, (str, bytes)):
        raise UsageError("metrics is a mapping or a list, not one string", hint='e.g. {"accuracy": 0.91} or ["accuracy=0.91"]')
    items = []
    for m in metrics:
        if isinstance(m, str):
            items.append(parse_metric(m))
        elif isinstance(m, EvaluationMetric):
            items.append(m.model_dump())
        elif isinstance(m, Mapping):
            items.append(dict(m))
        else:
            raise UsageError(f"a metric is NAME=VALUE, a mapping or an EvaluationMetric, not {type(m).__name__}")
    return items


def _validate(document: dict[str, Any]) -> EvaluationPredicate:
    try:
        return EvaluationPredicate.model_validate(document)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = _where(error["loc"], document)
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        value = error.get("input")
        if error.get("type") == "string_pattern_mismatch":
            message = f"{str(value)[:80]!r} is not a valid {str(error['loc'][-1])}"
        elif isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value)[:40] not in message:
            message = f"{str(value)[:80]!r}: {message}"
        raise UsageError(f"{where}: {message}", hint=_HINTS.get(str(error["loc"][-1]))) from None


_HINTS = {
    "name": "a metric name is letters, digits and _ . : / - (e.g. accuracy, f1_macro)",
    "time": "RFC 3339 with a zone, e.g. 2026-06-01T08:00:00Z",
    "dataset": "a name or URI, optionally @sha256:<64 hex>",
    "environment": "a name, e.g. production or staging",
    "metrics": "give --metric NAME=VALUE, or --from FILE",
}


def _where(loc: tuple, document: dict[str, Any]) -> str:
    """A pydantic location as the user wrote it: ``metric accuracy: dataset``."""
    if len(loc) >= 3 and loc[0] == "metrics" and isinstance(loc[1], int):
        try:
            name = document["metrics"][loc[1]].get("name")
        except (IndexError, AttributeError, KeyError):
            name = None
        field = loc[2]
        if field == "name":
            return "metric name"
        return f"metric {str(name)[:80]} {field}" if name else f"metrics[{loc[1]}] {field}"
    return ".".join(str(part) for part in loc)


def _time_text(value: str | datetime) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise UsageError(f"time {value.isoformat()} has no zone", hint="give an aware datetime, e.g. in UTC")
        return format_time(value)
    return str(value)


def format_time(when: datetime, *, precise: bool = False) -> str:
    """``when`` in UTC, RFC 3339 with a Z (microseconds when ``precise`` or when it has them)."""
    when = when.astimezone(timezone.utc)
    text = when.isoformat(timespec="microseconds") if precise or when.microsecond else when.isoformat(timespec="seconds")
    return text.replace("+00:00", "Z")


# -- history ------------------------------------------------------------------------------


def evaluation_history(
    connection: ConnectionOptions,
    reference: str,
    *,
    metric: str | Sequence[str] | None = None,
    since: str | datetime | None = None,
    policy: Policy | PathLike | None = None,
    trusted_root: PathLike | None = None,
    offline: bool = True,
) -> EvaluationHistory:
    """The baseline (the card's metrics, as pushed) and every evaluation record, oldest
    first, of ``reference``: one model (``repo:1.2``, ``repo@sha256:...``), every tagged
    version (``repo``), or the versions an alias held (``repo:production``: each record
    under the version that held the alias at its time, by the promotion history; records
    of a version made while it did not hold the alias are left out).

    ``metric``: only these metrics. ``since``: records from this time on (RFC 3339, or
    ``7d``, ``12h``, ``30m``, ``2w`` ago); baselines are kept as the reference point.
    ``policy`` (the verify policy: its signers): each signed record is marked trusted or
    untrusted, and the alias's timeline follows trusted promotion records only."""
    wanted = {metric} if isinstance(metric, str) else set(metric or ())
    for name in wanted:
        if not _METRIC_NAME.match(name):
            raise UsageError(f"--metric {name[:80]!r} is not a metric name", hint=_HINTS["name"])
    start = parse_since(since) if since is not None else None
    trust = compile_policy(policy)
    keyless = KeylessOptions(trusted_root=check_trusted_root(trusted_root), offline=offline)
    ref = as_reference(reference)
    repository = str(ref.with_tag(None).with_digest(None))
    warnings: list[str] = []
    held: list[tuple[datetime, str | None]] | None = None  # the alias's timeline: (since, digest)
    alias = None
    known: dict[str, Descriptor] = {}  # models resolved already: their manifest is not asked for again
    if ref.digest is None and ref.tag is not None and not is_version_tag(ref.tag):
        alias = ref.tag
        held, alias_warnings = _alias_timeline(connection, repository, alias, policy, trusted_root, offline)
        warnings += alias_warnings
    with open_store(connection, ref) as store:
        if held is not None and not any(d for _, d in held):
            # An alias no promotion record moved (`latest`, a tag another tool sets): the
            # model it names now, said so.
            which = "trusted " if trust is not None else ""
            warnings.append(f"no {which}promotion record of {alias}: the history of the model it names now")
            held, alias = None, None
        if held is not None:
            kind, digests, tags = "alias", sorted({d for _, d in held if d}), tagged(store)
        elif ref.digest is not None or ref.tag is not None:
            root = store.resolve(ref.reference or DEFAULT_TAG)
            kind, digests, known = "model", [root.digest], {root.digest: root}
            # A version tag names its model: the other tags are read only to name a digest.
            tags = {ref.tag: digests[0]} if ref.tag is not None and is_version_tag(ref.tag) else tagged(store)
        else:
            kind, tags = "repository", tagged(store, missing_ok=False)  # a typo is not an empty repository
            digests = sorted(set(tags.values()))
            if not digests:
                raise NotFound(f"{repository} has no tagged model", hint=f"`ocimodel versions {repository}` lists the tags")
        versions = _versions(tags)
        baselines = _baselines(store, digests, repository, versions, warnings, connection, known)
        reads = _CachedReads(store) if isinstance(store, RemoteRepository) else store
        found = scan(reads, digests, trust=trust, keyless=keyless, skip=(mt.PROMOTION_ARTIFACT,),
                     workers=reader_threads(connection))
    warnings += found.warnings
    records = _records(found.referrers, repository, versions, warnings)
    if held is not None:
        records = _under_alias(records, held, alias)
        baselines = [b.model_copy(update={"alias": alias if _holder(held, b.time) == b.digest else None}) for b in baselines]
    if start is not None:
        records = [r for r in records if (parse_time(r.time) or start) >= start]
    points = _in_order(baselines, records)
    if wanted:
        points = [p.model_copy(update={"metrics": [m for m in p.metrics if m.name in wanted]}) for p in points]
        points = [p for p in points if p.metrics]
    return EvaluationHistory(reference=str(ref), records=points, warnings=warnings, kind=kind, policy=trust is not None)


def parse_since(value: str | datetime) -> datetime:
    """An RFC 3339 time, or a duration ago: ``30m``, ``12h``, ``7d``, ``2w``."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise UsageError("--since needs a time with a zone")
        return value.astimezone(timezone.utc)
    match = _DURATION.match(value.strip())
    if match:
        unit = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[match.group("unit")]
        return datetime.now(timezone.utc) - timedelta(**{unit: int(match.group("n"))})
    when = parse_time(value)
    if when is None:
        raise UsageError(f"--since {value[:64]!r} is neither an RFC 3339 time nor a duration",
                         hint="e.g. 2026-06-01T00:00:00Z, 2026-06-01, 7d, 12h")
    return when


def _alias_timeline(connection, repository: str, alias: str, policy, trusted_root, offline):
    """Which digest held ``alias`` from when, by its promotion history (the records the
    timeline follows: with a policy, trusted ones), oldest first."""
    try:
        result = alias_history(connection, repository, alias, policy=policy, trusted_root=trusted_root, offline=offline)
    except NotFound:
        return [], []
    held: list[tuple[datetime, str | None]] = []
    for event in result.events:
        when = parse_time(event.time)
        if event.recorded and event.in_timeline and when is not None:
            held.append((when, event.digest))
    warnings = [f"alias {alias}: {w}" for w in result.warnings]
    return held, warnings


def _holder(held: list[tuple[datetime, str | None]], time: str) -> str | None:
    when = parse_time(time)
    if when is None:
        return None
    holder = None
    for start, digest in held:  # in timeline order
        if start <= when:
            holder = digest
    return holder


def _under_alias(records: list[EvaluationRecord], held, alias: str) -> list[EvaluationRecord]:
    return [r.model_copy(update={"alias": alias}) for r in records if _holder(held, r.time) == r.digest]


def _versions(tags: dict[str, str]) -> dict[str, str]:
    """The version each digest is known by: its first version tag in version order."""
    out: dict[str, str] = {}
    for tag in sorted((t for t in tags if is_version_tag(t)), key=version_key):
        out.setdefault(tags[tag], tag)
    return out


def _baselines(store, digests: list[str], repository: str, versions: dict[str, str], warnings: list[str],
               connection, known: dict[str, Descriptor]) -> list[EvaluationRecord]:
    """The metrics each model's card recorded at push time (manifests only, never weights)."""

    def read(digest: str) -> EvaluationRecord | None:
        try:
            # A remote store keeps the manifest its resolve fetched: a model resolved by its
            # tag is not fetched again by its digest.
            descriptor = known.get(digest) or store.resolve(digest)
            manifest = parse_manifest(store.fetch_manifest(descriptor), descriptor.media_type)
        except OcimodelError as exc:
            warnings.append(f"cannot read the model card of {digest}: {exc.message}")
            return None
        annotations = manifest.annotations or {}
        card = read_card(None, annotations).card
        metrics = []
        for name, value in sorted((card.metrics or {}).items()):
            fields = {"name": name, "value": metric_value(value),
                      "dataset": getattr(value, "dataset", None), "split": getattr(value, "split", None)}
            try:
                metrics.append(EvaluationMetric.model_validate(fields))
            except ValidationError:
                warnings.append(f"the card of {digest} has a metric {name[:80]!r} that is not a finite number")
        if not metrics:
            return None
        created = parse_time(annotations.get(mt.ANNOTATION_CREATED))
        return EvaluationRecord(
            repository=repository, version=versions.get(digest), digest=digest, baseline=True,
            time=format_time(created) if created else "", metrics=metrics,
        )

    return [b for b in map_threads(read, digests, reader_threads(connection)) if b is not None]


def _records(referrers, repository: str, versions: dict[str, str], warnings: list[str]) -> list[EvaluationRecord]:
    out = []
    for r in referrers:
        hinted = EVALUATION_PREDICATE in r.annotations.values() or r.annotations.get(ANNOTATION_STATEMENT_PREDICATE) == EVALUATION_PREDICATE
        if r.trust == MALFORMED:
            if hinted:  # said, not dropped: a record that cannot be read still tells someone tried
                warnings.append(f"evaluation record {r.digest} on {r.subject} is not readable: {r.detail}")
            continue
        if r.statement is None or r.statement.predicate_type != EVALUATION_PREDICATE:
            continue
        try:
            predicate = EvaluationPredicate.model_validate(r.statement.predicate or {})
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(p) for p in error["loc"])
            warnings.append(f"evaluation record {r.digest} on {r.subject} is not readable: {where}: {error['msg']}"[:500])
            continue
        out.append(EvaluationRecord(
            repository=repository, version=versions.get(r.subject), digest=r.subject, time=predicate.time,
            metrics=predicate.metrics, environment=predicate.environment, recorder=predicate.recorder,
            notes=predicate.notes, trust=r.trust or UNSIGNED, signers=list(r.signers), referrer=r.digest,
            identity=r.identity, detail=r.detail,
        ))
    return out


class _CachedReads:
    """The store, with the records' manifests and layers kept in the local content cache
    (the one ``search`` keeps manifests in): a record never changes (it is named by its
    digest), so a history read every hour by a monitoring job fetches only the new
    records. Every cached read is checked against its digest, and again by the reader."""

    def __init__(self, target: RemoteRepository) -> None:
        self._target = target
        self._cache = ContentCache(cache_dir() / "manifests")

    def __getattr__(self, name: str) -> Any:  # listing, resolving: always asked
        return getattr(self._target, name)

    def fetch_manifest(self, descriptor: Descriptor) -> bytes:
        data = self._cache.get(descriptor.digest, descriptor.size)
        if data is None:
            data = self._target.fetch_manifest(descriptor)  # checked against the digest
            self._cache.put(descriptor.digest, data)
        return data

    @contextmanager
    def open_blob(self, descriptor: Descriptor) -> Iterator[Iterator[bytes]]:
        if descriptor.size > self._cache.max_bytes:
            with self._target.open_blob(descriptor) as chunks:
                yield chunks
            return
        data = self._cache.get(descriptor.digest, descriptor.size)
        if data is None:
            buffer = bytearray()
            with self._target.open_blob(descriptor) as chunks:
                for chunk in chunks:
                    buffer += chunk
                    if len(buffer) > descriptor.size:
                        break  # the reader refuses it: it is longer than announced
            data = bytes(buffer)
            self._cache.put(descriptor.digest, data)  # kept only if it is what the digest names
        yield iter((data,))


def _in_order(baselines: list[EvaluationRecord], records: list[EvaluationRecord]) -> list[EvaluationRecord]:
    """Oldest first; a baseline with no push time goes just before its version's first
    record; ties by the record's digest, so the order is the same on every read."""
    first: dict[str, datetime] = {}
    for r in records:
        when = parse_time(r.time)
        if when is not None and (r.digest not in first or when < first[r.digest]):
            first[r.digest] = when
    floor = datetime.min.replace(tzinfo=timezone.utc)

    def key(point: EvaluationRecord) -> tuple[datetime, int, str]:
        when = parse_time(point.time) or first.get(point.digest, floor)
        return (when, 0 if point.baseline else 1, point.referrer or point.digest)

    return sorted([*baselines, *records], key=key)


__all__ = [
    "EVALUATION_PREDICATE", "EvaluationHistory", "EvaluationMetric", "EvaluationPredicate", "EvaluationRecord",
    "EvaluationResult", "build_predicate", "evaluation_history", "parse_metric", "parse_since", "read_input",
    "record_evaluation",
]
