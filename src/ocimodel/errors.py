"""Typed errors. Every error a user can meet carries a one-line message and, where there is
one, a hint saying what to do next. The CLI prints ``message`` (and ``hint``) and exits 1,
or 2 for a :class:`UsageError`. Messages never contain credentials."""

from __future__ import annotations

# Answers that may pass if the request is tried again.
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# distribution kills an upload session whose PATCH was cut: starting the blob over works.
TRANSIENT_CODES = frozenset({"BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN"})


def printable(text: str, limit: int = 200) -> str:
    """Text from a registry or a helper made safe for one line of a message: control and
    escape characters become spaces (no terminal tricks), and the length is capped."""
    return "".join(ch if ch.isprintable() else " " for ch in text)[:limit]


# What a terminal acts on instead of showing: C0 controls (ESC starts colour, cursor and
# title sequences; CR and BS overwrite what was printed), DEL, C1 controls (CSI, OSC), and
# the bidirectional overrides and isolates that reorder a line as it is shown. Newline and
# tab lay text out, and a multi-line description keeps them.
_TERMINAL_CONTROLS = frozenset(
    [*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0),
     0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
)
_ESCAPES = {code: (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}") for code in _TERMINAL_CONTROLS}
_ONE_LINE_ESCAPES = {**_ESCAPES, 0x09: "\\t", 0x0A: "\\n"}


def escape_controls(text: str, *, one_line: bool = False) -> str:
    """``text`` for a terminal, shown as it is: every character a terminal would act on
    (see _TERMINAL_CONTROLS) written as its escape (``\\x1b``, ``\\u202e``); the rest,
    brackets, colons and all, left as typed. ``one_line``: also newline and tab (``\\n``,
    ``\\t``), for a value in a table cell or a tree line, which must not forge a line of its
    own. The CLI prints all user text through this."""
    return text.translate(_ONE_LINE_ESCAPES if one_line else _ESCAPES)


class OcimodelError(Exception):
    """Base of every error ocimodel raises on purpose.

    ``transient`` says whether the same operation, started over, may succeed: the copy
    engine restarts a blob transfer on such errors and on no others."""

    transient = False

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(OcimodelError):
    """The caller asked for something malformed (bad reference, bad option value)."""


class InvalidReference(UsageError):
    """A model reference (``registry/repo:tag@digest`` or ``oci:PATH:tag``) is malformed."""


class NothingSelected(UsageError):
    """A selective pull (``include`` / ``kinds``) matched no file of the model.
    ``available`` lists what the model has, as (path, kind or None) pairs."""

    def __init__(self, message: str, *, available: list[tuple[str, str | None]], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.available = available


class VariantNotChosen(UsageError):
    """A pull of a variant index named no variant, or a choice that matches none or several
    of them (docs/variants.md). ``variants`` lists what the index holds: each variant's
    digest and labels."""

    def __init__(self, message: str, *, variants: list[tuple[str, dict[str, str]]], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.variants = variants


class InvalidDigest(OcimodelError):
    """A digest string is not ``algorithm:hex`` in a form we accept."""


class IntegrityError(OcimodelError):
    """Bytes did not match the digest or size they were announced with."""


class DigestMismatch(IntegrityError):
    def __init__(self, expected: str, actual: str, what: str = "content") -> None:
        super().__init__(
            f"digest mismatch for {what}: expected {expected}, got {actual}",
            hint="the registry or the network altered the data; nothing was written",
        )
        self.expected = expected
        self.actual = actual


class SizeMismatch(IntegrityError):
    def __init__(self, digest: str, expected: int, actual: int | str) -> None:
        super().__init__(
            f"size mismatch for {digest}: expected {expected} bytes, got {actual}",
            hint="the registry or the network altered the data; nothing was written",
        )
        self.digest = digest
        self.expected = expected
        self.actual = actual


class InvalidManifest(OcimodelError):
    """A manifest or index is malformed, too large, or of a type we cannot use here."""


class NotAModel(OcimodelError):
    """The artifact holds nothing ocimodel can turn into files."""


class UnsafePath(OcimodelError):
    """A file path from an artifact would escape the destination or is otherwise unsafe."""


class ScanFailed(OcimodelError):
    """A scan gate refused a model: something at or above its severity was found (push
    --scan, pull --scan). ``report`` is the scan (an ocimodel.api.scan.ScanResult)."""

    def __init__(self, message: str, *, hint: str | None = None, report: object = None) -> None:
        super().__init__(message, hint=hint)
        self.report = report


class PackagingError(OcimodelError):
    """The model directory cannot be packaged (missing, unreadable, special files)."""


class DestinationExists(OcimodelError):
    """The pull destination holds files that would be overwritten."""


class UnsafeOutput(UsageError):
    """An output path names something other than a regular file: a symlink (even a
    dangling one), a directory, a fifo, a socket or a device. ocimodel never writes
    through such a node nor replaces it. ``path`` and ``kind`` say which and what."""

    def __init__(self, path: str, kind: str, *, hint: str | None = None) -> None:
        super().__init__(f"{path} is {kind}: ocimodel writes its outputs to regular files only", hint=hint)
        self.path = path
        self.kind = kind


class OutputExists(UsageError):
    """An output file exists and the command was not told to replace it (``--force``)."""

    def __init__(self, path: str, *, hint: str | None = None) -> None:
        super().__init__(f"{path} already exists; refusing to overwrite it", hint=hint)
        self.path = path


class OutputError(OcimodelError):
    """An output file could not be written (no permission, a full disk, a closed pipe)."""


class LocalFilesDiffer(DestinationExists):
    """A pull with ``keep_local`` (``--keep-local``) found files in the destination whose
    content differs from the model's; ``files`` lists their paths. Nothing was changed."""

    def __init__(self, message: str, *, files: list[str], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.files = files


class VersionExists(DestinationExists):
    """A version tag holds another model: versions are immutable (only ``--force`` moves
    one). Also what the loser of two writers racing for one version gets."""


class StoreError(OcimodelError):
    """An OCI layout directory is missing, malformed or not writable."""


class TransportError(OcimodelError):
    """The registry could not be reached or the connection failed."""

    transient = True


class ProxyFailure(TransportError):
    """The proxy a request went through (HTTPS_PROXY / HTTP_PROXY) could not be reached,
    refused the request (407: credentials wanted or refused; a CONNECT refused), or TLS
    with it failed. The message names the proxy by host and port, never its credentials
    (docs/proxies.md)."""


class RequestTimeout(TransportError):
    """A registry sent nothing for OCIMODEL_READ_TIMEOUT seconds, or did not finish a small
    request within OCIMODEL_REQUEST_TIMEOUT. Not transient: its tries are spent, and
    starting the transfer over would multiply the wait."""

    transient = False


class RegistryError(OcimodelError):
    """The registry answered with an error. ``code`` is the OCI error code when it sent one."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.code = code
        self.transient = status in TRANSIENT_STATUS or code in TRANSIENT_CODES


class WriteOutcomeUnknown(RegistryError):
    """A guarded write (a version tag) was sent but not answered in time, or its answer
    was cut: it may land later or never. Not transient: sending it again blind is what
    the check-and-set forbids."""


class NotARegistry(RegistryError):
    """The host answers HTTP but not as an OCI registry (no registry signs on ``/v2/``)."""


class NotFound(RegistryError):
    """MANIFEST_UNKNOWN, BLOB_UNKNOWN, NAME_UNKNOWN or a plain 404."""


class AuthenticationError(RegistryError):
    """401: no credentials, wrong credentials, or the token service refused them."""


class PermissionDenied(RegistryError):
    """403 / DENIED: the credentials are valid but not allowed to do this."""


class TooManyRequests(RegistryError):
    """429 / TOOMANYREQUESTS."""
