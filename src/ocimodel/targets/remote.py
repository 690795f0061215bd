"""A repository in a remote registry as a Target."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from ocimodel.errors import NotFound
from ocimodel.oci.digest import verify_bytes
from ocimodel.oci.models import Descriptor
from ocimodel.transport.client import RegistryClient


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
        self.client.put_manifest(self.repository, tag or descriptor.digest, data, descriptor.media_type)

    def tag(self, descriptor: Descriptor, tag: str) -> None:
        data = self.fetch_manifest(descriptor)
        self.client.put_manifest(self.repository, tag, data, descriptor.media_type)

    def list_tags(self) -> list[str]:
        try:
            return self.client.list_tags(self.repository)
        except NotFound:
            return []
