"""The model card: what a user says about a model at push time, as a strict pydantic model.

Every field is optional; a card with nothing in it is valid (a push without metadata).
Unknown fields are refused everywhere (a typo must not vanish silently), types are strict
(``"0.93"`` is not a number, ``1`` is not a string), and the field descriptions end up in the
JSON Schema (``model-card.schema.json``) so that the schema teaches how to write a card.

Where the card is stored is the business of :mod:`ocimodel.metadata.encoding`; where it
comes from (file, flags, detection) is :mod:`ocimodel.metadata.sources`."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import parse_qsl, urlsplit

from packaging.licenses import InvalidLicenseExpression, canonicalize_license_expression
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from ocimodel.errors import InvalidDigest, OcimodelError, UsageError
from ocimodel.oci.digest import validate_digest

__all__ = [
    "RELATIONS",
    "BaseModelRef",
    "Code",
    "Dataset",
    "Environment",
    "MetricValue",
    "ModelCard",
    "Relation",
    "check_spdx_expression",
    "has_credentials",
    "metric_value",
    "validate_card",
]

# ---------------------------------------------------------------------------------------
# Value checks shared by the model and the flag parser


# packaging.licenses (the PEP 639 subset of SPDX) has no DocumentRef-x:LicenseRef-y, which
# SPDX allows for a license defined in another SPDX document: it is checked as LicenseRef-y.
_SPDX_DOCUMENT_REF = re.compile(r"DocumentRef-[A-Za-z0-9.-]+:(?=LicenseRef-)")
_SPDX_WORD = re.compile(r"[^\s()]+")
_SPDX_OPERATORS = ("AND", "OR", "WITH")


def check_spdx_expression(text: str) -> str:
    """Return ``text`` if it is an SPDX license expression, else raise ValueError.

    Checked offline by ``packaging.licenses``: identifiers and exceptions must be on the
    SPDX license list it ships (any case: ``mit`` is MIT), or be ``LicenseRef-<name>`` /
    ``DocumentRef-<doc>:LicenseRef-<name>``; ``AND`` / ``OR`` join, ``WITH`` adds an
    exception, parentheses group. Stricter than the library where the value would read two
    ways: operators must be upper case (``MIT and BSD`` may be a license name typed loosely)
    and the text has no surrounding blanks. The text is kept as written, not normalised."""
    if not text.strip() or text.strip() != text:
        raise ValueError(f"not an SPDX license expression: {text[:80]!r}")
    for word in _SPDX_WORD.findall(text):
        if word.upper() in _SPDX_OPERATORS and word not in _SPDX_OPERATORS:
            raise ValueError(f"not an SPDX license expression (operators are upper-case AND, OR, WITH): {text[:80]!r}")
    try:
        canonicalize_license_expression(_SPDX_DOCUMENT_REF.sub("", text))
    except InvalidLicenseExpression as exc:
        why = str(exc).split(":", 1)[0].lower()  # it quotes the text lower-cased; we quote it as given
        if why == "unknown license":
            why += "; one not on the SPDX list is written LicenseRef-<name>"
        detail = "" if why == "invalid license expression" else f" ({why})"
        raise ValueError(f"not an SPDX license expression{detail}: {text[:80]!r}{_closest(text)}") from None
    return text


def _closest(text: str) -> str:
    # A typo (Apache2, GPL-3) is the usual cause: name the ids it most looks like.
    from ocimodel.licensing.expression import closest_ids, unknown_ids

    hints = [f"{word!r}: did you mean {', '.join(ids)}?" for word in unknown_ids(text)[:3] if (ids := closest_ids(word))]
    return "; " + "; ".join(hints) if hints else ""


# Query parameters that carry secrets in URLs people copy around (presigned S3 / GCS / Azure
# URLs, OAuth tokens): such a URL is refused rather than recorded in a signed manifest.
_SECRET_QUERY = re.compile(
    r"^(x-amz-(signature|credential|security-token)|x-goog-(signature|credential)|sig|signature"
    r"|token|access_token|api_key|apikey|key|password|secret|client_secret|auth)$",
    re.IGNORECASE,
)
_USER_ONLY_SCHEMES = frozenset({"ssh", "git+ssh", "ssh+git", "sftp"})


def has_credentials(url: str) -> bool:
    """True if ``url`` carries something that looks like a secret: a password
    (``scheme://user:pass@``), any user part on http(s) (tokens are sent as user names),
    or a query parameter such as ``token=`` / ``X-Amz-Signature=``. ``ssh://git@host`` and
    the scp form ``git@host:path`` only name a user and are fine."""
    if "://" in url:
        try:
            parts = urlsplit(url)
        except ValueError:
            return False
        userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
        if userinfo and (":" in userinfo or parts.scheme.lower() not in _USER_ONLY_SCHEMES):
            return True
        return any(_SECRET_QUERY.match(key) for key, _ in parse_qsl(parts.query, keep_blank_values=True))
    head = url.split("/", 1)[0]
    return "@" in head and ":" in head.rpartition("@")[0]


def _no_credentials(url: str) -> str:
    if has_credentials(url):
        raise ValueError("contains credentials (a password, token or signature); record the URL without them")
    return url


def _digest(value: str) -> str:
    try:
        return validate_digest(value)
    except InvalidDigest as exc:
        raise ValueError(exc.message) from None


def _finite_number(value: Any) -> Any:
    """Numbers only: no booleans, no strings that look like numbers, no NaN or infinity
    (JSON has none, and a metric of NaN compares with nothing)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"not a number: {_short(value)}")  # noqa: TRY004 - pydantic reports ValueError only
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"not a finite number: {_short(value)}")
    return value


def _json_scalar(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"not a finite number: {_short(value)}")
        return value
    raise ValueError(f"not a JSON scalar (string, number, true/false or null): {_short(value)}")


def _utc_created(value: Any) -> Any:
    # RFC 3339 text or a datetime; pydantic would also take a Unix time, which no one means.
    if not isinstance(value, (str, datetime)):
        raise ValueError(f"not an RFC 3339 time: {_short(value)}")  # noqa: TRY004 - pydantic reports ValueError only
    return value


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------
# Field types

_LINE = r"^[^\x00-\x1f\x7f]+$"  # one line of text: no control characters
_WORD = r"^[A-Za-z0-9][A-Za-z0-9._+/:-]*$"  # framework, format, task, tag
_KEY = r"^[A-Za-z0-9_][A-Za-z0-9_.:/-]*$"  # metric and hyperparameter names

Line = Annotated[StrictStr, StringConstraints(min_length=1, max_length=256, pattern=_LINE)]
Word = Annotated[StrictStr, StringConstraints(min_length=1, max_length=64, pattern=_WORD)]
Key = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=_KEY)]
Uri = Annotated[
    StrictStr,
    StringConstraints(min_length=1, max_length=2048, pattern=r"^\S+$"),
    AfterValidator(_no_credentials),
]
DigestStr = Annotated[
    StrictStr,
    AfterValidator(_digest),
    Field(
        description="An OCI digest: `sha256:` and 64 lower-case hex digits (or `sha512:` and 128).",
        json_schema_extra={"pattern": r"^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$"},
    ),
]
License = Annotated[
    StrictStr,
    AfterValidator(check_spdx_expression),
    Field(
        max_length=512,
        description=(
            "An SPDX license identifier or expression, e.g. `Apache-2.0`, `MIT OR Apache-2.0`, "
            "`GPL-2.0-only WITH Classpath-exception-2.0`, `LicenseRef-my-license`. Ids and "
            "exceptions are from the SPDX license list; any other license is `LicenseRef-<name>`. "
            "Operators are upper-case AND, OR, WITH; parentheses group."
        ),
    ),
]
Number = Annotated[StrictInt | StrictFloat, BeforeValidator(_finite_number)]
Scalar = Annotated[StrictStr | StrictBool | StrictInt | StrictFloat | None, BeforeValidator(_json_scalar)]

Relation = Literal["fine-tune", "quantize", "distill", "merge", "adapter"]
RELATIONS: tuple[str, ...] = ("fine-tune", "quantize", "distill", "merge", "adapter")

_DIGEST_SUFFIX = re.compile(r"^(?P<ref>.+)@(?P<digest>sha(?:256|512):[^@]*)$")


def split_digest(text: str) -> tuple[str, str | None]:
    """``REF@sha256:HEX`` -> (REF, sha256:HEX); anything else -> (text, None).

    Only a ``sha256:`` / ``sha512:`` tail after the last ``@`` counts, so a URI such as
    ``ssh://git@host/x`` keeps its ``@``. The digest itself is validated by the model."""
    match = _DIGEST_SUFFIX.match(text)
    if match is None:
        return text, None
    return match.group("ref"), match.group("digest")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MetricValue(_Strict):
    """A metric with the data it was measured on."""

    value: Number = Field(description="The measured value (a finite JSON number).")
    dataset: Line | None = Field(
        default=None, description="Name or URI of the evaluation dataset, e.g. `squad` or `hf://datasets/squad`."
    )
    split: Line | None = Field(default=None, description="The dataset split, e.g. `validation` or `test`.")


def _metric_kind(value: Any) -> str:
    return "detailed" if isinstance(value, (Mapping, MetricValue)) else "number"


Metric = Annotated[
    Annotated[Number, Tag("number")] | Annotated[MetricValue, Tag("detailed")],
    Discriminator(_metric_kind),
]


def metric_value(metric: float | MetricValue) -> int | float:
    """The number of a metric, whichever form it was given in."""
    return metric.value if isinstance(metric, MetricValue) else metric


class _WithDigest(_Strict):
    """Accepts ``...@sha256:HEX`` in the reference/URI when no separate digest is given."""

    ref_field: ClassVar[str] = ""

    @model_validator(mode="before")
    @classmethod
    def _split_inline_digest(cls, data: Any) -> Any:
        field = cls.ref_field
        if isinstance(data, Mapping) and isinstance(data.get(field), str):
            ref, digest = split_digest(data[field])
            if digest is not None:
                given = data.get("digest")
                if given is not None and given != digest:
                    raise ValueError(f"{field} names digest {digest} but digest is {given}")
                data = {**data, field: ref, "digest": digest}
        return data


class Dataset(_WithDigest):
    """A dataset the model was trained or fine-tuned on."""

    ref_field: ClassVar[str] = "uri"

    uri: Uri = Field(
        description=(
            "Where the dataset is: a URI such as `https://...`, `s3://bucket/path`, "
            "`hf://datasets/org/name` or an OCI reference. Credentials are refused. "
            "`URI@sha256:HEX` is accepted and split into uri and digest."
        )
    )
    digest: DigestStr | None = Field(
        default=None, description="Digest of the dataset content (or of its manifest), `sha256:<64 hex>`."
    )


class BaseModelRef(_WithDigest):
    """A model this one was derived from."""

    ref_field: ClassVar[str] = "reference"

    reference: Annotated[
        StrictStr, StringConstraints(min_length=1, max_length=512, pattern=r"^\S+$"), AfterValidator(_no_credentials)
    ] = Field(
        description=(
            "The parent model: an OCI reference (`registry/repo:tag`), `oci:PATH:TAG`, or another "
            "hub's id (`hf://meta-llama/Llama-3-8B`). `REF@sha256:HEX` is accepted and split."
        )
    )
    digest: DigestStr | None = Field(
        default=None, description="Manifest digest of the parent, so the link survives tag moves."
    )
    relation: Relation = Field(
        default="fine-tune",
        description="How this model was derived: fine-tune, quantize, distill, merge or adapter.",
    )


class Code(_Strict):
    """The source code that produced the model (detected from git when not given)."""

    repository: Uri | None = Field(
        default=None,
        description=(
            "Repository URL, e.g. `https://github.com/org/repo.git` or `git@github.com:org/repo.git`. "
            "Credentials are refused (and stripped from a detected git remote)."
        ),
    )
    commit: Annotated[StrictStr, StringConstraints(min_length=1, max_length=256, pattern=r"^\S+$")] | None = Field(
        default=None,
        description=(
            "The source revision (ModelPack `descriptor.revision`): best the full commit hash, "
            "as detected from git; a tag or other revision name is accepted."
        ),
    )
    dirty: StrictBool | None = Field(
        default=None, description="True if the working tree had uncommitted changes (`git status --porcelain`)."
    )


class Environment(_Strict):
    """The software the model was produced with."""

    python: Annotated[StrictStr, StringConstraints(max_length=64, pattern=r"^[0-9]+(\.[0-9]+)*[A-Za-z0-9.+-]*$")] | None = (
        Field(default=None, description="Python version, e.g. `3.11.9`.")
    )
    packages: dict[
        Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")],
        Annotated[StrictStr, StringConstraints(min_length=1, max_length=128, pattern=r"^\S+$")],
    ] = Field(
        default_factory=dict,
        max_length=256,
        json_schema_extra={"additionalProperties": False},
        description="Distribution name -> version, e.g. `{torch: 2.3.1, transformers: 4.41.2}`.",
    )


def _unique(values: list[Any]) -> list[Any]:
    seen: list[Any] = []
    for value in values:
        if value in seen:
            raise ValueError(f"duplicate entry: {_short(value.model_dump(exclude_none=True) if isinstance(value, BaseModel) else value)}")
        seen.append(value)
    return values


class ModelCard(_Strict):
    """What is recorded about a model at push time. Written in `ocimodel.yaml`
    (or `ocimodel.yml` / `ocimodel.json`) next to the model, given as push flags, or
    detected (git, Python environment); stored in the ModelPack config where the spec has a
    field for it and in `dev.ocimodel.*` manifest annotations otherwise, so it is covered by
    the manifest digest and by any signature over it. Every field is optional."""

    model_config = ConfigDict(
        extra="forbid",
        title="ModelCard",
        json_schema_extra={
            "examples": [
                {
                    "name": "sentiment-bert",
                    "version": "1.4.0",
                    "licenses": ["Apache-2.0"],
                    "framework": "transformers",
                    "task": "text-classification",
                    "tags": ["nlp", "english"],
                    "metrics": {"accuracy": 0.931, "f1": {"value": 0.902, "dataset": "sst2", "split": "validation"}},
                    "hyperparameters": {"learning_rate": 3e-4, "epochs": 3, "optimizer": "adamw"},
                    "datasets": [{"uri": "hf://datasets/stanfordnlp/sst2"}],
                    "base_models": [{"reference": "hf://google-bert/bert-base-uncased", "relation": "fine-tune"}],
                }
            ]
        },
    )

    name: Line | None = Field(default=None, description="Model name (ModelPack `descriptor.name`).")
    version: Annotated[StrictStr, StringConstraints(min_length=1, max_length=128, pattern=_LINE)] | None = Field(
        default=None,
        description="Model version (ModelPack `descriptor.version`). A string: quote it in YAML (`version: \"1.10\"`).",
    )
    description: Annotated[StrictStr, StringConstraints(min_length=1, max_length=16384)] | None = Field(
        default=None, description="What the model is and does (ModelPack `descriptor.description`)."
    )
    authors: Annotated[list[Line], AfterValidator(_unique)] = Field(
        default_factory=list, max_length=100, description="Authors, e.g. `Jane Doe <jane@example.com>`."
    )
    licenses: Annotated[list[License], AfterValidator(_unique)] = Field(
        default_factory=list, max_length=32, description="SPDX license identifiers or expressions."
    )
    framework: Word | None = Field(
        default=None, description="Framework the model is built with, e.g. `pytorch`, `transformers`, `sklearn`, `onnx`."
    )
    format: Word | None = Field(
        default=None,
        description="Weight file format (ModelPack `config.format`), e.g. `safetensors`, `gguf`, `onnx`, `pickle`.",
    )
    formats: Annotated[list[Word], AfterValidator(_unique)] = Field(
        default_factory=list,
        max_length=16,
        description=(
            "Every weight file format of a model that has several (e.g. `safetensors` and `pickle`), "
            "the main one first; detected at push. `format` holds the main one, as ModelPack has room for one."
        ),
    )
    task: Word | None = Field(
        default=None, description="What the model does, e.g. `text-classification`, `text-generation`, `object-detection`."
    )
    tags: Annotated[list[Word], AfterValidator(_unique)] = Field(
        default_factory=list, max_length=64, description="Free keywords for search, e.g. `nlp`, `production`."
    )
    metrics: dict[Key, Metric] = Field(
        default_factory=dict,
        max_length=512,
        json_schema_extra={"additionalProperties": False},
        description=(
            "Evaluation results: name -> number, or name -> {value, dataset, split}. "
            "Names are `[A-Za-z0-9_.:/-]`, e.g. `accuracy`, `eval/f1`."
        ),
    )
    hyperparameters: dict[Key, Scalar] = Field(
        default_factory=dict,
        max_length=512,
        json_schema_extra={"additionalProperties": False},
        description="Training settings: name -> JSON scalar (string, number, true/false, null).",
    )
    datasets: Annotated[list[Dataset], AfterValidator(_unique)] = Field(
        default_factory=list, max_length=64, description="Training data."
    )
    code: Code | None = Field(default=None, description="Source code that produced the model.")
    base_models: Annotated[list[BaseModelRef], AfterValidator(_unique)] = Field(
        default_factory=list, max_length=32, description="Models this one was derived from (lineage)."
    )
    environment: Environment | None = Field(default=None, description="Software the model was produced with.")
    created: Annotated[AwareDatetime, BeforeValidator(_utc_created)] | None = Field(
        default=None,
        description="When the model was made, RFC 3339 with a zone, e.g. `2024-06-01T12:00:00Z` (ModelPack `descriptor.createdAt`).",
    )

    @field_validator("created")
    @classmethod
    def _to_utc(cls, value: datetime | None) -> datetime | None:
        return value.astimezone(UTC) if value is not None else None

    @model_validator(mode="after")
    def _drop_empty_sections(self) -> ModelCard:
        # An empty section says nothing; None is its one representation (round trips need one).
        if self.code is not None and self.code == Code():
            self.code = None
        if self.environment is not None and self.environment == Environment():
            self.environment = None
        return self

    def is_empty(self) -> bool:
        return self == ModelCard()


# ---------------------------------------------------------------------------------------
# Errors: pydantic's report -> one line naming the field

_FIELD_NAMES = {
    ModelCard: tuple(ModelCard.model_fields),
    MetricValue: tuple(MetricValue.model_fields),
    Dataset: tuple(Dataset.model_fields),
    BaseModelRef: tuple(BaseModelRef.model_fields),
    Code: tuple(Code.model_fields),
    Environment: tuple(Environment.model_fields),
}


_UNION_TAGS = frozenset({"number", "detailed", "int", "float", "str", "bool", "none"})


def _real_loc(data: Any, loc: tuple[Any, ...]) -> list[Any]:
    """The part of a pydantic error location that names things in the input: union tags
    and ``[key]`` markers are dropped by walking the input along the location."""
    path: list[Any] = []
    current = data
    for part in loc:
        if isinstance(current, Mapping) and isinstance(part, str) and part in current or isinstance(current, (list, tuple)) and isinstance(part, int) and 0 <= part < len(current):
            path.append(part)
            current = current[part]
        elif isinstance(current, BaseModel) and isinstance(part, str) and part in type(current).model_fields:
            path.append(part)
            current = getattr(current, part)
        elif part in _UNION_TAGS:
            continue  # a union member pydantic tried, not a place in the input
        elif isinstance(current, (Mapping, BaseModel)) and isinstance(part, str) and not part.startswith("["):
            # A missing or unknown field of an object: it names a field, keep it.
            path.append(part)
            current = None
        else:
            current = None
    return path


def format_loc(path: list[Any]) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text or "(card)"


def _message(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    value = error.get("input")
    if kind == "value_error":
        return str(error["msg"]).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required"
    if kind == "string_type":
        return f"not a string: {_short(value)}"
    if kind == "bool_type":
        return f"not true or false: {_short(value)}"
    if kind in ("list_type", "tuple_type"):
        return f"not a list: {_short(value)}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"not a mapping: {_short(value)}"
    if kind == "string_pattern_mismatch":
        return f"invalid value {_short(value)} (must match {error.get('ctx', {}).get('pattern')})"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "too_long" or kind == "string_too_long":
        return f"too long ({error['msg'][0].lower()}{error['msg'][1:]})"
    if kind == "literal_error":
        return f"{_short(value)} is not one of {error.get('ctx', {}).get('expected')}"
    if kind.startswith(("timezone_aware", "datetime")):
        return f"not an RFC 3339 time with a zone: {_short(value)}"
    return f"{error['msg']}: {_short(value)}"


_CHILDREN: dict[str, type[BaseModel]] = {
    "metrics": MetricValue,
    "datasets": Dataset,
    "base_models": BaseModelRef,
    "code": Code,
    "environment": Environment,
}


def _did_you_mean(path: list[Any]) -> str | None:
    """For an unknown field, the fields of the object it sits in, the closest first."""
    if not path or not isinstance(path[-1], str):
        return None
    model = ModelCard if len(path) == 1 else _CHILDREN.get(str(path[0]))
    if model is None:
        return None
    names = _FIELD_NAMES[model]
    close = difflib.get_close_matches(str(path[-1]), names, n=1)
    suggestion = f"did you mean {close[0]!r}? " if close else ""
    return f"{suggestion}known fields: {', '.join(names)}"


def validate_card(
    data: Any,
    *,
    source: str | None = None,
    error: type[OcimodelError] = UsageError,
    field_sources: Mapping[str, str] | None = None,
) -> ModelCard:
    """``data`` (a mapping, e.g. loaded YAML) as a ModelCard, or ``error`` with a one-line
    message ``metadata: <field>: <problem>``; the hint says where the value came from
    (``source``, or ``field_sources[<top-level field>]``) and how many other problems exist."""
    if isinstance(data, ModelCard):
        return data
    if not isinstance(data, Mapping):
        raise error(
            f"metadata: the card must be a mapping of fields, not {type(data).__name__}",
            hint=f"in {source}" if source else None,
        )
    try:
        return ModelCard.model_validate(data)
    except ValidationError as exc:
        problems = []
        for item in exc.errors():
            path = _real_loc(data, item["loc"])
            problems.append((path, _message(item), item["type"]))
        # The most specific problem first (a long path names the exact value).
        problems.sort(key=lambda p: (-len(p[0]), p[2] != "extra_forbidden"))
        path, message, kind = problems[0]
        hints = []
        where = source
        if field_sources and path and isinstance(path[0], str) and path[0] in field_sources:
            where = field_sources[path[0]]
        if where:
            hints.append(f"from {where}")
        if kind == "extra_forbidden":
            suggestion = _did_you_mean(path)
            if suggestion:
                hints.append(suggestion)
        elif kind == "string_type" and path and path[-1] == "version":
            hints.append('quote it in YAML: version: "1.10"')
        others = len({format_loc(p) for p, _, _ in problems}) - 1
        if others > 0:
            hints.append(f"{others} more problem{'s' if others > 1 else ''}")
        raise error(f"metadata: {format_loc(path)}: {message}", hint="; ".join(hints) or None) from None
