"""An OCI image layout directory (``oci-layout``, ``index.json``, ``blobs/<alg>/<hex>``) as a
Target: the embedded default store, no server needed. skopeo's ``oci:`` transport and
other tools read the same directory; tags are ``org.opencontainers.image.ref.name``
annotations on the entries of ``index.json``.

Every write is atomic: blobs land in a temporary file and are renamed into place, and
``index.json`` is rewritten whole under an exclusive lock on the directory."""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ocimodel.atomicwrite import atomic_file
from ocimodel.chunks import FileTooLarge, read_capped, read_chunks
from ocimodel.errors import IntegrityError, InvalidManifest, NotFound, SizeMismatch, StoreError
from ocimodel.oci import mediatypes as mt
from ocimodel.oci.digest import algorithm_of, hex_of, validate_digest, verify_bytes
from ocimodel.oci.models import MAX_MANIFEST_BYTES, Descriptor, loads_strict, media_type_of
from ocimodel.targets import referrers as rf
from ocimodel.versiontags import version_taken

MAX_INDEX_BYTES = 64 * 1024 * 1024


@functools.cache
def file_mode() -> int:
    """The mode a plain open() would give a new file (0o666 less the umask). mkstemp creates
    0600 files; a layout is shared (other users, skopeo), so its files get this mode instead.
    Read on first use, never at import: importing a library must not touch the process umask.
    Linux shows the umask in /proc; elsewhere it can only be read by setting it and setting
    it back, which is done once."""
    try:
        with open("/proc/self/status", "rb") as status:  # bytes: no codec to load
            for line in status:
                if line.startswith(b"Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


class OciLayout:
    """A layout directory as a :class:`~ocimodel.targets.base.Target` (not a Mounter:
    blobs from any other store are copied in)."""

    def __init__(self, path: str | os.PathLike[str], *, create: bool = False) -> None:
        self.path = Path(path)
        self.name = f"oci:{path}"
        # digest -> (subject digest, listing descriptor) or None; manifests never change
        self._referrer_cache: dict[str, tuple[str, Descriptor] | None] = {}
        if (self.path / "oci-layout").is_file():
            self._check_layout_file()
        elif create:
            self._initialise()
        elif self.path.exists():
            raise StoreError(f"{self.path} is not an OCI layout (no oci-layout file)")
        else:
            raise NotFound(f"no OCI layout at {self.path}", hint="push to it first, or check the path")

    # -- setup ----------------------------------------------------------------------------

    def _check_layout_file(self) -> None:
        try:
            document = loads_strict((self.path / "oci-layout").read_bytes()[:4096], "oci-layout")
        except OSError as exc:
            raise StoreError(f"cannot read {self.path / 'oci-layout'}: {exc.strerror}") from None
        except Exception:
            raise StoreError(f"{self.path / 'oci-layout'} is not valid JSON") from None
        version = document.get("imageLayoutVersion") if isinstance(document, dict) else None
        if not isinstance(version, str) or not version.startswith("1."):
            raise StoreError(f"{self.path} has unsupported imageLayoutVersion {version!r}")

    def _initialise(self) -> None:
        """Create the layout. Several processes may do this at once (first pushes to a new
        store), so the check and the writes happen under the directory lock, and
        ``oci-layout`` is written last: its presence means the layout is complete."""
        if self.path.exists() and not self.path.is_dir():
            raise StoreError(f"{self.path} exists and is not a directory")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            with self._directory_lock():
                if (self.path / "oci-layout").is_file():
                    self._check_layout_file()
                    return
                unexpected = {p.name for p in self.path.iterdir()} - {"blobs", "index.json"}
                if unexpected:
                    raise StoreError(
                        f"{self.path} exists and is not an OCI layout",
                        hint="choose an empty or new directory for the layout",
                    )
                (self.path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
                if not (self.path / "index.json").exists():
                    _write_atomic(self.path / "index.json", _index_bytes([]))
                layout = json.dumps({"imageLayoutVersion": mt.OCI_LAYOUT_VERSION}).encode()
                _write_atomic(self.path / "oci-layout", layout)
        except OSError as exc:
            raise StoreError(f"cannot create an OCI layout at {self.path}: {exc.strerror}") from None

    # -- blobs ----------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        validate_digest(digest)
        return self.path / "blobs" / algorithm_of(digest) / hex_of(digest)

    def has_blob(self, descriptor: Descriptor) -> bool:
        path = self.blob_path(descriptor.digest)
        try:
            return path.stat().st_size == descriptor.size
        except FileNotFoundError:
            return False

    @contextmanager
    def open_blob(self, descriptor: Descriptor) -> Iterator[Iterator[bytes]]:
        path = self.blob_path(descriptor.digest)
        try:
            handle = open(path, "rb")
        except FileNotFoundError:
            raise NotFound(f"blob {descriptor.digest} not found in {self.name}") from None
        with handle:
            yield read_chunks(handle)

    def read_blob_range(self, descriptor: Descriptor, offset: int, length: int) -> bytes:
        path = self.blob_path(descriptor.digest)
        try:
            with open(path, "rb") as handle:
                return os.pread(handle.fileno(), max(0, min(length, descriptor.size - offset)), offset)
        except FileNotFoundError:
            raise NotFound(f"blob {descriptor.digest} not found in {self.name}") from None

    def push_blob(self, descriptor: Descriptor, chunks: Iterable[bytes]) -> None:
        self._store(chunks, lambda: descriptor.digest)

    def push_unhashed(self, size: int, chunks: Iterable[bytes]) -> str:
        """Store bytes of unknown digest: written and hashed in one pass, then renamed to
        the digest's path; returns the digest."""
        hasher = hashlib.sha256()
        counted = [0]

        def hashed() -> Iterator[bytes]:
            for chunk in chunks:
                hasher.update(chunk)
                counted[0] += len(chunk)
                yield chunk

        def digest() -> str:
            if counted[0] != size:
                raise SizeMismatch(f"file stored in {self.name}", size, counted[0])
            return f"sha256:{hasher.hexdigest()}"

        return self._store(hashed(), digest)

    def _store(self, chunks: Iterable[bytes], name: Callable[[], str]) -> str:
        """Write ``chunks`` to a temporary file beside the blobs and rename it to the digest
        ``name()`` gives once everything is written; nothing is left on failure."""
        directory = self.path / "blobs" / "sha256"
        directory.mkdir(parents=True, exist_ok=True)
        named: list[str] = []

        def final() -> Path:
            named.append(name())
            return self.blob_path(named[0])

        _write_then_rename(directory, chunks, final, f"a blob in {self.path}")
        return named[0]

    # -- manifests ------------------------------------------------------------------------

    def has_manifest(self, descriptor: Descriptor) -> bool:
        return self.has_blob(descriptor)

    def fetch_manifest(self, descriptor: Descriptor) -> bytes:
        if descriptor.size > MAX_MANIFEST_BYTES:
            raise InvalidManifest(f"manifest {descriptor.digest} is over the {MAX_MANIFEST_BYTES}-byte limit")
        data = self._read_blob_capped(descriptor.digest, MAX_MANIFEST_BYTES)
        verify_bytes(data, descriptor.digest, descriptor.size, f"manifest {descriptor.digest}")
        return data

    def push_manifest(self, descriptor: Descriptor, data: bytes, tag: str | None = None) -> None:
        verify_bytes(data, descriptor.digest, descriptor.size, "manifest")
        if not self.has_blob(descriptor):
            self.push_blob(descriptor, [data])
        with self._locked_index() as entries:
            _point(entries, descriptor, tag)

    def resolve(self, reference: str) -> Descriptor:
        entries = self._read_index()
        if ":" in reference and reference.split(":", 1)[0] in ("sha256", "sha512"):
            validate_digest(reference)
            for entry in entries:
                if entry.get("digest") == reference:
                    return _descriptor(entry)
            data = self._read_blob_capped(reference, MAX_MANIFEST_BYTES)
            verify_bytes(data, reference, None, f"manifest {reference}")
            return Descriptor(mediaType=media_type_of(data), digest=reference, size=len(data))
        matches = [e for e in entries if (e.get("annotations") or {}).get(mt.ANNOTATION_REF_NAME) == reference]
        if not matches:
            raise NotFound(
                f"tag {reference!r} not found in {self.name}",
                hint=f"`ocimodel ls {self.name}` lists the tags it has",
            )
        return _descriptor(matches[-1])

    def tag(self, descriptor: Descriptor, tag: str, *, immutable: bool = False) -> None:
        """Point ``tag`` at ``descriptor``. ``immutable`` (a version tag): only if the tag
        is free or holds the same manifest, checked under the same lock as the write, so
        of two processes racing for the tag exactly one gets it; the other gets
        VersionExists naming the manifest the tag holds."""
        if not self.has_blob(descriptor):
            raise NotFound(f"manifest {descriptor.digest} not found in {self.name}")
        with self._locked_index() as entries:
            if immutable:
                holder = _holder(entries, tag)
                if holder is not None and holder != descriptor.digest:
                    raise version_taken(f"{self.name}:{tag}", holder, descriptor.digest)  # index.json untouched
            _point(entries, descriptor, tag)

    # -- referrers ------------------------------------------------------------------------
    # A layout has no referrers API and needs no fallback tag: every manifest pushed to it
    # has an entry in index.json (untagged if need be), so its referrers are the entries
    # whose manifest names the subject.

    def referrers(self, subject_digest: str, artifact_type: str | None = None) -> list[Descriptor]:
        validate_digest(subject_digest)
        found: list[Descriptor] = []
        for entry in self._read_index():
            listed = self._as_referrer(_descriptor(entry))
            if listed is not None and listed[0] == subject_digest:
                found.append(listed[1])
        return rf.of_type(rf.bounded(found, f"referrers of {self.name}@{subject_digest}"), artifact_type)

    def remove_referrer(self, subject_digest: str, digest: str) -> bool:
        """Drop every index.json entry of the referrer, tags included, as a registry's
        delete by digest would (its blob stays: a layout has no garbage collector, and
        another entry may name the same bytes)."""
        self.delete_manifest(digest)
        return True

    def uses_fallback_tag(self) -> bool:
        return False

    def listed_by(self, subject_digest: str) -> str:
        return "layout index"

    @contextmanager
    def batched_referrers(self) -> Iterator[None]:
        yield  # index.json entries are written with each manifest, under the lock

    def entries(self) -> list[Descriptor]:
        """Every manifest index.json names, tagged or not."""
        return [_descriptor(entry) for entry in self._read_index()]

    def referrers_subject(self, descriptor: Descriptor) -> str | None:
        """The subject digest of the manifest ``descriptor`` names, if it has one."""
        listed = self._as_referrer(descriptor)
        return listed[0] if listed else None

    def delete_manifest(self, digest: str) -> None:
        """Drop every index.json entry (tags included) for ``digest``; the blob stays."""
        with self._locked_index() as entries:
            entries[:] = [e for e in entries if e.get("digest") != digest]

    def drop_fallback_index(self, subject_digest: str) -> None:
        return None  # a layout keeps no fallback tags

    def _as_referrer(self, descriptor: Descriptor) -> tuple[str, Descriptor] | None:
        """(subject digest, listing descriptor) of a manifest entry that has a subject."""
        if descriptor.media_type not in mt.MANIFEST_TYPES + mt.INDEX_TYPES:
            return None
        if descriptor.digest not in self._referrer_cache:
            try:
                data = self.fetch_manifest(descriptor)
                subject = rf.subject_of(data)
                listed = rf.referrer_descriptor(data, descriptor.digest) if subject else None
            except (NotFound, InvalidManifest, IntegrityError):
                subject = listed = None  # an entry we cannot read refers to nothing
            self._referrer_cache[descriptor.digest] = (subject.digest, listed) if subject and listed else None
        return self._referrer_cache[descriptor.digest]

    def list_tags(self) -> list[str]:
        names = {
            (entry.get("annotations") or {}).get(mt.ANNOTATION_REF_NAME) for entry in self._read_index()
        }
        return sorted(name for name in names if isinstance(name, str))

    # -- index.json -----------------------------------------------------------------------

    def _read_index(self) -> list[dict[str, Any]]:
        try:
            data = read_capped(self.path / "index.json", MAX_INDEX_BYTES)
        except FileNotFoundError:
            return []
        except FileTooLarge:
            raise StoreError(f"{self.path / 'index.json'} is too large") from None
        except OSError as exc:
            raise StoreError(f"cannot read {self.path / 'index.json'}: {exc.strerror}") from None
        try:
            document = loads_strict(data, "index.json")
        except Exception as exc:
            raise StoreError(f"{self.path / 'index.json'} is malformed: {exc}") from None
        manifests = document.get("manifests") if isinstance(document, dict) else None
        if not isinstance(manifests, list) or not all(isinstance(m, dict) for m in manifests):
            raise StoreError(f"{self.path / 'index.json'} has no valid manifests list")
        return manifests

    @contextmanager
    def _directory_lock(self) -> Iterator[None]:
        """An exclusive lock between processes, held on the layout directory itself."""
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    @contextmanager
    def _locked_index(self) -> Iterator[list[dict[str, Any]]]:
        """Read-modify-write index.json with concurrent writers (other processes) excluded."""
        with self._directory_lock():
            entries = self._read_index()
            yield entries
            _write_atomic(self.path / "index.json", _index_bytes(entries))

    def _read_blob_capped(self, digest: str, cap: int) -> bytes:
        try:
            return read_capped(self.blob_path(digest), cap)
        except FileNotFoundError:
            raise NotFound(f"manifest {digest} not found in {self.name}") from None
        except FileTooLarge:
            raise InvalidManifest(f"manifest {digest} is over the {cap}-byte limit") from None


def _holder(entries: list[dict[str, Any]], tag: str) -> str | None:
    """The digest ``tag`` names in ``entries`` (the last entry wins, as in resolve)."""
    named = [e for e in entries if (e.get("annotations") or {}).get(mt.ANNOTATION_REF_NAME) == tag]
    return str(named[-1].get("digest")) if named else None


def _point(entries: list[dict[str, Any]], descriptor: Descriptor, tag: str | None) -> None:
    """Make ``tag`` (or an untagged entry) in ``entries`` point at ``descriptor``."""
    entry = json.loads(descriptor.to_json())
    if tag is None:
        if not any(e.get("digest") == descriptor.digest for e in entries):
            entry.pop("annotations", None)
            entries.append(entry)
        return
    entries[:] = [e for e in entries if (e.get("annotations") or {}).get(mt.ANNOTATION_REF_NAME) != tag]
    # Drop an untagged entry for the same manifest: the tagged one now keeps it reachable.
    entries[:] = [e for e in entries if e.get("digest") != descriptor.digest or e.get("annotations")]
    entry["annotations"] = {mt.ANNOTATION_REF_NAME: tag}
    entries.append(entry)


def _descriptor(entry: dict[str, Any]) -> Descriptor:
    try:
        return Descriptor.model_validate(entry)
    except Exception:
        raise StoreError(f"index.json holds a malformed descriptor for {str(entry.get('digest'))[:80]}") from None


def _index_bytes(entries: list[dict[str, Any]]) -> bytes:
    document = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries}
    return json.dumps(document, separators=(",", ":")).encode()


def _write_atomic(path: Path, data: bytes) -> None:
    _write_then_rename(path.parent, (data,), lambda: path, str(path))


def _write_then_rename(directory: Path, chunks: Iterable[bytes], final: Callable[[], Path], what: str) -> None:
    """Write ``chunks`` to a temporary file in ``directory``, then rename it to ``final()``,
    asked once everything is written (a blob is named by its digest); nothing is left on
    failure. A file system error is a StoreError saying it could not write ``what``."""
    try:
        with atomic_file(directory / ".new", mode=file_mode()) as file:
            for chunk in chunks:
                file.write(chunk)
            file.path = final()
            file.path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot write {what}: {exc.strerror}") from None
