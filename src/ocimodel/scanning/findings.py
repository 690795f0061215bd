"""What a scan reports: each finding names the file, the format its bytes show, a
severity, the rule that fired, a detail a person can act on (the callable a pickle would
call, the path an archive would write) and the byte offset it applies to.

Severities, from worst: critical (a load runs code the author chose, or writes outside
the model), high (a load may run code or do harm, e.g. a Keras Lambda layer), medium (a
callable that is neither known safe nor known dangerous: review it), low (suspicious but
harmless on load), info (noted, e.g. a format read only in part)."""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, Field

__all__ = ["SCANNER_VERSION", "FileReport", "Finding", "ScanReport", "Severity", "worst"]

# Bumped whenever a verdict may change, so cached results of an older scanner are not reused.
SCANNER_VERSION = "1"


class Severity(str, Enum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"

    @property
    def rank(self) -> int:
        """4 for critical down to 0 for info: ``a.rank >= b.rank`` reads "at least as bad"."""
        return _RANKS[self]

    def at_least(self, other: Severity) -> bool:
        return self.rank >= other.rank


_RANKS = {Severity.CRITICAL: 4, Severity.HIGH: 3, Severity.MEDIUM: 2, Severity.LOW: 1, Severity.INFO: 0}


class Finding(BaseModel):
    """One thing wrong with (or worth knowing about) one file."""

    file: str = Field(description="The file's path in the model (or the path given to scan).")
    format: str = Field(description="The format the bytes show: pickle, pytorch-zip, numpy, keras, onnx, gguf, ...")
    severity: Severity
    rule: str = Field(description="A stable identifier of the check, e.g. pickle.callable.dangerous.")
    detail: str = Field(description="What was found, e.g. the callable os.system, for a person to judge.")
    offset: int | None = Field(default=None, description="Byte offset in the file where it applies, if known.")
    member: str | None = Field(default=None, description="The member of an archive (a .pkl inside a PyTorch zip).")


class FileReport(BaseModel):
    """The result for one file: the formats its bytes showed and the findings."""

    file: str
    size: int
    digest: str | None = Field(default=None, description="sha256 of the file, when known (a layer's digest).")
    formats: list[str] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list)
    cached: bool = Field(default=False, description="Taken from the scan cache (same digest, same scanner version).")


class ScanReport(BaseModel):
    """The result for a file, a directory or a model."""

    target: str
    digest: str | None = Field(default=None, description="The model manifest's digest when a model was scanned.")
    scanner_version: str = SCANNER_VERSION
    files: list[FileReport] = Field(default_factory=list)

    @property
    def findings(self) -> list[Finding]:
        return [finding for report in self.files for finding in report.findings]

    def worst(self) -> Severity | None:
        return worst(self.findings)

    def fails(self, fail_on: Severity) -> bool:
        """Whether anything at or above ``fail_on`` was found."""
        return any(finding.severity.at_least(fail_on) for finding in self.findings)


def worst(findings: list[Finding]) -> Severity | None:
    return max((f.severity for f in findings), key=lambda s: s.rank, default=None)
