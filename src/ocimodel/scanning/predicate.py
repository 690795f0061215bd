"""The scan attestation: a scan of a model as an in-toto predicate of our own type, and the
check the verify policy's ``scan`` rule makes of one.

Predicate type ``https://ocimodel.dev/scan/v1``; the statement's subject is the model's
manifest digest, and the predicate lists every layer digest the scan covered, so a
verifier knows the attested scan is of exactly this model's bytes (a manifest that gained
a layer after the scan has a different digest anyway; the layer list makes the claim
explicit and checkable without trusting the subject alone)::

    {"scanner": {"name": "ocimodel", "scannerVersion": "1"},
     "layers": [{"digest": "sha256:...", "file": "model.pkl", "maxSeverity": "critical"}],
     "maxSeverity": "critical",          # null when nothing was found
     "counts": {"critical": 1, "high": 0, "medium": 0, "low": 0, "info": 0},
     "allowlist": {"digest": "sha256:...", "patterns": []},
     "findings": [{file, format, severity, rule, detail, offset, member}, ...]}   # at most 1000
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ocimodel.scanning.findings import SCANNER_VERSION, ScanReport, Severity

__all__ = ["MAX_ATTESTED_FINDINGS", "SCAN_PREDICATE", "build_predicate", "judge_predicate"]

SCAN_PREDICATE = "https://ocimodel.dev/scan/v1"
MAX_ATTESTED_FINDINGS = 1000  # the bundle must stay small; counts and maxSeverity are always complete


def build_predicate(report: ScanReport, layer_digests: Iterable[str], allow_patterns: list[str],
                    allow_digest: str) -> dict[str, Any]:
    files: dict[str, str] = {}
    for file in report.files:
        if file.digest is not None:
            files.setdefault(file.digest, file.file)
    counts = {s.value: 0 for s in Severity}
    for finding in report.findings:
        counts[finding.severity.value] += 1
    worst = report.worst()
    layers = []
    for digest in dict.fromkeys(layer_digests):
        # A tar layer's members carry no digest of their own: the layer is listed with no
        # file name; its findings are in "findings" under the members' names.
        layers.append({"digest": digest, "file": files.get(digest)})
    return {
        "scanner": {"name": "ocimodel", "scannerVersion": SCANNER_VERSION},
        "layers": layers,
        "maxSeverity": worst.value if worst is not None else None,
        "counts": counts,
        "allowlist": {"digest": allow_digest, "patterns": list(allow_patterns)},
        "findings": [f.model_dump(mode="json") for f in report.findings[:MAX_ATTESTED_FINDINGS]],
    }


def judge_predicate(predicate: Mapping[str, Any] | None, layer_digests: Iterable[str], max_severity: Severity) -> str | None:
    """Why a verified scan attestation does not satisfy ``max_severity`` for a model with
    these layers; None when it does."""
    if not isinstance(predicate, Mapping):
        return "the scan attestation has no predicate"
    layers = predicate.get("layers")
    if not isinstance(layers, list) or not all(isinstance(x, Mapping) and isinstance(x.get("digest"), str) for x in layers):
        return "the scan attestation lists no layers"
    covered = {x["digest"] for x in layers}
    missing = [d for d in dict.fromkeys(layer_digests) if d not in covered]
    if missing:
        return f"the scan attestation does not cover layer {missing[0]}" + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
    worst = predicate.get("maxSeverity")
    if worst is None:
        return None
    try:
        found = Severity(worst)
    except ValueError:
        return f"the scan attestation has an unknown maxSeverity {str(worst)[:40]!r}"
    if found.rank > max_severity.rank:
        return f"the attested scan found {found.value}, above the policy's {max_severity.value}"
    return None
