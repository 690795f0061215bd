"""Which files of a model a selective pull takes (``--include GLOB``, ``--kind KIND``).

A layer is taken when its path matches any ``include`` pattern and its ModelPack kind is
any of ``kinds``: OR among the values of one option, AND between the two options, so each
option narrows the selection (``--include 'tokenizer*' --kind weight.config`` means "the
tokenizer files that are weight configs"; ``--include '*.json' --include '*.txt'`` means
either). An option not given does not narrow. A pattern is an fnmatch glob tried against the
whole POSIX path, against the file name alone (``tokenizer*`` finds
``tokenizer/tokenizer.json``... and ``tokenizer_config.json``), and against each leading
directory (``data`` takes everything under ``data/``). Matching is case-sensitive, as
paths are. An archive layer (a directory packed as one tar) is taken or left whole, by the
path it declares. Kinds come from the layer media type, never from the file name, so a
layer of another tool (no ModelPack media type) has no kind and is reached by path only.
A KitOps ModelKit's layers get the ModelPack kind KitOps itself gives them when it writes
ModelPack (model -> weight, modelpart -> weight.config, docs -> doc, code, dataset; its
prompts and MCP server bundles are code), and ``--kind`` also takes KitOps' own words
(``model``, ``modelpart``, ``docs``, ``datasets``, as ``kit unpack --filter`` spells them)."""

from __future__ import annotations

import fnmatch
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ocimodel.errors import NothingSelected, UsageError
from ocimodel.oci import mediatypes as mt
from ocimodel.packaging.classify import parse_kind

if TYPE_CHECKING:  # a push selects no files to write: unpack (tarfile) stays unloaded
    from ocimodel.packaging.unpack import PlannedFile

__all__ = ["layer_kind", "matches_include", "select_files"]

# How many file names the "nothing matched" message shows before "and N more".
_SHOWN = 20
# KitOps' layer words (kit unpack --filter) -> the ModelPack kinds selections use.
KIND_ALIASES = {"model": "weight", "modelpart": "weight.config", "docs": "doc", "datasets": "dataset"}


def layer_kind(planned: PlannedFile) -> str | None:
    if planned.kind is not None:
        return planned.kind
    parsed = mt.parse_model_layer(planned.descriptor.media_type)
    return parsed[0] if parsed else None


def matches_include(relpath: str, pattern: str) -> bool:
    """``pattern`` against the path, its file name, and each of its leading directories."""
    if fnmatch.fnmatchcase(relpath, pattern):
        return True
    parts = relpath.split("/")
    if fnmatch.fnmatchcase(parts[-1], pattern):
        return True
    directory = pattern.rstrip("/")
    return bool(directory) and any(
        fnmatch.fnmatchcase("/".join(parts[:i]), directory) for i in range(1, len(parts))
    )


def select_files(
    files: list[PlannedFile], include: Sequence[str] = (), kinds: Sequence[str] = (), *, shown: str = "the model"
) -> list[PlannedFile]:
    """The files of ``files`` a selective pull takes: those matching one of ``include`` (if
    given) and of one of ``kinds`` (if given); all of them when neither is given. Raises UsageError for an empty pattern or an unknown kind, and
    NothingSelected (naming what the model has) when the selection is empty."""
    patterns = string_list(include, "include")
    wanted = {parse_kind(KIND_ALIASES.get(k.strip().lower(), k)).value for k in string_list(kinds, "kinds")}
    for pattern in patterns:
        if not pattern.strip():
            raise UsageError("an include pattern is empty", hint="e.g. --include 'tokenizer*' or --include '*.json'")
    if not patterns and not wanted:
        return list(files)
    chosen = [
        f for f in files
        if (not wanted or layer_kind(f) in wanted)
        and (not patterns or any(matches_include(f.relpath, p) for p in patterns))
    ]
    if chosen:
        return chosen
    available = [(f.relpath or f.shown, layer_kind(f)) for f in files]  # a tar layer may declare no path
    asked = " ".join([*(f"--include {p!r}" for p in patterns), *(f"--kind {k}" for k in sorted(wanted))])
    if patterns and wanted:
        asked += " (a file must match a pattern and be of a kind)"
    counts = Counter(kind or "no kind" for _, kind in available)
    listing = ", ".join(f"{path} ({kind or 'no kind'})" for path, kind in available[:_SHOWN])
    more = f" and {len(available) - _SHOWN} more" if len(available) > _SHOWN else ""
    raise NothingSelected(
        f"nothing in {shown} matches {asked}; it has {len(available)} files: {listing}{more}",
        available=available,
        hint="kinds present: " + ", ".join(f"{k} ({n})" for k, n in sorted(counts.items()))
        + "; patterns match the path, the file name or a directory, e.g. --include 'tokenizer*'",
    )


def string_list(values: str | Sequence[str], name: str) -> tuple[str, ...]:
    """A list argument given a single string means that one value, not its characters."""
    if isinstance(values, str):
        return (values,)
    if not all(isinstance(v, str) for v in values):
        raise UsageError(f"{name} must be strings")
    return tuple(values)
