"""in-toto Statement v1: what a signature or attestation says about which artifact.

Statements we author are built here and serialised compactly with ``_type`` first, as
cosign writes them. Statements we read are untrusted until a signature over their exact
bytes has verified; even then they are parsed strictly: duplicate keys, a wrong
``_type`` or an empty subject list are refused, because two parsers that disagree about
what a signed document says defeat the signature (docs/threats.md 14)."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ocimodel.errors import UsageError
from ocimodel.oci.digest import algorithm_of, hex_of, validate_digest
from ocimodel.signing.documents import load_object, validate_as
from ocimodel.signing.errors import Reason, VerificationFailed

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
# A statement is the payload of a bundle, which is capped at the same size.
MAX_STATEMENT_BYTES = 10 * 1024 * 1024

_HEX_LENGTH = {"sha256": 64, "sha384": 96, "sha512": 128}
_LOWER_HEX = re.compile(r"^[0-9a-f]+$")


class _Strict(BaseModel):
    # Unknown fields are ignored as the in-toto spec asks; known ones are never coerced.
    model_config = ConfigDict(extra="ignore", populate_by_name=True, strict=True, frozen=True)


class Subject(_Strict):
    """An in-toto ResourceDescriptor as a subject: optional name, digest set."""

    name: str | None = None
    digest: dict[str, str]

    @field_validator("digest")
    @classmethod
    def _digest_set(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("subject digest set is empty")
        for algorithm, encoded in value.items():
            expected = _HEX_LENGTH.get(algorithm)
            # Other algorithms (gitCommit, dirHash...) are allowed but never matched.
            if expected and (len(encoded) != expected or not _LOWER_HEX.match(encoded)):
                raise ValueError(f"{algorithm} digest is not {expected} lower-case hex digits")
        return value

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {}
        if self.name is not None:
            result["name"] = self.name
        result["digest"] = dict(self.digest)
        return result


class Statement(_Strict):
    type: str = Field(alias="_type")
    subject: list[Subject] = Field(min_length=1)
    predicate_type: str = Field(alias="predicateType", min_length=1)
    predicate: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "_type": self.type,
            "subject": [s.to_dict() for s in self.subject],
            "predicateType": self.predicate_type,
        }
        if self.predicate is not None:
            result["predicate"] = self.predicate
        return result

    def to_json(self) -> bytes:
        """Compact UTF-8 JSON, key order as cosign writes it. These are the bytes signed."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False).encode()


def _subject_for(manifest_digest: str) -> Subject:
    validate_digest(manifest_digest)  # InvalidDigest: the caller passed a bad digest
    return Subject(digest={algorithm_of(manifest_digest): hex_of(manifest_digest)})


def signature_statement(manifest_digest: str) -> Statement:
    """The statement ``cosign sign`` writes: subject = the manifest digest, no name,
    predicate ``https://sigstore.dev/cosign/sign/v1`` with an empty object."""
    return attestation_statement(manifest_digest, COSIGN_SIGN_PREDICATE, {})


def attestation_statement(manifest_digest: str, predicate_type: str, predicate: dict[str, Any]) -> Statement:
    """A statement about the manifest with any predicate (SLSA, CycloneDX, our own)."""
    # A round trip through JSON refuses what cannot be signed faithfully (NaN, sets, bytes)
    # at build time, and makes the statement hold exactly what a verifier will read back
    # (tuples become lists, integer keys strings).
    try:
        predicate = json.loads(json.dumps(predicate, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise UsageError(f"predicate is not plain JSON: {exc}") from None
    return Statement(
        _type=STATEMENT_TYPE,
        subject=[_subject_for(manifest_digest)],
        predicateType=predicate_type,
        predicate=predicate,
    )


def parse_statement(data: bytes) -> Statement:
    """A statement from untrusted bytes, strictly (see the module docstring)."""
    document = load_object(
        data, "in-toto statement", limit=MAX_STATEMENT_BYTES, malformed=Reason.MALFORMED_STATEMENT, short="statement"
    )
    # These two are checked before the model so that they get their own reasons.
    if document.get("_type") != STATEMENT_TYPE:
        shown = str(document.get("_type"))[:80]
        raise VerificationFailed(
            Reason.STATEMENT_TYPE, f"statement _type is {shown!r}, expected {STATEMENT_TYPE!r}"
        )
    if document.get("subject") == []:
        raise VerificationFailed(Reason.EMPTY_SUBJECT, "statement has an empty subject list")
    return validate_as(Statement, document, "in-toto statement", Reason.MALFORMED_STATEMENT)


def check_subject(statement: Statement, manifest_digest: str) -> None:
    """Refuse unless the statement is about exactly this manifest: one subject, whose
    digest for the manifest's algorithm matches. A second, foreign subject is refused too:
    a statement about A and B must not pass as a statement about A alone (docs/threats.md 14, 16)."""
    validate_digest(manifest_digest)
    algorithm, expected = algorithm_of(manifest_digest), hex_of(manifest_digest)
    if len(statement.subject) != 1:
        raise VerificationFailed(
            Reason.SUBJECT_MISMATCH,
            f"statement names {len(statement.subject)} subjects; expected only {manifest_digest}",
        )
    found = statement.subject[0].digest.get(algorithm)
    if found != expected:
        shown = f"{algorithm}:{found}" if found else "no " + algorithm + " digest"
        raise VerificationFailed(
            Reason.SUBJECT_MISMATCH,
            f"statement is about {shown}, not {manifest_digest}",
            hint="the signature belongs to another model or another version",
        )


def check_predicate_type(statement: Statement, expected: str) -> None:
    """Refuse a statement whose predicate type is not the one asked for: an SBOM is not a
    signature (docs/threats.md 15)."""
    if statement.predicate_type != expected:
        raise VerificationFailed(
            Reason.PREDICATE_TYPE,
            f"statement predicate type is {statement.predicate_type[:120]!r}, expected {expected!r}",
        )
