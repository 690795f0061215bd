"""What a store can do, one ability per protocol, and the compositions the engines need.

Every store ocimodel moves models between -- a registry repository
(:class:`~ocimodel.targets.remote.RemoteRepository`), an OCI layout directory
(:class:`~ocimodel.targets.layout.OciLayout`), a model directory being packaged (read side,
``packaging.package.PackagedModel``) or unpacked (write side, ``packaging.unpack``) -- is
described by the abilities it has, not by its class. Each ability is a small protocol of
one or two methods (fetch a manifest, open a blob, push a blob, resolve, tag, list tags,
list referrers, delete, mount...), and a function asks for the smallest composition of
them it uses: :func:`~ocimodel.targets.copy.copy_graph` reads from a
:class:`ReadableTarget` and writes to a :class:`WritableTarget`, the referrer walk needs
only a :class:`ReferrerReader`, and so on. The stores do not inherit from these classes;
they satisfy them by having the methods (structural typing), so a new store is written
against this page and nothing else.

Which store has what (``-`` where it has not):

=====================  ==========  ================  ============  =============
ability                OciLayout   RemoteRepository  PackagedModel  DirectoryWriter
=====================  ==========  ================  ============  =============
Resolver               yes         yes               yes            -
ManifestFetcher        yes         yes               yes            -
BlobFetcher            yes         yes               yes            -
BlobRangeReader        yes         yes               -              -
BlobChecker            yes         yes               -              yes
BlobPusher             yes         yes               -              yes
ManifestPusher         yes         yes               -              yes
UnhashedPusher         yes         yes               -              -
Mounter                -           yes               -              -
PartFetcher            -           yes               -              -
FileReceiver           -           -                 -              yes
Tagger, TagLister      yes         yes               -              -
ReferrerLister         yes         yes               -              -
ReferrerIndexer        yes         yes               -              -
ReferrerRemover        yes         yes               -              -
ManifestDeleter        yes         yes               -              -
=====================  ==========  ================  ============  =============

An ability a caller cannot do without is a parameter type. The abilities the copy engine
uses only when they are there, mounting and a download in parts into the file a pull
keeps (:class:`PartFetcher` with :class:`FileReceiver`), are ``runtime_checkable`` protocols checked with
``isinstance`` (see :class:`Mounter` for why that shape). Nothing here is found by probing
an object for an attribute.

(Not stores in this sense: the layout archive, ``targets/archive.py``, is a pair of
functions from a layout directory to a tar file and back, and the document cache,
``targets/contentcache.py``, is a get/put by digest with its own small interface.)"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Protocol, runtime_checkable

from ocimodel.oci.models import Descriptor

# -- reading ---------------------------------------------------------------------------------


@runtime_checkable
class Resolver(Protocol):
    def resolve(self, reference: str) -> Descriptor:
        """Tag or digest -> the manifest's descriptor. Raises NotFound."""
        ...


@runtime_checkable
class ManifestFetcher(Protocol):
    def fetch_manifest(self, descriptor: Descriptor) -> bytes:
        """The manifest's bytes, already verified against ``descriptor``."""
        ...


@runtime_checkable
class BlobFetcher(Protocol):
    def open_blob(self, descriptor: Descriptor) -> AbstractContextManager[Iterator[bytes]]:
        """A stream of the blob's bytes. Not verified here: the copy engine verifies."""
        ...


@runtime_checkable
class BlobRangeReader(Protocol):
    def read_blob_range(self, descriptor: Descriptor, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes of the blob at ``offset`` (fewer only at its end). Not
        verified: a digest covers the whole blob (docs/scanning-cli.md says what a piece
        read this way may be trusted for)."""
        ...


@runtime_checkable
class PartFetcher(Protocol):
    """A store that can fetch a large blob over several connections straight into a file
    (a registry: HTTP Range requests), verifying it itself (transport/ranged.py)."""

    def fetches_in_parts(self, descriptor: Descriptor) -> bool: ...

    def fetch_into(self, descriptor: Descriptor, fd: int, cancelled: Callable[[], bool],
                   advanced: Callable[[int], None]) -> bool:
        """Fill the empty file ``fd`` (open read-write) with the blob and check its digest
        (raise if it does not match); False if it cannot (nothing there may be used)."""
        ...


# -- writing ---------------------------------------------------------------------------------


@runtime_checkable
class BlobChecker(Protocol):
    def has_blob(self, descriptor: Descriptor) -> bool:
        """Whether the store holds the blob (a copy skips it, an import checks it)."""
        ...


@runtime_checkable
class BlobPusher(Protocol):
    def push_blob(self, descriptor: Descriptor, chunks: Iterable[bytes]) -> None:
        """Store a blob. ``chunks`` raises if the bytes do not match ``descriptor``; the
        store must then leave nothing behind."""
        ...


@runtime_checkable
class FileReceiver(Protocol):
    def receive_file(self, descriptor: Descriptor, fill: Callable[[int], bool]) -> bool:
        """Store a blob by letting ``fill(fd)`` write it into the file it will keep (open
        read-write, empty). ``fill`` verifies the bytes: the store keeps the file only if
        it returns True (False: nothing kept, push the blob as a stream instead), and
        leaves nothing behind if it raises. False without calling ``fill`` when the
        store wants the blob as a stream."""
        ...


@runtime_checkable
class UnhashedPusher(Protocol):
    def push_unhashed(self, size: int, chunks: Iterable[bytes]) -> str:
        """Store ``size`` bytes whose digest is not known yet, hashing them on the way
        (a push reads each file once instead of twice); returns the digest."""
        ...


@runtime_checkable
class ManifestPusher(Protocol):
    def has_manifest(self, descriptor: Descriptor) -> bool: ...

    def push_manifest(self, descriptor: Descriptor, data: bytes, tag: str | None = None) -> None:
        """Store a manifest (blobs it names are already there) and point ``tag`` at it. A
        manifest with a ``subject`` is made findable as a referrer of it."""
        ...


@runtime_checkable
class Mounter(Protocol):
    """A store that can link a blob in from another store without moving its bytes
    (a registry's cross-repository mount).

    Why an optional ability checked with ``isinstance`` rather than a required method or a
    hook the caller passes (oras-go's ``CopyGraphOptions.MountFrom``): whether a mount is
    possible depends on both stores only (same registry, other repository), which the
    destination alone can judge, and every caller of the copy engine -- push, pull, copy,
    import, export -- would otherwise have to know that and wire a hook; a required method
    would make every store (a directory being unpacked) say "no" to something it has no
    notion of. The protocol names the ability and its signature, so the check is typed and
    greppable, and a store gains mounting by defining the method."""

    def mount_from(self, descriptor: Descriptor, source: ReadableTarget) -> bool:
        """Link the blob in from ``source`` if this store can; False when it cannot (other
        registry, same repository, the registry declined), and the bytes must be copied."""
        ...


# -- tags ------------------------------------------------------------------------------------


@runtime_checkable
class Tagger(Protocol):
    def tag(self, descriptor: Descriptor, tag: str, *, immutable: bool = False) -> None:
        """Point ``tag`` at the manifest; ``immutable``: only if the tag is free or already
        holds it (a check-and-set: raises VersionExists naming what the tag holds)."""
        ...


@runtime_checkable
class TagLister(Protocol):
    def list_tags(self) -> list[str]:
        """Every tag, fallback-index tags included (callers hide those)."""
        ...


# -- referrers and deletion ------------------------------------------------------------------


@runtime_checkable
class ReferrerLister(Protocol):
    def referrers(self, subject_digest: str, artifact_type: str | None = None) -> list[Descriptor]:
        """What the store lists as referring to ``subject_digest`` (untrusted: check each
        referrer's own subject before relying on it). Raises when it cannot list: "could
        not look" must never read as "none"."""
        ...


@runtime_checkable
class ReferrerIndexer(Protocol):
    """How a store lists the referrers pushed to it (``push_manifest`` of a manifest with a
    subject does the listing; these say how, and let a caller group the updates)."""

    def batched_referrers(self) -> AbstractContextManager[None]:
        """Referrers pushed inside the block may be indexed together when it ends (one
        fallback-index update per subject instead of one per referrer)."""
        ...

    def listed_by(self, subject_digest: str) -> str:
        """Where this store lists the referrers of ``subject_digest``, for messages:
        ``"referrers API"``, ``"fallback tag sha256-..."`` or ``"layout index"``. A
        registry is known to have the API only once it said so (it indexed a referrer
        pushed, or answered a listing); until then this names the fallback tag, where the
        client itself lists what it pushes."""
        ...


@runtime_checkable
class ReferrerRemover(Protocol):
    def remove_referrer(self, subject_digest: str, digest: str) -> bool:
        """Take a referrer out of the subject's listing and delete its manifest; False when
        the store kept the manifest (no longer listed, though)."""
        ...

    def drop_fallback_index(self, subject_digest: str) -> None:
        """Delete the (now empty) referrers index of a subject that is going away."""
        ...


@runtime_checkable
class ManifestDeleter(Protocol):
    def delete_manifest(self, digest: str) -> None:
        """Delete a manifest by digest, and with it every tag pointing at it."""
        ...


# -- compositions ----------------------------------------------------------------------------


@runtime_checkable
class ReadableTarget(Resolver, ManifestFetcher, BlobFetcher, Protocol):
    """Something a model can be read from: what the copy engine reads."""

    #: a human name for messages, e.g. ``localhost:5000/team/model`` or ``oci:./store``
    name: str


@runtime_checkable
class WritableTarget(BlobChecker, BlobPusher, ManifestPusher, Protocol):
    """Something a model can be written to: what the copy engine writes."""

    name: str


@runtime_checkable
class ReferrerReader(ManifestFetcher, ReferrerLister, Protocol):
    """What walking a referrer tree needs: list, then fetch each listed manifest."""


@runtime_checkable
class ReferrerSource(ReadableTarget, BlobChecker, ReferrerLister, Protocol):
    """What a copy with referrers reads from (``has_blob``: an archive being imported is
    checked complete before anything is written)."""


@runtime_checkable
class ReferrerWriter(WritableTarget, ReferrerIndexer, Protocol):
    """What a copy with referrers, or a signing, writes to: referrers pushed in a batch."""


@runtime_checkable
class ReferrerEditor(ManifestFetcher, ReferrerLister, ReferrerRemover, Protocol):
    """What removing a referrer and everything below it needs."""


@runtime_checkable
class Target(
    ReadableTarget,
    WritableTarget,
    Tagger,
    TagLister,
    ReferrerLister,
    ReferrerIndexer,
    ReferrerRemover,
    ManifestDeleter,
    Protocol,
):
    """A store a reference can name (what :func:`~ocimodel.targets.open.open_target`
    yields): a registry repository or an OCI layout. Read, written, tagged, with
    referrers, deletable."""
