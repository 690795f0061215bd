"""JSON Schemas generated from the pydantic models, checked in under ``schemas/``.

Regenerate with ``python -m ocimodel.schemas schemas/``; a test fails when the checked-in
files drift from the models."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel

from ocimodel.api.audit import AuditResult
from ocimodel.api.deployments import DeploymentsResult
from ocimodel.api.evaluation_checks import EvaluationCheck
from ocimodel.api.evaluations import EvaluationHistory, EvaluationPredicate
from ocimodel.api.licenses import LicenseReport
from ocimodel.api.promotions import PromotionPredicate
from ocimodel.api.registry import HistoryResult
from ocimodel.api.sbom import SbomResult
from ocimodel.api.scan import ScanResult
from ocimodel.api.variants import VariantIndexResult
from ocimodel.metadata.card import ModelCard
from ocimodel.packaging.modelpack import ModelConfig
from ocimodel.trust.policy import Policy

SCHEMAS: dict[str, type[BaseModel]] = {
    "modelpack-config.schema.json": ModelConfig,
    "model-card.schema.json": ModelCard,
    "policy.schema.json": Policy,
    "variant-index-result.schema.json": VariantIndexResult,  # `ocimodel index create --json`
    # What `audit --json` and `deployments --json` print.
    "audit.schema.json": AuditResult,
    "deployments.schema.json": DeploymentsResult,
    "promotion-predicate.schema.json": PromotionPredicate,  # https://ocimodel.dev/promotion/v1
    "history.schema.json": HistoryResult,  # `ocimodel history --json`
    "license-report.schema.json": LicenseReport,  # `ocimodel license --json`, ocimodel.license_report()
    "scan-result.schema.json": ScanResult,  # `ocimodel scan --json`, ocimodel.scan()
    "sbom-result.schema.json": SbomResult,  # `ocimodel sbom --json`, ocimodel.sbom()
    # https://ocimodel.dev/evaluation/v1, and what `ocimodel eval record --from FILE` reads
    "evaluation-predicate.schema.json": EvaluationPredicate,
    "evaluation-history.schema.json": EvaluationHistory,  # `ocimodel eval history --json`
    "evaluation-check.schema.json": EvaluationCheck,  # `ocimodel eval check --json`, ocimodel.check_evaluations()
}


def render(model: type[BaseModel]) -> str:
    schema = model.model_json_schema(by_alias=True, mode="serialization")
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0] if argv else "schemas")
    out.mkdir(parents=True, exist_ok=True)
    for filename, model in SCHEMAS.items():
        (out / filename).write_text(render(model))
        print(out / filename)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
