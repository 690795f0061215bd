"""A repository in a remote registry as a Target."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from ocimodel.errors import InvalidManifest, NotFound, RegistryError
from ocimodel.oci import mediatypes as mt
from ocimodel.oci.digest import verify_bytes
from ocimodel.oci.models import Descriptor, Index, parse_manifest
from ocimodel.targets import referrers as rf
from ocimodel.transport.client import RegistryClient

# Registries known (in this process) to have the referrers API, by base URL: probing costs
# a request, and the answer does not change while we run.
_REFERRERS_API: dict[str, bool] = {}


class RemoteRepository:
    def __init__(self, client: RegistryClient, repository: str) -> None:
        self.client = client
        self.repository = repository
        self.name = f"{client.registry}/{repository}"
        # Manifests fetched while resolving a tag, kept so the same bytes are not asked for
        # twice; keyed by digest, so a moved tag cannot swap them (THREATS.md 1).
        self._fetched: dict[str, bytes] = {}

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

    def has_blob(self, descriptor: Descriptor) -> bool:
        return self.client.blob_exists(self.repository, descriptor.digest)

    def mount_from(self, descriptor: Descriptor, source: object) -> bool:
        """Cross-repository mount when ``source`` is another repository of this registry."""
        if not isinstance(source, RemoteRepository) or source.repository == self.repository:
            return False
        if source.client.base_url != self.client.base_url:
            return False
        return self.client.mount_blob(self.repository, descriptor.digest, source.repository)

    def push_blob(self, descriptor: Descriptor, chunks: Iterable[bytes]) -> None:
        self.client.upload_blob(self.repository, descriptor.digest, descriptor.size, chunks)

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
            _REFERRERS_API[self.client.base_url] = True
            return
        # No OCI-Subject: the registry did not index it, so the fallback tag must list it
        # (the distribution spec's rule, even where a GET of the API works).
        entry = rf.referrer_descriptor(data, descriptor.digest)
        rf.update_fallback_index(self._fallback_io(subject.digest), *rf.adding(entry))

    # -- referrers ------------------------------------------------------------------------

    def referrers(self, subject_digest: str, artifact_type: str | None = None) -> list[Descriptor]:
        """What the registry lists as referring to ``subject_digest`` (untrusted: check each
        referrer's own subject before relying on it)."""
        what = f"referrers of {self.name}@{subject_digest}"
        if _REFERRERS_API.get(self.client.base_url, True):
            listing = self.client.get_referrers(self.repository, subject_digest, artifact_type)
            if listing is not None:
                _REFERRERS_API[self.client.base_url] = True
                found: list[Descriptor] = []
                for page in listing.pages:
                    found.extend(rf.parse_listing(page, what))
                    rf.bounded(found, what)
                found = rf.bounded(found, what)
                return found if listing.filtered else rf.of_type(found, artifact_type)
            _REFERRERS_API[self.client.base_url] = False
        return rf.of_type(self._read_fallback(subject_digest), artifact_type)

    def remove_referrer(self, subject_digest: str, digest: str) -> bool:
        """Take a referrer out of the listing and delete its manifest. Returns False when
        the registry refused the delete (it is no longer listed where the client keeps the
        listing, but its manifest stays)."""
        if not _REFERRERS_API.get(self.client.base_url, False):
            rf.update_fallback_index(self._fallback_io(subject_digest), *rf.removing(digest))
        try:
            self.client.delete_manifest(self.repository, digest)
        except NotFound:
            return True
        except RegistryError as exc:
            if _REFERRERS_API.get(self.client.base_url, False) or exc.status not in (400, 403, 405):
                raise
            return False
        return True

    def uses_fallback_tag(self) -> bool:
        return not _REFERRERS_API.get(self.client.base_url, False)

    def delete_manifest(self, digest: str) -> None:
        """Delete a manifest by digest (distribution also drops every tag pointing at it)."""
        self.client.delete_manifest(self.repository, digest)

    def drop_fallback_index(self, subject_digest: str) -> None:
        """Delete the fallback tag of a subject that is going away, so no index tag is
        left dangling. Distribution deletes only by digest, which also drops any other tag
        on the same index bytes: only another empty index, so nothing listed is lost."""
        try:
            fetched = self.client.get_manifest(self.repository, rf.fallback_tag(subject_digest))
        except NotFound:
            return
        if fetched.descriptor.digest == subject_digest:
            return  # the registry aliases the tag to the subject itself
        if rf.parse_listing(fetched.data, "referrers index"):
            raise RegistryError(
                f"referrers index {rf.fallback_tag(subject_digest)} still lists referrers; remove them first"
            )
        self.client.delete_manifest(self.repository, fetched.descriptor.digest)

    def _read_fallback(self, subject_digest: str) -> list[Descriptor]:
        what = f"referrers index {self.repository}:{rf.fallback_tag(subject_digest)}"
        try:
            fetched = self.client.get_manifest(self.repository, rf.fallback_tag(subject_digest))
        except NotFound:
            return []
        if fetched.descriptor.digest == subject_digest:
            return []  # GitLab resolves the fallback tag to the subject itself
        try:
            parsed = parse_manifest(fetched.data, fetched.descriptor.media_type)
        except InvalidManifest as exc:
            raise RegistryError(f"{what} is malformed: {exc.message}") from None
        if not isinstance(parsed, Index):
            raise RegistryError(f"{what} is not an image index", hint="another tool may have used that tag")
        return rf.bounded(list(parsed.manifests), what)

    def _fallback_io(self, subject_digest: str) -> rf.FallbackIO:
        tag = rf.fallback_tag(subject_digest)

        def write(descriptors: list[Descriptor]) -> None:
            self.client.put_manifest(self.repository, tag, rf.index_bytes(descriptors), mt.OCI_INDEX)

        return rf.FallbackIO(
            read=lambda: self._read_fallback(subject_digest),
            write=write,
            what=f"referrers index {self.repository}:{tag}",
        )

    def tag(self, descriptor: Descriptor, tag: str) -> None:
        data = self.fetch_manifest(descriptor)
        self.client.put_manifest(self.repository, tag, data, descriptor.media_type)

    def list_tags(self) -> list[str]:
        try:
            return self.client.list_tags(self.repository)
        except NotFound:
            return []


def _subject(data: bytes) -> Descriptor | None:
    try:
        parsed = parse_manifest(data)
    except InvalidManifest:
        return None  # not ours to judge here; the registry decides whether it takes it
    return parsed.subject
