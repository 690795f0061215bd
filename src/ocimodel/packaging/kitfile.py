"""KitOps ModelKits: the Kitfile (the config blob, as JSON) and which layer goes where.

A ModelKit's manifest names its config ``application/vnd.kitops.modelkit.config.v1+json``:
the Kitfile. Its layers are ``application/vnd.kitops.modelkit.<type>.v1.<format>[+<comp>]``
with type ``model``, ``modelpart``, ``code``, ``dataset``, ``docs`` (and ``mcpb`` for MCP
server bundles), format ``tar`` (older KitOps: always tar) or ``raw`` (one file), and
compression none, ``gzip`` or ``zstd``. A prompt is a ``code`` layer marked with the
annotation ``ml.kitops.modelkit.layer-subtype: prompt``. The layers carry no path: the
path of each is the one its Kitfile entry gives (docs/peers.md says which KitOps versions
this follows).

KitOps matches a layer to its entry as :func:`plan_modelkit` does: the entries of the
layer's type, in Kitfile order; since KitOps 0.5 each entry also records its layer's
``digest``, and a recorded digest must be the layer's. The tar member names are relative
to the ModelKit root when the entry has a digest (KitOps >= 0.5 walks from the context
directory and writes each path's parent directories too), and relative to the parent of
the entry's path when it has none (older KitOps named a file by its base name and a
directory by its last component). A raw layer is one file. The later KitOps sources also
put the path in each layer's ``org.cncf.model.filepath`` annotation: it must agree with
the Kitfile.

Nothing here fetches: the caller reads the config, verified against its digest."""

from __future__ import annotations

import posixpath
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ocimodel.errors import NotAModel, UnsafePath
from ocimodel.oci.kind import KITOPS_CONFIG, KITOPS_MANIFEST
from ocimodel.oci.models import Descriptor, Manifest
from ocimodel.packaging.archive import Compression, zstd_module
from ocimodel.packaging.paths import check_relative_path, check_unique_paths
from ocimodel.packaging.unpack import DEFAULT_FILE_MODE, PlannedFile, layer_path, mode_of

__all__ = [
    "KIT_CONFIG",
    "KIT_MANIFEST_ARTIFACT",
    "LAYER_SUBTYPE_ANNOTATION",
    "Kitfile",
    "is_modelkit",
    "parse_kit_layer",
    "parse_kitfile",
    "plan_modelkit",
]

KIT_CONFIG = KITOPS_CONFIG
KIT_MANIFEST_ARTIFACT = KITOPS_MANIFEST  # newer KitOps may set it; older ones set none
LAYER_SUBTYPE_ANNOTATION = "ml.kitops.modelkit.layer-subtype"
_PROMPT = "prompt"
_LAYER = re.compile(r"^application/vnd\.kitops\.modelkit\.(\w+)\.v1\.(tar|raw)(?:\+(\w+))?$")
_COMPRESSIONS: dict[str, Compression] = {"": "none", "none": "none", "gzip": "gzip", "zstd": "zstd"}
# A ModelKit layer's type -> the ModelPack kind KitOps gives it when it writes ModelPack;
# what selections (--kind) and the file list use. Prompts and MCP bundles are code.
KINDS = {"model": "weight", "modelpart": "weight.config", "code": "code", "prompt": "code",
         "dataset": "dataset", "docs": "doc", "mcpb": "code"}


class _Lenient(BaseModel):
    # KitOps adds fields from version to version; what we do not know is kept, not refused.
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: Any) -> Any:
        # encoding/json leaves empty fields out, but a hand-written Kitfile may say null.
        return {k: v for k, v in data.items() if v is not None} if isinstance(data, dict) else data


class KitEntry(_Lenient):
    path: str = ""
    description: str | None = None
    license: str | None = None
    digest: str | None = None
    diff_id: str | None = Field(default=None, alias="diffId")


class KitPart(KitEntry):
    name: str | None = None
    type: str | None = None


class KitModel(KitEntry):
    name: str | None = None
    framework: str | None = None
    format: str | None = None
    version: str | None = None
    parts: list[KitPart] = []
    parameters: Any = None


class KitDataset(KitEntry):
    name: str | None = None
    parameters: Any = None


class KitNamed(KitEntry):
    name: str | None = None


class KitPackage(_Lenient):
    name: str | None = None
    version: str | None = None
    description: str | None = None
    license: str | None = None
    authors: list[str] = []


class Kitfile(_Lenient):
    manifest_version: str | None = Field(default=None, alias="manifestVersion")
    package: KitPackage = KitPackage()
    model: KitModel | None = None
    code: list[KitEntry] = []
    datasets: list[KitDataset] = []
    docs: list[KitEntry] = []
    prompts: list[KitNamed] = []
    mcp_servers: list[KitNamed] = Field(default=[], alias="mcpServers")

    def entries(self, kind: str) -> list[KitEntry]:
        """The Kitfile entries a layer of ``kind`` (a layer type, or ``prompt``) matches."""
        if kind == "model":
            return [self.model] if self.model is not None else []
        if kind == "modelpart":
            return list(self.model.parts) if self.model is not None else []
        return list({"code": self.code, "prompt": self.prompts, "dataset": self.datasets,
                     "docs": self.docs, "mcpb": self.mcp_servers}.get(kind, []))


def is_modelkit(manifest: Manifest) -> bool:
    return manifest.config.media_type == KIT_CONFIG or manifest.artifact_type == KIT_MANIFEST_ARTIFACT


def parse_kit_layer(media_type: str) -> tuple[str, str, Compression] | None:
    """(type, format, compression) of a ModelKit layer media type, else None. Raises
    NotAModel for a compression ocimodel cannot read."""
    match = _LAYER.match(media_type)
    if match is None:
        return None
    base, form, comp = match.group(1), match.group(2), match.group(3) or ""
    compression = _COMPRESSIONS.get(comp)
    if compression is None:
        raise NotAModel(f"ModelKit layer type {media_type[:120]!r} has an unknown compression {comp!r}")
    return base, form, compression


def parse_kitfile(config: Any) -> Kitfile:
    """The Kitfile from the config blob read as JSON (None when it could not be read)."""
    if not isinstance(config, dict):
        raise NotAModel(
            "the ModelKit's config is not a Kitfile in JSON (or is larger than 4 MiB)",
            hint="ocimodel reads ModelKits through their Kitfile; `ocimodel inspect --json` shows the manifest",
        )
    try:
        return Kitfile.model_validate(config)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the Kitfile"
        raise NotAModel(f"the ModelKit's Kitfile is not valid: {where}: {first['msg']}") from None


def entry_path(raw: str, what: str) -> str:
    """A Kitfile path as KitOps cleans it (``./models/`` is ``models``), checked like a
    layer path; ``""`` for the ModelKit root (``.``)."""
    if not raw:
        raise NotAModel(f"the Kitfile's {what} has no path")
    if raw.startswith("/") or ".." in raw.split("/"):
        raise UnsafePath(f"the Kitfile's {what} path {raw[:120]!r} leaves the ModelKit directory")
    cleaned = posixpath.normpath(raw)
    return "" if cleaned == "." else check_relative_path(cleaned)


def plan_modelkit(manifest: Manifest, config: Any) -> list[PlannedFile]:
    """The layers of a ModelKit as files, each at the path its Kitfile entry gives; every
    path checked, before anything is fetched. ``config`` is the config blob read as JSON
    (verified by the caller). Raises NotAModel when a layer has no entry or its entry
    records another digest, UnsafePath for a path that leaves the directory."""
    kitfile = parse_kitfile(config)
    used: set[int] = set()
    planned: list[PlannedFile] = []
    for layer in manifest.layers:
        parsed = parse_kit_layer(layer.media_type)
        if parsed is None:
            raise NotAModel(
                f"layer {layer.digest} of the ModelKit has media type {layer.media_type[:120]!r}, "
                "which is not a ModelKit layer type",
                hint="ocimodel reads ModelKit layers application/vnd.kitops.modelkit.<type>.v1.tar|raw[+gzip|+zstd]",
            )
        base, form, compression = parsed
        kind = _PROMPT if base == "code" and layer.annotation(LAYER_SUBTYPE_ANNOTATION) == _PROMPT else base
        entry = _match(kitfile, kind, layer, used)
        what = f"{kind} entry {entry.path[:120]!r}"
        path = entry_path(entry.path, what)
        if compression == "zstd" and zstd_module() is None:
            raise NotAModel(
                f"ModelKit layer {path[:120]!r} is zstd-compressed; this Python cannot decompress zstd",
                hint="install the `zstandard` package to pull zstd layers",
            )
        selected = KINDS.get(kind)
        # The later KitOps sources also annotate each layer with its path: it must agree.
        annotated = layer_path(layer)
        if annotated is not None and entry_path(annotated, "layer") != path:
            raise NotAModel(
                f"ModelKit layer {layer.digest[:19]} says it is {annotated[:120]!r} but its Kitfile "
                f"{what} says {path[:120]!r}; refusing to guess"
            )
        if form == "raw":
            if not path:
                raise NotAModel(f"the Kitfile's {what} names the ModelKit root for a single file")
            planned.append(PlannedFile(path, layer, mode_of(layer), packed=None if compression == "none" else compression,
                                       kind=selected))
        else:
            # KitOps >= 0.5 records each layer's digest and names members from the root;
            # before, it named them from the parent of the entry's path.
            names_from = "" if entry.digest else posixpath.dirname(path)
            planned.append(PlannedFile(path, layer, DEFAULT_FILE_MODE, compression, names_from=names_from, kind=selected))
    if not planned:
        raise NotAModel("the ModelKit has no layers")
    check_unique_paths(p.relpath for p in planned if p.relpath)
    return planned


def _match(kitfile: Kitfile, kind: str, layer: Descriptor, used: set[int]) -> KitEntry:
    """The entry a layer belongs to: among the unused entries of its type in Kitfile order,
    the one recording its digest, else (a Kitfile written before digests were recorded)
    the first one recording none."""
    free = [e for e in kitfile.entries(kind) if id(e) not in used]
    entry = next((e for e in free if e.digest == layer.digest), None)
    if entry is None:
        recorded = next((e for e in free if e.digest), None)
        entry = next((e for e in free if not e.digest), None)
        if entry is None:
            detail = (f"; its next {kind} entry records layer {recorded.digest[:19]}" if recorded is not None and recorded.digest
                      else "")
            raise NotAModel(
                f"the ModelKit's layer {layer.digest[:19]} ({kind}) has no entry in its Kitfile{detail}",
                hint="the Kitfile and the manifest disagree; the artifact was not written by KitOps, or was altered",
            )
    used.add(id(entry))
    return entry
