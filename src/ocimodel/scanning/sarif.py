"""A scan report as SARIF 2.1.0, the format GitHub code scanning reads.

One run, tool ``ocimodel``; one rule per rule id found (its short description, and the
``security-severity`` GitHub ranks alerts by, from the worst finding of that rule); one
result per finding, located at the file's path (``artifactLocation.uri``, a relative URI
reference) and the byte offset when the finding has one (``region.byteOffset``). Severity
maps to SARIF's level: critical and high are ``error``, medium ``warning``, low and info
``note``."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from ocimodel.scanning.findings import Finding, ScanReport, Severity

__all__ = ["SARIF_SCHEMA", "SARIF_VERSION", "to_sarif"]

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
INFORMATION_URI = "https://ocimodel.dev/scan"

_LEVELS = {
    Severity.CRITICAL: "error", Severity.HIGH: "error", Severity.MEDIUM: "warning",
    Severity.LOW: "note", Severity.INFO: "note",
}
# GitHub's scale: 9.0 and over is critical, 7.0 high, 4.0 medium, 0.1 low.
_SECURITY_SEVERITY = {
    Severity.CRITICAL: "9.5", Severity.HIGH: "8.0", Severity.MEDIUM: "5.0", Severity.LOW: "2.0", Severity.INFO: "0.0",
}


def _short_description(finding: Finding) -> str:
    words = finding.rule.replace("-", " ").replace("_", " ").split(".")
    return f"{finding.format}: {' '.join(words)}"


def _uri(finding: Finding) -> str:
    path = finding.file if finding.member is None or finding.member == finding.file else f"{finding.file}/{finding.member}"
    # A relative reference: every character outside the unreserved set and "/" escaped,
    # so a name with spaces, "#" or "?" stays one path.
    return quote(path.lstrip("/"), safe="/") or "."


def to_sarif(report: ScanReport, *, tool_version: str | None = None) -> dict[str, Any]:
    findings = report.findings
    rules: dict[str, dict[str, Any]] = {}
    worst: dict[str, Severity] = {}
    for finding in findings:
        if finding.rule not in rules:
            rules[finding.rule] = {
                "id": finding.rule,
                "name": finding.rule,
                "shortDescription": {"text": _short_description(finding)},
                "helpUri": INFORMATION_URI,
            }
        if finding.rule not in worst or finding.severity.rank > worst[finding.rule].rank:
            worst[finding.rule] = finding.severity
    ids = list(rules)
    for rule_id, rule in rules.items():
        rule["defaultConfiguration"] = {"level": _LEVELS[worst[rule_id]]}
        rule["properties"] = {"security-severity": _SECURITY_SEVERITY[worst[rule_id]], "tags": ["security"]}
    results = []
    for finding in findings:
        location: dict[str, Any] = {"artifactLocation": {"uri": _uri(finding)}}
        if finding.offset is not None and finding.offset >= 0:
            location["region"] = {"byteOffset": finding.offset}
        text = finding.detail if finding.member is None else f"{finding.detail} (in {finding.member})"
        results.append({
            "ruleId": finding.rule,
            "ruleIndex": ids.index(finding.rule),
            "level": _LEVELS[finding.severity],
            "message": {"text": text or finding.rule},
            "locations": [{"physicalLocation": location}],
            "properties": {"severity": finding.severity.value, "format": finding.format},
        })
    driver: dict[str, Any] = {
        "name": "ocimodel",
        "informationUri": INFORMATION_URI,
        "rules": list(rules.values()),
        "properties": {"scannerVersion": report.scanner_version},
    }
    if tool_version:
        driver["version"] = tool_version
    run: dict[str, Any] = {"tool": {"driver": driver}, "results": results}
    if report.digest:
        run["properties"] = {"target": report.target, "digest": report.digest}
    else:
        run["properties"] = {"target": report.target}
    return {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": [run]}
