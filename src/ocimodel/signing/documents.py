"""Reading a signed document (a bundle, a DSSE envelope, an in-toto statement) from
untrusted bytes: the checks every one of them gets, each refusal with its own reason.

A size cap before parsing, strict JSON (a key given twice is its own reason, since two
readers could each take another copy), a JSON object at the top, and the model's first
error with where it is. What is particular to each document (media types, ``_type``, the
subject) stays in its module."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ocimodel.errors import InvalidManifest
from ocimodel.oci.models import loads_strict
from ocimodel.signing.errors import Reason, VerificationFailed

Model = TypeVar("Model", bound=BaseModel)

__all__ = ["load_object", "validate_as"]


def load_object(data: bytes, what: str, *, limit: int, malformed: Reason, short: str) -> dict[str, Any]:
    """The JSON object in ``data``; ``what`` names the document in messages, ``short`` in
    the size message."""
    if len(data) > limit:
        raise VerificationFailed(Reason.TOO_LARGE, f"{short} is {len(data)} bytes, over the {limit} limit")
    try:
        document = loads_strict(data, what)
    except InvalidManifest as exc:
        reason = Reason.DUPLICATE_KEY if "duplicate key" in exc.message else malformed
        raise VerificationFailed(reason, exc.message) from None
    if not isinstance(document, dict):
        raise VerificationFailed(malformed, f"{what} is not a JSON object")
    return document


def validate_as(model: type[Model], document: dict[str, Any], what: str, malformed: Reason) -> Model:
    """``document`` as ``model``; the first error, with where it is, is the message."""
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "top level"
        raise VerificationFailed(malformed, f"malformed {what} at {where}: {first['msg']}") from None
