"""DSSE envelopes (secure-systems-lab/dsse protocol v1): the pre-authentication encoding
that is actually signed, the envelope as JSON, and strict base64.

What is signed is PAE(payloadType, payload), never the envelope JSON, so the envelope
can be parsed leniently as long as every field we use is checked exactly."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ocimodel.signing.documents import validate_as
from ocimodel.signing.errors import Reason, VerificationFailed

# Standard alphabet, padded: what cosign, sigstore-python and model-signing write.
_BASE64_RE = re.compile(r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$")


def pae(payload_type: str, payload: bytes) -> bytes:
    """The DSSE pre-authentication encoding: ``DSSEv1 <len type> <type> <len payload> <payload>``
    with byte lengths in decimal."""
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(type_bytes), type_bytes, len(payload), payload)


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode_strict(text: str, what: str) -> bytes:
    """Decode standard, padded, canonical base64 or refuse.

    Python's decoder skips junk and ignores non-zero padding bits, so two different strings
    can decode to the same bytes; a value that a second parser might read differently is
    refused rather than interpreted (docs/threats.md 13)."""
    if not isinstance(text, str) or not _BASE64_RE.match(text):
        raise VerificationFailed(Reason.BAD_BASE64, f"{what} is not standard padded base64")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise VerificationFailed(Reason.BAD_BASE64, f"{what} is not valid base64") from None
    if base64.b64encode(data).decode("ascii") != text:
        # Non-zero bits in the last character's unused low bits.
        raise VerificationFailed(Reason.BAD_BASE64, f"{what} is not canonical base64")
    return data


class _Strict(BaseModel):
    # Unknown fields are ignored (they are not signed, and not used); known ones are
    # type-checked without coercion.
    model_config = ConfigDict(extra="ignore", populate_by_name=True, strict=True, frozen=True)


class EnvelopeSignature(_Strict):
    sig: str
    keyid: str = ""


class Envelope(_Strict):
    payload: str
    payload_type: str = Field(alias="payloadType")
    signatures: list[EnvelopeSignature]

    def to_dict(self) -> dict[str, Any]:
        return {
            "payload": self.payload,
            "payloadType": self.payload_type,
            "signatures": [{"sig": s.sig, "keyid": s.keyid} for s in self.signatures],
        }


def parse_envelope(document: object) -> Envelope:
    """An envelope from its JSON object (already parsed with duplicate keys refused)."""
    if not isinstance(document, dict):
        raise VerificationFailed(Reason.MALFORMED_ENVELOPE, "DSSE envelope is not a JSON object")
    return validate_as(Envelope, document, "DSSE envelope", Reason.MALFORMED_ENVELOPE)
