"""A KitOps ModelKit's Kitfile as the card ``inspect`` shows (docs/peers.md).

The Kitfile's package and model fields go where a ModelPack config's would: package name,
version, description and authors; licenses as KitOps itself collects them when it writes a
ModelPack config (the package's, the model's and its parts', the datasets' and the code's,
without repeats); the model's framework and format. Every value is checked as the card
checks it: one the card does not accept (a license that is not an SPDX expression, say) is
listed among the card's problems instead of being dropped silently. What the card has no
field for (the model's path, parts, code, datasets, docs, prompts, MCP servers) is shown by
:func:`kitfile_lines`, one line each, from the Kitfile."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from ocimodel.errors import OcimodelError
from ocimodel.metadata.card import ModelCard
from ocimodel.oci.models import Manifest
from ocimodel.packaging.kitfile import Kitfile, parse_kitfile, plan_modelkit
from ocimodel.packaging.unpack import PlannedFile

__all__ = ["kitfile_card", "kitfile_lines", "modelkit_info"]


def modelkit_info(manifest: Manifest, config: Any) -> tuple[list[PlannedFile], dict[str, Any]]:
    """The layers as files (paths and kinds from the Kitfile, as pull plans them) and the
    ModelInfo card fields of a ModelKit. A Kitfile that cannot be read, or that does not
    name every layer, gives no files and says why among the card's problems."""
    planned: list[PlannedFile] = []
    problems: list[str] = []
    try:
        planned = plan_modelkit(manifest, config)
    except OcimodelError as exc:
        problems.append(f"Kitfile: {exc.message}")
    fields = kitfile_card(config)
    fields["card_problems"] = problems + [p for p in fields["card_problems"] if f"Kitfile: {p}" not in problems]
    return planned, fields


def kitfile_card(config: Any) -> dict[str, Any]:
    """ModelInfo's ``card``, ``card_problems``, ``name``, ``formats``, ``param_size`` and
    ``precision`` from a Kitfile (the config blob read as JSON)."""
    try:
        kitfile = parse_kitfile(config)
    except OcimodelError as exc:
        return {"card": {}, "card_problems": [exc.message], "name": None, "formats": [], "param_size": None, "precision": None}
    package, model = kitfile.package, kitfile.model
    wanted: list[tuple[str, str, Any]] = [
        ("name", "package.name", package.name),
        ("version", "package.version", package.version),
        ("description", "package.description", package.description),
        ("authors", "package.authors", package.authors or None),
        ("licenses", "licenses", _licenses(kitfile) or None),
        ("framework", "model.framework", model.framework if model else None),
        ("format", "model.format", model.format if model else None),
    ]
    card: dict[str, Any] = {}
    problems: list[str] = []
    for field, where, value in wanted:
        if value is None or value == "":
            continue
        try:
            checked = ModelCard.model_validate({field: value})
        except ValidationError as exc:
            problems.append(f"Kitfile {where}: {exc.errors()[0]['msg']}: {json.dumps(value)[:120]}")
            continue
        card[field] = checked.model_dump(mode="json")[field]
    return {
        "card": card,
        "card_problems": problems,
        "name": package.name or (model.name if model else None) or None,
        "formats": [card["format"]] if "format" in card else [],
        "param_size": None,
        "precision": None,
    }


def _licenses(kitfile: Kitfile) -> list[str]:
    found: list[str | None] = [kitfile.package.license]
    if kitfile.model is not None:
        found += [kitfile.model.license, *(p.license for p in kitfile.model.parts)]
    found += [d.license for d in kitfile.datasets] + [c.license for c in kitfile.code]
    unique: list[str] = []
    for value in found:
        if value and value not in unique:
            unique.append(value)
    return unique


def kitfile_lines(config: Any) -> list[tuple[str, str]]:
    """(label, text) lines for what the card has no field for: the model and its parts,
    code, datasets, docs, prompts and MCP servers, each with its path; [] when the config
    is not a readable Kitfile (the card's problems say so)."""
    try:
        kitfile = parse_kitfile(config)
    except OcimodelError:
        return []

    def text(name: str | None, path: str, *details: tuple[str, Any]) -> str:
        shown = f"{name} at {path}" if name else path
        extra = ", ".join(f"{label} {value}" for label, value in details if value not in (None, ""))
        return shown + (f" ({extra})" if extra else "")

    lines: list[tuple[str, str]] = []
    model = kitfile.model
    if model is not None:
        lines.append(("Model", text(model.name, model.path, ("version", model.version), ("license", model.license))
                      + (f": {model.description}" if model.description else "")))
        if model.parameters is not None:
            lines.append(("Model params", json.dumps(model.parameters, sort_keys=True, ensure_ascii=False)))
        for part in model.parts:
            lines.append(("Model part", text(part.name, part.path, ("type", part.type), ("license", part.license))))
    for code in kitfile.code:
        lines.append(("Code", text(None, code.path, ("license", code.license)) + _about(code.description)))
    for dataset in kitfile.datasets:
        lines.append(("Dataset", text(dataset.name, dataset.path, ("license", dataset.license)) + _about(dataset.description)))
    for doc in kitfile.docs:
        lines.append(("Docs", doc.path + _about(doc.description)))
    for prompt in kitfile.prompts:
        lines.append(("Prompt", text(prompt.name, prompt.path) + _about(prompt.description)))
    for server in kitfile.mcp_servers:
        lines.append(("MCP server", text(server.name, server.path) + _about(server.description)))
    return lines


def _about(description: str | None) -> str:
    return f": {description}" if description else ""
