"""Lineage: which model was derived from which, by digest.

Upward links are in the child itself: its model card names its base models (reference,
digest, relation), covered by the child's manifest digest. Downward links are referrers on
the parent (artifact type ``application/vnd.ocimodel.lineage.v1+json``) that a push leaves
on each base model it can write to. A downward link is only a claim made by whoever could
write to the parent's repository, so walking down checks that the child's own card names
the parent before the edge counts as verified."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ocimodel.errors import InvalidManifest, InvalidReference, OcimodelError, UsageError
from ocimodel.metadata.card import BaseModelRef, ModelCard
from ocimodel.metadata.encoding import read_card
from ocimodel.oci import mediatypes as mt
from ocimodel.oci.models import Descriptor, Manifest, parse_manifest
from ocimodel.oci.reference import LayoutReference, Reference, parse_reference
from ocimodel.targets.open import open_target
from ocimodel.targets.referrers import push_bytes, push_referrer
from ocimodel.transport.connection import ConnectionOptions

MAX_LINEAGE_DEPTH = 16
MAX_LINEAGE_NODES = 500

# -- at push time ----------------------------------------------------------------------


def pin_base_digests(card: ModelCard, options: ConnectionOptions) -> ModelCard:
    """Fill in the digest of each base model given by tag only, so the link survives the
    tag moving. Bases that are not OCI references (``hf://...``) or cannot be reached are
    left as they are: the push does not depend on the parent's registry being up."""
    if not card.base_models or all(b.digest for b in card.base_models):
        return card
    pinned = []
    for base in card.base_models:
        ref = _oci_reference(base.reference)
        if base.digest is None and ref is not None:
            try:
                with open_target(ref, options) as target:
                    base = base.model_copy(update={"digest": target.resolve(ref.reference or "latest").digest})
            except OcimodelError:
                pass
        pinned.append(base)
    return card.model_copy(update={"base_models": pinned})


def link_to_parents(card: ModelCard, child: Reference, child_descriptor: Descriptor, options: ConnectionOptions) -> list[dict[str, str]]:
    """Leave a lineage link on each base model this push can write to. Best effort: a
    parent in a read-only or unreachable registry is reported, not an error."""
    report = []
    for base in card.base_models or []:
        ref = _oci_reference(base.reference)
        if ref is None:
            report.append({"parent": base.reference, "status": "not an OCI reference: no link"})
            continue
        if isinstance(child, LayoutReference) and not isinstance(ref, LayoutReference):
            # A path on this machine means nothing to the parent's other readers (and would
            # make their tools open local files): no link from a layout to a registry.
            report.append({"parent": base.reference, "status": "not linked: the child is in a local layout"})
            continue
        record = {"child": str(child), "childDigest": child_descriptor.digest, "relation": base.relation}
        try:
            with open_target(ref, options, for_write=True) as target:
                parent = target.resolve(base.digest or ref.reference or "latest")
                if base.digest and parent.digest != base.digest:
                    raise InvalidManifest(f"{base.reference} is {parent.digest}, not {base.digest}")
                if any(_links_to(d, child_descriptor.digest) for d in target.referrers(parent.digest, mt.LINEAGE_ARTIFACT)):
                    report.append({"parent": f"{base.reference}@{parent.digest}", "status": "linked already"})
                    continue
                layer = push_bytes(target, mt.LINEAGE_ARTIFACT, json.dumps(record, sort_keys=True).encode())
                push_referrer(target, parent, mt.LINEAGE_ARTIFACT, [layer], {
                    mt.ANNOTATION_LINEAGE_CHILD: f"{child}",
                    mt.ANNOTATION_LINEAGE_RELATION: base.relation,
                })
                report.append({"parent": f"{base.reference}@{parent.digest}", "status": "linked"})
        except OcimodelError as exc:
            report.append({"parent": base.reference, "status": f"not linked: {exc.message}"})
    return report


def _links_to(listed: Descriptor, child_digest: str) -> bool:
    return (listed.annotation(mt.ANNOTATION_LINEAGE_CHILD) or "").endswith("@" + child_digest)


def _oci_reference(text: str) -> Reference | None:
    if "://" in text:
        return None  # another hub's id (hf://...), not ours to resolve
    try:
        return parse_reference(text)
    except InvalidReference:
        return None


# -- walking the graph -----------------------------------------------------------------


class LineageNode(BaseModel):
    digest: str
    reference: str
    name: str | None = None
    version: str | None = None
    reachable: bool = True


class LineageEdge(BaseModel):
    parent: str  # digests
    child: str
    relation: str
    verified: bool  # the child's own card names the parent (always so upward)


class LineageGraph(BaseModel):
    """What :func:`walk_lineage` found: models by digest, the edges between them, and notes
    on what could not be followed. A pydantic model, like every other API result."""

    root: str
    nodes: dict[str, LineageNode] = {}
    edges: list[LineageEdge] = []
    notes: list[str] = []

    def to_dot(self) -> str:
        """The graph in Graphviz's dot language."""
        return to_dot(self)

    def to_mermaid(self) -> str:
        """The graph as a Mermaid flowchart."""
        return to_mermaid(self)


def walk_lineage(
    reference: str, options: ConnectionOptions, *, up: bool = True, down: bool = True, depth: int = 4
) -> LineageGraph:
    if not 1 <= depth <= MAX_LINEAGE_DEPTH:
        raise UsageError(f"lineage depth must be between 1 and {MAX_LINEAGE_DEPTH}, got {depth}")
    ref = parse_reference(reference)
    with _reader(options) as read:
        root = read(ref, strict=True)
        graph = LineageGraph(root=root.digest)
        graph.nodes[root.digest] = root.node
        if up:
            _walk_up(read, graph, root, depth)
        if down:
            _walk_down(read, graph, root, depth)
    return graph


@dataclass
class _Model:
    digest: str
    ref: Reference  # repository reference with the digest
    card: ModelCard
    node: LineageNode
    target: Any


@contextmanager
def _reader(options: ConnectionOptions) -> Iterator:
    """read(ref) -> _Model or None; one open target per repository, kept for the walk."""
    from contextlib import ExitStack

    with ExitStack() as stack:
        targets: dict[str, Any] = {}

        def read(ref: Reference, strict: bool = False) -> _Model | None:
            """None when a relative cannot be read (noted by the caller); the model asked
            about itself must be readable (``strict``): its error is the user's answer."""
            key = str(ref.with_tag(None).with_digest(None))
            if key not in targets:
                targets[key] = stack.enter_context(open_target(ref, options))
            target = targets[key]
            try:
                descriptor = target.resolve(ref.reference or "latest")
                data = target.fetch_manifest(descriptor)
                manifest = parse_manifest(data, descriptor.media_type)
            except OcimodelError:
                if strict:
                    raise
                return None
            annotations = manifest.annotations or {}
            card = read_card(None, annotations).card
            pinned = ref.with_tag(None).with_digest(descriptor.digest)
            node = LineageNode(
                digest=descriptor.digest, reference=str(pinned),
                name=annotations.get(mt.ANNOTATION_TITLE), version=annotations.get(mt.ANNOTATION_VERSION),
            )
            if not isinstance(manifest, Manifest):
                card = ModelCard()
            return _Model(descriptor.digest, pinned, card, node, target)

        yield read


def _walk_up(read, graph: LineageGraph, model: _Model, depth: int) -> None:
    for base in model.card.base_models or []:
        parent = _read_base(read, base)
        digest = base.digest or (parent.digest if parent else None)
        key = digest or base.reference
        if key not in graph.nodes:
            if len(graph.nodes) >= MAX_LINEAGE_NODES:
                graph.notes.append(f"stopped at {MAX_LINEAGE_NODES} models")
                return
            graph.nodes[key] = parent.node if parent else LineageNode(digest=key, reference=base.reference, reachable=False)
        graph.edges.append(LineageEdge(parent=key, child=model.digest, relation=base.relation, verified=True))
        if parent is not None and base.digest and parent.digest != base.digest:
            graph.notes.append(f"{base.reference} now resolves to {parent.digest}, not the recorded {base.digest}")
            continue
        if parent is not None and depth > 1:
            _walk_up(read, graph, parent, depth - 1)


def _read_base(read, base: BaseModelRef) -> _Model | None:
    ref = _oci_reference(base.reference)
    if ref is None:
        return None
    return read(ref.with_digest(base.digest) if base.digest else ref)


def _walk_down(read, graph: LineageGraph, model: _Model, depth: int) -> None:
    try:
        links = model.target.referrers(model.digest, mt.LINEAGE_ARTIFACT)
    except OcimodelError as exc:
        graph.notes.append(f"cannot list lineage links of {model.node.reference}: {exc.message}")
        return
    for link in links:
        claimed = _oci_reference(link.annotation(mt.ANNOTATION_LINEAGE_CHILD) or "")
        if claimed is None or claimed.digest is None:
            graph.notes.append(f"lineage link {link.digest} names no child by digest: ignored")
            continue
        if isinstance(claimed, LayoutReference) and not (
            isinstance(model.ref, LayoutReference) and Path(claimed.path).resolve() == Path(model.ref.path).resolve()
        ):
            # Written by whoever can write to this repository: never a reason to open a
            # path on the reader's machine.
            graph.notes.append(f"lineage link {link.digest} names a local layout ({claimed.path}): ignored")
            continue
        child = read(claimed)
        if child is None:
            graph.notes.append(f"lineage link {link.digest}: child {claimed} is not reachable")
            continue
        named = [b for b in child.card.base_models or [] if b.digest == model.digest]
        if child.digest not in graph.nodes:
            if len(graph.nodes) >= MAX_LINEAGE_NODES:
                graph.notes.append(f"stopped at {MAX_LINEAGE_NODES} models")
                return
            graph.nodes[child.digest] = child.node
        if any(e.parent == model.digest and e.child == child.digest for e in graph.edges):
            continue
        relation = named[0].relation if named else (link.annotation(mt.ANNOTATION_LINEAGE_RELATION) or "?")
        graph.edges.append(LineageEdge(parent=model.digest, child=child.digest, relation=relation, verified=bool(named)))
        if not named:
            graph.notes.append(f"{child.node.reference} is linked from {model.node.reference} but its card does not name it")
        elif depth > 1:
            _walk_down(read, graph, child, depth - 1)


# -- pictures --------------------------------------------------------------------------


def to_dot(graph: LineageGraph) -> str:
    lines = ["digraph lineage {", "  rankdir=LR;"]
    for digest, node in graph.nodes.items():
        label = f"{node.name or node.reference}\\n{node.version or ''}\\n{digest[:19]}".replace('"', "'")
        lines.append(f'  "{digest}" [label="{label}"{", style=dashed" if not node.reachable else ""}];')
    for edge in graph.edges:
        style = "" if edge.verified else ", style=dotted"
        lines.append(f'  "{edge.parent}" -> "{edge.child}" [label="{edge.relation}"{style}];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_mermaid(graph: LineageGraph) -> str:
    ids = {digest: f"n{i}" for i, digest in enumerate(graph.nodes)}
    lines = ["graph LR"]
    for digest, node in graph.nodes.items():
        label = f"{node.name or node.reference} {node.version or ''} {digest[7:19]}".strip().replace('"', "'")
        lines.append(f'  {ids[digest]}["{label}"]')
    for edge in graph.edges:
        arrow = "-->" if edge.verified else "-.->"
        lines.append(f"  {ids[edge.parent]} {arrow}|{edge.relation}| {ids[edge.child]}")
    return "\n".join(lines) + "\n"
