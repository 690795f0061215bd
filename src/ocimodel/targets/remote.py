"""A repository in a remote registry as a :class:`~ocimodel.targets.base.Target`, and a
:class:`~ocimodel.targets.base.Mounter` (cross-repository mounts within one registry).

Whether the registry has the referrers API is learnt from its answers and kept on the
:class:`RegistryClient` (``client.referrers_api``), not in this module: the repositories
opened through one client share what one probe found, and a new client asks again, so two
configurations (or two tests) pointing at the same URL never see each other's answer."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import httpx

from ocimodel import settings
from ocimodel.errors import InvalidManifest, NotFound, RegistryError
from ocimodel.oci import mediatypes as mt
from ocimodel.oci.digest import verify_bytes
from ocimodel.oci.models import MAX_MANIFEST_BYTES, Descriptor, Index, parse_manifest
from ocimodel.targets import referrers as rf
from ocimodel.targets.base import ReadableTarget
from ocimodel.targets.locations import BlobLocations
from ocimodel.transport import ranged
from ocimodel.transport.client import RegistryClient
from ocimodel.versiontags import set_version_tag


class RemoteRepository:
    """One repository of a registry, through a client the caller opened and closes."""

    def __init__(self, client: RegistryClient, repository: str) -> None:
        self.client = client
        self.repository = repository
        self.name = f"{client.registry}/{repository}"
        # Manifests fetched while resolving a tag, kept so the same bytes are not asked for
        # twice; keyed by digest, so a moved tag cannot swap them (docs/threats.md 1).
        self._fetched: dict[str, bytes] = {}
        # subject digest -> referrer entries waiting for one fallback-index update (see
        # batched_referrers); None when every referrer is indexed as it is pushed.
        self._pending: dict[str, list[Descriptor]] | None = None
        # The blob location record a push consults for mounts and settled version tags
        # (targets/locations.py); None: neither is used. Set by the caller that owns it.
        self.locations: BlobLocations | None = None
        self._mount_lock = threading.Lock()  # the copy engine mounts from several threads
        self._refused_sources: set[str] = set()
        self._offered: dict[str, httpx.URL] = {}  # digest -> upload session a declined mount opened

    def resolve(self, reference: str) -> Descriptor:
        # GET, not HEAD: one request gives both the digest (computed from the bytes, not
        # taken from a header) and the manifest the caller will ask for next.
        fetched = self.client.get_manifest(self.repository, reference)
        self._fetched[fetched.descriptor.digest] = fetched.data
        return fetched.descriptor

    def fetch_manifest(self, descriptor: Descriptor) -> bytes:
        data = self._fetched.pop(descriptor.digest, None)
        if data is None:
            data = self.client.get_manifest(self.repository, descriptor.digest).data
        verify_bytes(data, descriptor.digest, descriptor.size, f"manifest {descriptor.digest}")
        return data

    @contextmanager
    def open_blob(self, descriptor: Descriptor) -> Iterator[Iterator[bytes]]:
        with self.client.stream_blob(self.repository, descriptor.digest) as chunks:
            yield chunks

    def fetches_in_parts(self, descriptor: Descriptor) -> bool:
        """Whether this blob is large enough to be fetched over several connections."""
        return ranged.wanted(self.client.registry, descriptor.size)

    def fetch_into(self, descriptor: Descriptor, fd: int, cancelled: Callable[[], bool],
                   advanced: Callable[[int], None]) -> bool:
        """Fetch the blob into the empty file ``fd`` over several connections (Range) and
        check its digest; False when the registry does not honour Range (stream it
        instead). See transport/ranged.py."""
        return ranged.fetch_into(self.client, self.repository, descriptor.digest, descriptor.size, fd,
                                 cancelled=cancelled, advanced=advanced)

    def read_blob_range(self, descriptor: Descriptor, offset: int, length: int) -> bytes:
        return self.client.fetch_range(self.repository, descriptor.digest, offset, min(length, max(descriptor.size - offset, 0)))

    def has_blob(self, descriptor: Descriptor) -> bool:
        return self.client.blob_exists(self.repository, descriptor.digest)

    def mount_from(self, descriptor: Descriptor, source: ReadableTarget) -> bool:
        """Cross-repository mount when ``source`` is another repository of this registry;
        from any other source (a push from a directory), a mount from where the blob
        location record last saw the blob on this registry, if any (see _mount_recorded)."""
        if not isinstance(source, RemoteRepository):
            return self._mount_recorded(descriptor)
        if source.repository == self.repository or source.client.base_url != self.client.base_url:
            return False
        return self.client.mount_blob(self.repository, descriptor.digest, source.repository)

    def _mount_recorded(self, descriptor: Descriptor) -> bool:
        """One mount from the newest recorded repository of this registry that holds the
        blob (docs/push-fast-paths.md). A record is a hint: a registry that declines (the
        blob or the repository is gone: 202) has opened an upload session, which push_blob
        then uses, so a stale record costs this one request; a refusal (the token does not
        cover pulling from there: 401/403, or another 4xx) costs it too, and that repository
        is not asked again by this push. Either way the record is dropped."""
        locations = self.locations
        if locations is None:
            return False
        registry = self.client.registry
        with self._mount_lock:
            refused = set(self._refused_sources)
        found = [r for r in locations.candidates(registry, descriptor.digest, besides=self.repository) if r not in refused]
        if not found:
            return False
        source = found[0]
        try:
            mounted, session = self.client.mount_or_start_upload(self.repository, descriptor.digest, source)
        except RegistryError as exc:
            if exc.transient or exc.status is None or exc.status == 429 or not 400 <= exc.status < 500:
                raise  # the registry is failing, not the record: the upload would meet it too
            with self._mount_lock:
                self._refused_sources.add(source)
            locations.forget(registry, source, descriptor.digest)
            return False
        if mounted:
            return True
        locations.forget(registry, source, descriptor.digest)
        if session is not None:
            with self._mount_lock:
                self._offered[descriptor.digest] = session
        return False

    def push_blob(self, descriptor: Descriptor, chunks: Iterable[bytes]) -> None:
        # The session a declined mount opened, if any (used once: a restart opens its own).
        with self._mount_lock:
            session = self._offered.pop(descriptor.digest, None)
        self.client.upload_blob(self.repository, descriptor.digest, descriptor.size, chunks, location=session)

    def push_unhashed(self, size: int, chunks: Iterable[bytes]) -> str:
        """Upload bytes of unknown digest, hashing them on the way; returns the digest."""
        return self.client.upload_unhashed(self.repository, size, chunks)

    def has_manifest(self, descriptor: Descriptor) -> bool:
        return self.client.head_manifest(self.repository, descriptor.digest) is not None

    def push_manifest(self, descriptor: Descriptor, data: bytes, tag: str | None = None) -> None:
        """Store a manifest; one with a ``subject`` is also made findable as a referrer."""
        subject = _subject(data)
        _, indexed = self.client.put_manifest_indexed(
            self.repository, tag or descriptor.digest, data, descriptor.media_type
        )
        if subject is None:
            return
        if indexed == subject.digest:
            self.client.referrers_api = True
            return
        # No OCI-Subject: the registry did not index it, so the fallback tag must list it
        # (the distribution spec's rule, even where a GET of the API works).
        entry = rf.referrer_descriptor(data, descriptor.digest)
        if self._pending is not None:
            self._pending.setdefault(subject.digest, []).append(entry)
            return
        rf.update_fallback_index(self._fallback_io(subject.digest), *rf.adding([entry]))

    @contextmanager
    def batched_referrers(self) -> Iterator[None]:
        """Index the referrers pushed inside the block with one fallback-index update per
        subject when the block ends (each update waits out concurrent writers: a copy of
        ten signatures pays that once, not ten times). If the block fails, what it pushed
        stays unlisted; pushing again lists it."""
        if self._pending is not None:
            yield  # already batching
            return
        self._pending = {}
        try:
            yield
            pending, self._pending = self._pending, None
            for subject_digest, entries in pending.items():
                rf.update_fallback_index(self._fallback_io(subject_digest), *rf.adding(entries))
        finally:
            self._pending = None

    # -- referrers ------------------------------------------------------------------------

    def referrers(self, subject_digest: str, artifact_type: str | None = None) -> list[Descriptor]:
        """What the registry lists as referring to ``subject_digest`` (untrusted: check each
        referrer's own subject before relying on it)."""
        what = f"referrers of {self.name}@{subject_digest}"
        # Probed once per client (a request; the answer does not change while it is open).
        known = self.client.referrers_api
        if known is not False:
            listing = self.client.get_referrers(self.repository, subject_digest, artifact_type)
            if listing is not None:
                self.client.referrers_api = True
                found: list[Descriptor] = []
                for page in listing.pages:
                    before = len(found)
                    found = rf.bounded(found + rf.parse_listing(page, what), what)
                    if len(found) == before and len(listing.pages) > 1:
                        break  # a page that adds nothing: a Link going round in circles
                # Filtered again whatever the registry says it did: cheap, and a registry
                # that claims a filter it did not apply must not choose what we see.
                return rf.of_type(found, artifact_type)
            if known:
                # It has the API (it indexed a referrer for us): a 404 now is a fault,
                # not a reason to believe there are no referrers.
                raise RegistryError(f"{what}: the registry's referrers API answered 404", hint="try again")
            self.client.referrers_api = False
        return rf.of_type(self._read_fallback(subject_digest), artifact_type)

    def remove_referrer(self, subject_digest: str, digest: str) -> bool:
        """Take a referrer out of the listing and delete its manifest. Returns False when
        the registry refused the delete (it is no longer listed where the client keeps the
        listing, but its manifest stays)."""
        if not self.client.referrers_api:
            rf.update_fallback_index(self._fallback_io(subject_digest), *rf.removing(digest))
        try:
            self.client.delete_manifest(self.repository, digest)
        except NotFound:
            return True
        except RegistryError as exc:
            if self.client.referrers_api or exc.status not in (400, 403, 405):
                raise
            return False
        return True

    def uses_fallback_tag(self) -> bool:
        """Whether referrers pushed now are listed under the fallback tag: unless the
        registry was seen to have the referrers API, the client keeps the listing."""
        return not self.client.referrers_api

    def listed_by(self, subject_digest: str) -> str:
        if self.uses_fallback_tag():
            return f"fallback tag {rf.fallback_tag(subject_digest)}"
        return "referrers API"

    def delete_manifest(self, digest: str) -> None:
        """Delete a manifest by digest (distribution also drops every tag pointing at it)."""
        self.client.delete_manifest(self.repository, digest)

    def drop_fallback_index(self, subject_digest: str) -> None:
        """Delete the fallback tag of a subject that is going away (its referrers were
        removed first), so no index tag is left dangling. Distribution deletes only by
        digest, which also drops any other tag on the same index bytes: only an index
        listing exactly the same entries, i.e. none once they are gone."""
        try:
            fetched = self.client.get_manifest(self.repository, rf.fallback_tag(subject_digest))
        except NotFound:
            return
        if fetched.descriptor.digest == subject_digest:
            return  # the registry aliases the tag to the subject itself
        self.client.delete_manifest(self.repository, fetched.descriptor.digest)

    def _read_fallback(self, subject_digest: str, *, for_update: bool = False) -> list[Descriptor]:
        """The fallback index of a subject. Read for an update, it is not capped in count
        (so an index someone else grew past the cap can still be repaired) and a registry
        that aliases the tag to the subject itself is an error (it cannot hold an index)."""
        what = f"referrers index {self.repository}:{rf.fallback_tag(subject_digest)}"
        try:
            fetched = self.client.get_manifest(self.repository, rf.fallback_tag(subject_digest))
        except NotFound:
            return []
        if fetched.descriptor.digest == subject_digest:
            if for_update:
                raise RegistryError(
                    f"{what}: the registry resolves this tag to the model itself, so it cannot hold a referrers index",
                    hint="this registry (GitLab does this) cannot store referrers without the referrers API",
                )
            return []  # GitLab resolves the fallback tag to the subject itself
        try:
            parsed = parse_manifest(fetched.data, fetched.descriptor.media_type)
        except InvalidManifest as exc:
            raise RegistryError(f"{what} is malformed: {exc.message}") from None
        if not isinstance(parsed, Index):
            raise RegistryError(f"{what} is not an image index", hint="another tool may have used that tag")
        return list(parsed.manifests) if for_update else rf.bounded(list(parsed.manifests), what)

    def _fallback_io(self, subject_digest: str) -> rf.FallbackIO:
        tag = rf.fallback_tag(subject_digest)
        what = f"referrers index {self.repository}:{tag}"

        def write(descriptors: list[Descriptor], deadline: float | None) -> None:
            data = rf.index_bytes(descriptors)
            if len(data) > MAX_MANIFEST_BYTES:
                raise RegistryError(f"{what} would be over {MAX_MANIFEST_BYTES >> 20} MiB", hint="detach referrers that are no longer needed")
            try:
                self.client.put_manifest(self.repository, tag, data, mt.OCI_INDEX, deadline=deadline)
            except RegistryError as exc:
                exc.message = f"{what}: {exc.message}"
                raise

        def prune() -> None:
            current = self._read_fallback(subject_digest, for_update=True)
            alive = [d for d in current if self.client.head_manifest(self.repository, d.digest) is not None]
            if len(alive) != len(current):
                self.client.put_manifest(self.repository, tag, rf.index_bytes(alive), mt.OCI_INDEX)

        return rf.FallbackIO(
            read=lambda: self._read_fallback(subject_digest, for_update=True), write=write, what=what, prune=prune,
        )

    def tag(self, descriptor: Descriptor, tag: str, *, immutable: bool = False) -> None:
        """Point ``tag`` at ``descriptor``. ``immutable`` (a version tag): only if the tag
        is free or holds the same manifest; distribution has no compare-and-swap, so the
        write is checked afterwards (versiontags.set_version_tag), and of two processes
        racing for the tag exactly one gets it."""
        data = self.fetch_manifest(descriptor)
        if not immutable:
            self.client.put_manifest(self.repository, tag, data, descriptor.media_type)
            return

        def read() -> str | None:
            # GET, not HEAD: the digest is computed from the bytes, not taken from a header.
            try:
                return self.client.get_manifest(self.repository, tag).descriptor.digest
            except NotFound:
                return None

        def write(deadline: float | None) -> None:
            self.client.put_manifest(self.repository, tag, data, descriptor.media_type, deadline=deadline)

        set_version_tag(
            read, write, descriptor.digest, f"{self.name}:{tag}", settle=settings.tag_settle(),
            prepare=lambda: self.client.authorize_manifest_put(self.repository, tag),
        )
        if self.locations is not None:
            self.locations.record_settled(self.client.registry, self.repository, tag, descriptor.digest)

    def settled_version(self, tag: str, digest: str) -> bool:
        """Whether a check-and-set of this user saw the version ``tag`` settle on ``digest``
        (the blob location record). Then a read that finds ``digest`` in the tag now is
        final: every racer's write landed before that check-and-set's deciding read, so
        nothing is left to wait for (docs/push-fast-paths.md)."""
        return self.locations is not None and self.locations.settled(self.client.registry, self.repository, tag, digest)

    def keep_manifest(self, descriptor: Descriptor, data: bytes) -> None:
        """The bytes of a manifest this process built (a push): a later ``tag`` of it need
        not fetch them back."""
        self._fetched[descriptor.digest] = data

    def list_tags(self, *, missing_ok: bool = True) -> list[str]:
        """The repository's tags (each checked against the tag grammar by the client).
        A repository the registry does not know has none, unless ``missing_ok=False``:
        then it raises :class:`NotFound` (``ls`` of a typo must not look like an empty
        repository)."""
        try:
            return self.client.list_tags(self.repository)
        except NotFound:
            if not missing_ok:
                raise
            return []


def _subject(data: bytes) -> Descriptor | None:
    try:
        parsed = parse_manifest(data)
    except InvalidManifest:
        return None  # not ours to judge here; the registry decides whether it takes it
    return parsed.subject
