"""Referrers: manifests whose ``subject`` is another manifest (signatures, attestations,
evaluations, promotion records, lineage links).

Registries with the OCI 1.1 referrers API index them themselves. Registries without it
(distribution 2.x, GHCR) get the fallback the distribution spec defines: an image index
under the tag ``sha256-<hex of the subject>`` listing the referrers, which the client
maintains. Those registries ignore ``If-Match`` (docs/registry-facts.md), so two writers can
overwrite each other; :func:`update_fallback_index` detects that and repairs it.

Listings are untrusted input: they are capped in count and bytes (docs/threats.md 5-6) and a
referrer named in one is not believed to refer to anything until its own manifest, fetched
by digest, says so (:func:`check_subject`).

Writing a referrer is a store operation too (:func:`push_referrer`, :func:`push_bytes`):
the API's ``attach``, signing (``trust/``), promotion records and lineage links all write
through it, into any :class:`~ocimodel.targets.base.WritableTarget`."""

from __future__ import annotations

import base64
import binascii
import json
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from ocimodel import settings
from ocimodel.errors import (
    TRANSIENT_STATUS,
    IntegrityError,
    InvalidManifest,
    NotFound,
    RegistryError,
    TransportError,
    UsageError,
)
from ocimodel.oci import mediatypes as mt
from ocimodel.oci.digest import algorithm_of, hex_of, validate_digest, verify_bytes
from ocimodel.oci.models import Descriptor, Index, Manifest, parse_manifest
from ocimodel.targets.base import (
    BlobFetcher,
    ReferrerEditor,
    ReferrerReader,
    ReferrerSource,
    ReferrerWriter,
    WritableTarget,
)
from ocimodel.targets.copy import Graph, TransferResult, copy_graph, read_graph, verified

# More than any honest subject has (Kyverno gives up at 50); a hostile registry could
# otherwise make discover or copy walk forever.
MAX_REFERRERS = 1000
# Referrers of referrers: a signature of an SBOM of a model is depth 2.
MAX_REFERRER_DEPTH = 8
# See update_fallback_index: the longest one writer's read-modify-write of a fallback index
# may take; every writer waits this long before trusting its update survived.
DEFAULT_SETTLE = 1.0
MAX_FALLBACK_ATTEMPTS = 20
# Manifest bytes one walk of a referrer tree may fetch.
MAX_WALK_BYTES = 64 * 1024 * 1024


def fallback_tag(subject_digest: str) -> str:
    """``sha256:abc...`` -> ``sha256-abc...`` (the OCI 1.1 referrers tag schema: the
    algorithm cut to 32 characters, the encoded part to 64)."""
    validate_digest(subject_digest)
    return f"{algorithm_of(subject_digest)[:32]}-{hex_of(subject_digest)[:64]}"


# The tags the fallback writes: an index of a subject's referrers, not a version of anything.
_FALLBACK_TAG = re.compile(r"sha(256|512)-[0-9a-f]{64}")


def is_fallback_tag(tag: str) -> bool:
    """Whether ``tag`` has the form :func:`fallback_tag` gives (listings hide these)."""
    return _FALLBACK_TAG.fullmatch(tag) is not None


def parse_listing(data: bytes, what: str) -> list[Descriptor]:
    """The descriptors of one referrers index (an API page or a fallback tag's index)."""
    try:
        parsed = parse_manifest(data, mt.OCI_INDEX)
    except InvalidManifest as exc:
        raise RegistryError(f"{what} is malformed: {exc.message}") from None
    if not isinstance(parsed, Index):
        raise RegistryError(f"{what} is not an image index")
    return [d for d in parsed.manifests]


def bounded(descriptors: list[Descriptor], what: str) -> list[Descriptor]:
    """Drop duplicates (first wins) and refuse listings over the cap."""
    unique: dict[str, Descriptor] = {}
    for descriptor in descriptors:
        unique.setdefault(descriptor.digest, descriptor)
        if len(unique) > MAX_REFERRERS:
            raise RegistryError(f"{what} names more than {MAX_REFERRERS} referrers; refusing to go on")
    return list(unique.values())


def of_type(descriptors: list[Descriptor], artifact_type: str | None) -> list[Descriptor]:
    if artifact_type is None:
        return descriptors
    return [d for d in descriptors if d.artifact_type == artifact_type]


def index_bytes(descriptors: list[Descriptor]) -> bytes:
    """The fallback index we write: an OCI image index, compact JSON, entries in order."""
    entries = b",".join(d.to_json() for d in descriptors)
    return (
        b'{"schemaVersion":2,"mediaType":"' + mt.OCI_INDEX.encode() + b'","manifests":[' + entries + b"]}"
    )


def referrer_descriptor(data: bytes, digest: str) -> Descriptor:
    """How a referrer is listed: media type, digest, size, artifactType, annotations."""
    parsed = parse_manifest(data)
    if isinstance(parsed, Manifest):
        artifact_type = parsed.effective_artifact_type
        media_type = parsed.media_type or mt.OCI_MANIFEST
    else:
        artifact_type = parsed.artifact_type
        media_type = parsed.media_type or mt.OCI_INDEX
    return Descriptor(
        mediaType=media_type,
        digest=digest,
        size=len(data),
        artifactType=artifact_type,
        annotations=parsed.annotations or None,
    )


def subject_of(data: bytes) -> Descriptor | None:
    return parse_manifest(data).subject


def check_subject(data: bytes, digest: str, subject_digest: str) -> None:
    """A listed referrer counts only if its own manifest names the subject."""
    subject = subject_of(data)
    if subject is None or subject.digest != subject_digest:
        named = subject.digest if subject else "no subject"
        raise InvalidManifest(
            f"referrer {digest} is listed for {subject_digest} but its manifest names {named}"
        )


@dataclass
class FallbackIO:
    """How :func:`update_fallback_index` reads and writes one subject's fallback index."""

    read: Callable[[], list[Descriptor]]  # [] when the tag does not exist
    write: Callable[[list[Descriptor], float | None], None]  # entries, deadline in seconds
    what: str
    # Drop entries whose manifests no longer exist (the registry refuses an index naming
    # one: another tool deleted a referrer), so one dangling entry cannot block the subject.
    prune: Callable[[], None] | None = None


def update_fallback_index(
    io: FallbackIO,
    change: Callable[[list[Descriptor]], list[Descriptor]],
    holds: Callable[[list[Descriptor]], bool],
    *,
    settle: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Apply ``change`` to the fallback index until ``holds`` is true of a read made after
    every concurrent writer has had to finish.

    Without a compare-and-swap, writer W's update is lost only when another writer X read
    before W's write and X's write lands after it. So every write is bounded in time: no
    writer sends a write based on a read older than ``settle`` seconds (it reads again),
    and the write itself is sent once, never retried, and abandoned after ``settle``
    seconds (``io.write`` is given the deadline). X's write therefore lands within
    2 x ``settle`` of its read, which was before W's write; W checks the index again
    2 x ``settle`` after its write, and if its entry is gone it starts over from a fresh
    read, keeping what the others added.

    The guarantee rests on every writer using the same ``settle`` (OCIMODEL_REFERRERS_SETTLE,
    default 1 s) and on no writer pausing for longer than that between its check and its
    write (a process stopped by a debugger, a VM frozen mid-write); a registry that applies
    a write after its client gave up on it can still break it. Registries with the
    referrers API need none of this."""
    settle = settle_time() if settle is None else settle
    for attempt in range(MAX_FALLBACK_ATTEMPTS):
        started = clock()
        current = io.read()
        if holds(current):
            if attempt == 0:
                return  # nothing to do: we did not write, so nothing of ours can be lost
        else:
            updated = change(current)
            if settle and clock() - started > settle:
                continue  # our read is stale: another writer may have written since
            try:
                io.write(updated, settle or None)
            except (RegistryError, TransportError) as exc:
                if getattr(exc, "code", None) == "MANIFEST_BLOB_UNKNOWN" and io.prune is not None:
                    io.prune()  # an entry names a manifest deleted by someone else
                elif not (isinstance(exc, TransportError) or exc.transient or getattr(exc, "status", None) in TRANSIENT_STATUS):
                    raise
                sleep(random.uniform(0, 0.05 * (attempt + 1)))
                continue  # a write that failed or timed out may still land: start over
        sleep(2 * settle + random.uniform(0, 0.02))
        if holds(io.read()):
            return
        sleep(random.uniform(0, 0.02 * (attempt + 1)))
    raise RegistryError(
        f"{io.what}: other writers kept overwriting the referrers index; gave up after "
        f"{MAX_FALLBACK_ATTEMPTS} attempts",
        hint="try again; if it persists, attach from one process at a time",
    )


def settle_time() -> float:
    return settings.referrers_settle(DEFAULT_SETTLE)


def adding(descriptors: list[Descriptor]) -> tuple[Callable, Callable]:
    """(change, holds) that put ``descriptors`` in a fallback index."""
    digests = {d.digest for d in descriptors}

    def change(current: list[Descriptor]) -> list[Descriptor]:
        kept = [d for d in current if d.digest not in digests]
        if len(kept) + len(descriptors) > MAX_REFERRERS:
            # Past the cap no reader would accept the index; refuse rather than wedge it.
            raise RegistryError(
                f"the referrers index already lists {len(kept)} referrers; {MAX_REFERRERS} is the most ocimodel reads",
                hint="detach referrers that are no longer needed",
            )
        return kept + list(descriptors)

    def holds(current: list[Descriptor]) -> bool:
        return digests <= {d.digest for d in current}

    return change, holds


def removing(digest: str) -> tuple[Callable, Callable]:
    """(change, holds) that take ``digest`` out of a fallback index."""

    def change(current: list[Descriptor]) -> list[Descriptor]:
        return [d for d in current if d.digest != digest]

    def holds(current: list[Descriptor]) -> bool:
        return all(d.digest != digest for d in current)

    return change, holds


# -- walking and copying the referrer tree ---------------------------------------------


@dataclass
class ReferrerNode:
    """A referrer whose own manifest was fetched (by digest, verified) and names its subject."""

    descriptor: Descriptor
    children: list[ReferrerNode]


@dataclass
class ReferrerTree:
    nodes: list[ReferrerNode]
    # Listed for a subject but not referring to it (a stale or hostile listing): left out.
    ignored: list[str]

    def flatten(self) -> list[ReferrerNode]:
        """Every node, parents before their children."""
        out: list[ReferrerNode] = []
        stack = list(reversed(self.nodes))
        while stack:
            node = stack.pop()
            out.append(node)
            stack.extend(reversed(node.children))
        return out


def walk(
    target: ReferrerReader,
    subject_digest: str,
    *,
    artifact_type: str | None = None,
    depth: int = MAX_REFERRER_DEPTH,
) -> ReferrerTree:
    """The referrers of ``subject_digest`` and, ``depth`` levels down, theirs. The
    ``artifact_type`` filter applies to the first level (a signature of an SBOM is wanted
    with the SBOM whatever its type)."""
    if depth < 1 or depth > MAX_REFERRER_DEPTH:
        raise UsageError(f"referrer depth must be between 1 and {MAX_REFERRER_DEPTH}, got {depth}")
    tree = ReferrerTree(nodes=[], ignored=[])
    seen = {subject_digest}
    read = [0]  # manifest bytes fetched: a hostile listing must not make us read gigabytes

    def visit(subject: str, level: int, wanted: str | None) -> list[ReferrerNode]:
        nodes: list[ReferrerNode] = []
        for listed in target.referrers(subject, wanted):
            if listed.digest in seen:
                continue  # a cycle or a repeat: each referrer appears once
            seen.add(listed.digest)
            if len(seen) - 1 > MAX_REFERRERS:
                raise RegistryError(f"more than {MAX_REFERRERS} referrers under {subject_digest}; refusing to go on")
            if listed.media_type not in mt.MANIFEST_TYPES + mt.INDEX_TYPES:
                tree.ignored.append(f"{listed.digest}: listed with media type {listed.media_type!r}")
                continue
            try:
                data = target.fetch_manifest(listed)
                check_subject(data, listed.digest, subject)
            except (InvalidManifest, IntegrityError, NotFound) as exc:
                tree.ignored.append(f"{listed.digest}: {exc.message}")
                continue
            read[0] += len(data)
            if read[0] > MAX_WALK_BYTES:
                raise RegistryError(f"referrers of {subject_digest} hold more than {MAX_WALK_BYTES >> 20} MiB of manifests; refusing to go on")
            actual = referrer_descriptor(data, listed.digest)
            if wanted is not None and actual.artifact_type != wanted:
                # The listing (or the registry's filter) said otherwise; the manifest decides.
                tree.ignored.append(f"{listed.digest}: listed as {wanted} but is {actual.artifact_type}")
                continue
            children = visit(listed.digest, level + 1, None) if level < depth else []
            nodes.append(ReferrerNode(descriptor=actual, children=children))
        return nodes

    tree.nodes = visit(subject_digest, 1, artifact_type)
    return tree


@dataclass
class ArtifactCopy:
    transfer: TransferResult  # of the model and its referrers together
    referrers: list[Descriptor]  # copied (or found already there), parents first
    ignored: list[str]


def copy_with_referrers(
    source: ReferrerSource,
    destination: ReferrerWriter,
    root: Descriptor,
    *,
    tag: str | None,
    graph: Graph | None = None,
    check_source: bool = False,
    **copy_options,
) -> ArtifactCopy:
    """Copy ``root`` and every referrer below it (recursively), digests unchanged, so a
    signature made at the source verifies at the destination; for an index, also the
    referrers of every manifest it names.

    Everything is read and verified from the source first; then the model goes in
    untagged, its referrers after it, and the tag last: whoever sees the tag sees the
    model with its signatures, never before them."""
    graph = graph or read_graph(source, root)
    tree = walk(source, root.digest)
    nodes = tree.flatten()
    # An index's members have referrers of their own (a signature of one variant of a
    # variant index): they travel with it. graph.manifests lists the members before the root.
    for member, _ in graph.manifests[:-1]:
        below = walk(source, member.digest)
        known = {n.descriptor.digest for n in nodes}
        nodes += [n for n in below.flatten() if n.descriptor.digest not in known]
        tree.ignored += below.ignored
    graphs = [read_graph(source, node.descriptor) for node in nodes]
    if check_source:
        # An archive being imported: every blob must be there before the first is copied.
        for part in [graph, *graphs]:
            missing = [b.digest for b in part.blobs if not source.has_blob(b)]
            if missing:
                raise IntegrityError(
                    f"incomplete: blob {missing[0]} of {part.root.digest} is missing"
                    + (f" ({len(missing) - 1} more)" if len(missing) > 1 else ""),
                    hint="export the model again; nothing was written to the destination",
                )
    result = copy_graph(source, destination, root, tag=None, graph=graph, **copy_options)
    with destination.batched_referrers():
        for node, node_graph in zip(nodes, graphs):
            part = copy_graph(source, destination, node.descriptor, graph=node_graph, **copy_options)
            result.copied += part.copied
            result.skipped += part.skipped
            result.mounted += part.mounted
            result.restarts += part.restarts
    if tag is not None:
        destination.push_manifest(root, graph.manifests[-1][1], tag)
    return ArtifactCopy(transfer=result, referrers=[n.descriptor for n in nodes], ignored=tree.ignored)


def remove_tree(target: ReferrerEditor, subject_digest: str, digest: str) -> bool:
    """Remove referrer ``digest`` of ``subject_digest`` and, first, everything that refers
    to it (a signature of a removed evaluation would dangle). Returns False if a registry
    kept a manifest it refused to delete (no longer listed, though)."""
    removed_all = True
    for node in reversed(walk(target, digest).nodes):
        removed_all = remove_tree(target, digest, node.descriptor.digest) and removed_all
    removed_all = target.remove_referrer(subject_digest, digest) and removed_all
    target.drop_fallback_index(digest)
    return removed_all


# -- writing a referrer ----------------------------------------------------------------------

# distribution now and then refuses a manifest whose blobs another process is uploading at
# the same moment (several writers attaching to one new repository all push the empty
# config): these codes mean "make sure the blobs are there and try again".
_BLOB_RACE_CODES = ("DIGEST_INVALID", "MANIFEST_BLOB_UNKNOWN", "BLOB_UNKNOWN")
PUSH_REFERRER_ATTEMPTS = 3


def push_referrer(
    target: WritableTarget,
    subject: Descriptor,
    artifact_type: str,
    layers: list[Descriptor],
    annotations: Mapping[str, str],
) -> tuple[Descriptor, bytes]:
    """Write a referrer manifest of ``artifact_type`` for ``subject`` into an open target
    whose ``layers`` blobs are already there (see :func:`push_bytes`); returns its
    descriptor and bytes. The ``org.opencontainers.image.created`` annotation is set to
    now unless given. The target makes it findable as a referrer (the referrers API, the
    fallback index, the layout's index.json): see ``push_manifest``."""
    empty = Descriptor(mediaType=mt.OCI_EMPTY, digest=mt.EMPTY_DIGEST, size=len(mt.EMPTY_JSON))
    if not target.has_blob(empty):
        target.push_blob(empty, verified([mt.EMPTY_JSON], empty))
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": _plain(empty),
        # The image spec asks for at least one layer; the empty descriptor stands in.
        "layers": [_plain(d) for d in layers] or [_plain(empty)],
        "subject": {"mediaType": subject.media_type, "digest": subject.digest, "size": subject.size},
        "annotations": {mt.ANNOTATION_CREATED: _now(), **annotations},
    }
    data = json.dumps(manifest, separators=(",", ":"), ensure_ascii=False).encode()
    descriptor = Descriptor.for_bytes(mt.OCI_MANIFEST, data)
    for attempt in range(PUSH_REFERRER_ATTEMPTS):
        try:
            target.push_manifest(descriptor, data)
            break
        except RegistryError as exc:
            if exc.code not in _BLOB_RACE_CODES or attempt == PUSH_REFERRER_ATTEMPTS - 1:
                raise
            time.sleep(0.1 * (attempt + 1))
            if not target.has_blob(empty):
                target.push_blob(empty, verified([mt.EMPTY_JSON], empty))
    return descriptor, data


def push_bytes(
    target: WritableTarget, media_type: str, data: bytes, annotations: Mapping[str, str] | None = None
) -> Descriptor:
    """Store a small blob (a bundle, a record) in an open target; returns its descriptor."""
    descriptor = Descriptor.for_bytes(media_type, data, dict(annotations) if annotations else None)
    if not target.has_blob(descriptor):
        target.push_blob(descriptor, verified([data], descriptor))
    return descriptor


# Records (statements, bundles, promotion records) are a few hundred bytes to a few KiB;
# their one layer also travels inside the referrer manifest, base64 in the layer
# descriptor's ``data`` field (image spec 1.1, "embedded content"), so a reader that has the
# manifest needs no second request. Past this size a layer is only pushed as a blob: the
# manifest stays small (distribution refuses manifests over 4 MiB; base64 adds a third).
MAX_EMBEDDED = 64 * 1024


def push_record(
    target: WritableTarget,
    subject: Descriptor,
    artifact_type: str,
    media_type: str,
    data: bytes,
    annotations: Mapping[str, str],
) -> Descriptor:
    """Write a one-layer referrer of ``subject`` holding ``data``: the blob is pushed as
    usual (cosign, Kyverno and older ocimodel read it by GET) and, when at most
    :data:`MAX_EMBEDDED` bytes, also embedded in the manifest's layer descriptor, where
    :func:`read_small_layer` finds it. Returns the referrer manifest's descriptor."""
    layer = push_bytes(target, media_type, data)
    if len(data) <= MAX_EMBEDDED:
        layer = layer.model_copy(update={"data": base64.b64encode(data).decode("ascii")})
    descriptor, _ = push_referrer(target, subject, artifact_type, [layer], annotations)
    return descriptor


def read_small_layer(target: BlobFetcher, layer: Descriptor, what: str) -> bytes:
    """The bytes of a small layer whose size the caller has already bounded: its embedded
    ``data`` when the descriptor has one, else its blob read no further than its size.
    Either way checked against the descriptor's digest and size (IntegrityError if not):
    embedded bytes are as untrusted as a blob, and a ``data`` that does not match is
    refused, never replaced by a GET of the blob, so one manifest cannot show two contents."""
    if layer.data is not None:
        if len(layer.data) > 4 * ((layer.size + 2) // 3):
            raise IntegrityError(f"{what}: embedded data is longer than its announced {layer.size} bytes")
        try:
            content = base64.b64decode(layer.data, validate=True)
        except (binascii.Error, ValueError):
            raise IntegrityError(f"{what}: embedded data is not base64") from None
        verify_bytes(content, layer.digest, layer.size, f"{what} (embedded)")
        return content
    chunks_read = bytearray()
    with target.open_blob(layer) as chunks:
        for chunk in chunks:
            chunks_read += chunk
            if len(chunks_read) > layer.size:
                raise IntegrityError(f"{what}: longer than its announced {layer.size} bytes")
    verify_bytes(bytes(chunks_read), layer.digest, layer.size, what)
    return bytes(chunks_read)


def _plain(descriptor: Descriptor) -> dict:
    return descriptor.model_dump(by_alias=True, exclude_none=True)


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
