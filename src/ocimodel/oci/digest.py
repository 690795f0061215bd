"""Digests as the OCI image spec defines them, restricted to what we can verify.

Only sha256 and sha512 with lower-case hex of the exact length are accepted: a digest we
cannot recompute is a digest we cannot trust (docs/threats.md 4)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from ocimodel.errors import DigestMismatch, InvalidDigest, SizeMismatch

_HEX_LENGTH = {"sha256": 64, "sha512": 128}
_DIGEST_RE = re.compile(r"^(sha256|sha512):([0-9a-f]+)$")


def validate_digest(value: object) -> str:
    """Return ``value`` if it is a well-formed digest we can verify, else raise InvalidDigest."""
    if not isinstance(value, str) or not value:
        raise InvalidDigest("empty digest")
    match = _DIGEST_RE.match(value)
    if match is None:
        algorithm = value.split(":", 1)[0] if ":" in value else ""
        if algorithm and algorithm not in _HEX_LENGTH:
            raise InvalidDigest(f"unsupported digest algorithm {algorithm!r} in {value[:80]!r}")
        raise InvalidDigest(
            f"malformed digest {value[:80]!r}: expected sha256:<64 lower-case hex digits>"
        )
    algorithm, encoded = match.groups()
    if len(encoded) != _HEX_LENGTH[algorithm]:
        raise InvalidDigest(
            f"malformed digest {value[:80]!r}: {algorithm} needs {_HEX_LENGTH[algorithm]} hex digits"
        )
    return value


def algorithm_of(digest: str) -> str:
    return digest.split(":", 1)[0]


def hex_of(digest: str) -> str:
    return digest.split(":", 1)[1]


def stored_path(root: Path, digest: str) -> Path | None:
    """``root/<algorithm>/<hex>``, where content-addressed stores keep a blob (OCI layouts'
    ``blobs/``, the local caches); None for a digest we cannot trust, so no such name can
    reach the filesystem."""
    try:
        validate_digest(digest)
    except InvalidDigest:
        return None
    return root / algorithm_of(digest) / hex_of(digest)


def new_hasher(digest: str = "sha256:"):
    """A hashlib object for the algorithm of ``digest`` (sha256 when only the prefix is given)."""
    return hashlib.new(algorithm_of(digest))


def digest_bytes(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def verify_bytes(data: bytes, digest: str, size: int | None = None, what: str = "content") -> None:
    """Raise if ``data`` is not exactly the bytes named by ``digest`` (and ``size``)."""
    if size is not None and len(data) != size:
        raise SizeMismatch(digest, size, len(data))
    actual = digest_bytes(data, algorithm_of(digest))
    if actual != digest:
        raise DigestMismatch(digest, actual, what)


class VerifyingHasher:
    """Feeds chunks to a hash and checks digest and size at the end.

    Used on every stream from a store: bytes are counted as they arrive, so a body longer
    than announced is refused before it is all read (docs/threats.md 3)."""

    def __init__(self, digest: str, size: int | None, what: str = "blob") -> None:
        self.digest = digest
        self.size = size
        self.what = what
        self.seen = 0
        self._hash = new_hasher(digest)

    def update(self, chunk: bytes) -> None:
        self.seen += len(chunk)
        if self.size is not None and self.seen > self.size:
            raise SizeMismatch(self.digest, self.size, f"more than {self.size}")
        self._hash.update(chunk)

    def finish(self) -> None:
        if self.size is not None and self.seen != self.size:
            raise SizeMismatch(self.digest, self.size, self.seen)
        actual = f"{algorithm_of(self.digest)}:{self._hash.hexdigest()}"
        if actual != self.digest:
            raise DigestMismatch(self.digest, actual, f"{self.what} {self.digest}")
