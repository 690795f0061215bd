"""The OpenSSF model-signing file-level statement (predicate
``https://model_signing/signature/v1.0``): build it from an OCI manifest, check files
against it.

With one raw layer per file, a layer's digest is the file's sha256, so the statement is
built from the manifest alone, without downloading a blob; a pulled directory then
passes ``model_signing verify``. What model-signing 1.1.1 writes and checks:

- resources: ``{"algorithm":"sha256","digest":<hex>,"name":<POSIX path>}`` per regular
  file, sorted as ``pathlib.PurePosixPath`` sorts, i.e. by path components. That is not
  plain string order: ``a/b`` sorts before ``a.txt`` ('/' splits before it compares).
- subject: one entry, ``name`` = the model name (informative only, never compared) and
  ``digest.sha256`` = sha256 over the resources' raw digests in the listed order.
- ``serialization``: ``{"method":"files","hash_type":"sha256","allow_symlinks":false,
  "ignore_paths":[...]}``. Ignored paths are skipped when the directory is hashed; the
  CLI also ignores ``.git``, ``.gitattributes``, ``.github``, ``.gitignore`` by default
  whatever the statement says (``--no-ignore-git-paths`` turns that off).

What may stay unsigned is narrower here than what model-signing ignores, because pull
writes every file of the manifest: only the top-level files ``.gitattributes`` and
``.gitignore`` (``IGNORABLE_FILES``, when the statement ignores them). A file under
``.github/`` (a workflow, or a pickle), or under a directory named ``.gitattributes``, must
be a signed resource, else it is an unsigned file and refused; a ``.git`` entry is refused
always. So a model that has files under ``.github/`` is signed with them as resources and
without ``.github`` in its ignore paths; ``model_signing verify`` then needs
``--no-ignore-git-paths`` for it. A model without such files gets exactly what
model-signing itself writes.
- On verify it only recomputes the root from the listed order and compares the set of
  {path: digest} with the directory's: it does not check the order, duplicates (the later
  silently wins) or names. We do (docs/threats.md 17)."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocimodel.chunks import read_chunks
from ocimodel.errors import InvalidDigest, UnsafePath
from ocimodel.oci import mediatypes as mt
from ocimodel.oci.digest import algorithm_of, hex_of, validate_digest
from ocimodel.oci.models import Manifest
from ocimodel.packaging.paths import check_relative_path, check_unique_paths
from ocimodel.signing.errors import FileSignatureUnsupported, Reason, VerificationFailed
from ocimodel.signing.statement import STATEMENT_TYPE, Statement, Subject, check_predicate_type

MODEL_SIGNING_PREDICATE = "https://model_signing/signature/v1.0"
# What model-signing ignores by default (its CLI adds them on verify regardless).
DEFAULT_IGNORE_PATHS = (".git", ".gitattributes", ".github", ".gitignore")
# The only files a file-level signature may leave out of a model that pull writes: exact
# top-level paths, never a directory (docs/threats.md 17: ``.github/model.pkl`` is not ignorable).
IGNORABLE_FILES = (".gitattributes", ".gitignore")
_SERIALIZATION_KEYS = {"method", "hash_type", "allow_symlinks", "ignore_paths"}
_RESOURCE_KEYS = {"algorithm", "digest", "name"}


def path_order(name: str) -> tuple[str, ...]:
    """The sort key model-signing uses (PurePosixPath ordering: by components)."""
    return tuple(name.split("/"))


def is_ignored(name: str, ignore_paths: Iterable[str]) -> bool:
    """Whether ``name`` is an ignored path or lies under one (model-signing's
    ``Path.is_relative_to`` test, on components, not string prefixes)."""
    return any(name == ignored or name.startswith(ignored + "/") for ignored in ignore_paths)


def is_git_path(name: str) -> bool:
    """``.git`` or anything under it: never part of a model (push leaves it out)."""
    return name == ".git" or name.startswith(".git/")


def may_stay_unsigned(name: str, ignore_paths: Iterable[str]) -> bool:
    """Whether a model file may be absent from the resources: it is ignored by the
    statement and it is one of ``IGNORABLE_FILES`` exactly (not a path beneath one)."""
    return name in IGNORABLE_FILES and is_ignored(name, ignore_paths)


def root_digest(resources: Sequence[tuple[str, str]]) -> str:
    """sha256 hex over the raw digests of ``(name, hex)`` pairs, in the given order."""
    hasher = hashlib.sha256()
    for _, encoded in resources:
        hasher.update(bytes.fromhex(encoded))
    return hasher.hexdigest()


def _sha256_hex(digest: str, name: str) -> str:
    try:
        validate_digest(digest)
    except InvalidDigest as exc:
        raise FileSignatureUnsupported(f"file {name[:120]!r}: {exc}") from None
    if algorithm_of(digest) != "sha256":
        raise FileSignatureUnsupported(
            f"file {name[:120]!r} has a {algorithm_of(digest)} digest; model-signing needs sha256"
        )
    return hex_of(digest)


def files_of_manifest(manifest: Manifest) -> dict[str, str]:
    """{relative path: "sha256:<hex>"} of a ModelPack manifest whose layers are all raw
    files. Anything else cannot be described without downloading it, and a layer left out
    would be pulled unsigned, so it is refused rather than skipped."""
    files: dict[str, str] = {}
    for layer in manifest.layers:
        parsed = mt.parse_model_layer(layer.media_type)
        if parsed is None or parsed[1] != "raw":
            raise FileSignatureUnsupported(
                f"layer {layer.digest} ({layer.media_type[:80]}) is not a raw model file",
                hint="file-level signatures need one raw layer per file (the default push)",
            )
        name = layer.annotation(mt.ANNOTATION_FILEPATH) or layer.annotation(mt.LEGACY_ANNOTATION_FILEPATH)
        if not name:
            raise FileSignatureUnsupported(f"layer {layer.digest} has no {mt.ANNOTATION_FILEPATH} annotation")
        try:
            check_relative_path(name)
        except UnsafePath as exc:
            raise FileSignatureUnsupported(exc.message) from None
        if name in files:
            raise FileSignatureUnsupported(f"manifest names the file {name[:120]!r} twice")
        _sha256_hex(layer.digest, name)
        files[name] = layer.digest
    try:
        check_unique_paths(files)
    except UnsafePath as exc:
        raise FileSignatureUnsupported(exc.message) from None
    if not files:
        raise FileSignatureUnsupported("the manifest has no files to sign")
    return files


def files_statement(
    files: Mapping[str, str],
    model_name: str,
    ignore_paths: Sequence[str] = DEFAULT_IGNORE_PATHS,
) -> Statement:
    """The model-signing statement for ``files`` ({relative path: "sha256:<hex>"}).

    Left out are the files that may stay unsigned (``may_stay_unsigned``: a top-level
    ``.gitattributes`` / ``.gitignore`` that ``ignore_paths`` ignores) and ``.git`` entries
    (which verification refuses anyway). Every other file is a resource, also one under an
    ignored directory such as ``.github/``: pull writes it, so it must be signed. An ignore
    path with a resource beneath it is then dropped from the statement's list (a resource
    may not lie under an ignored path)."""
    for ignored in ignore_paths:
        check_relative_path(ignored)
    resources = sorted(
        (
            (name, _sha256_hex(digest, name))
            for name, digest in files.items()
            if not (may_stay_unsigned(name, ignore_paths) or is_git_path(name))
        ),
        key=lambda item: path_order(item[0]),
    )
    ignore_paths = [p for p in ignore_paths if not any(is_ignored(name, (p,)) for name, _ in resources)]
    predicate: dict[str, Any] = {
        "resources": [{"algorithm": "sha256", "digest": encoded, "name": name} for name, encoded in resources],
        "serialization": {
            "method": "files",
            "hash_type": "sha256",
            "allow_symlinks": False,
            "ignore_paths": sorted(ignore_paths),
        },
    }
    return Statement(
        _type=STATEMENT_TYPE,
        subject=[Subject(name=model_name, digest={"sha256": root_digest(resources)})],
        predicateType=MODEL_SIGNING_PREDICATE,
        predicate=predicate,
    )


def files_statement_for_manifest(
    manifest: Manifest, model_name: str, ignore_paths: Sequence[str] = DEFAULT_IGNORE_PATHS
) -> Statement:
    return files_statement(files_of_manifest(manifest), model_name, ignore_paths)


@dataclass(frozen=True)
class SignedFiles:
    """A checked model-signing statement: the signed files in order, and what it ignores."""

    model_name: str
    root: str
    resources: dict[str, str]  # name -> sha256 hex, in the signed order
    ignore_paths: tuple[str, ...]


def _refuse(reason: Reason, message: str) -> VerificationFailed:
    return VerificationFailed(reason, message)


def _check_name(name: object, what: str) -> str:
    try:
        return check_relative_path(name)
    except UnsafePath as exc:
        raise _refuse(Reason.UNSAFE_NAME, f"{what}: {exc.message}") from None


def _parse_serialization(serialization: object) -> tuple[str, ...]:
    if not isinstance(serialization, dict):
        raise _refuse(Reason.MALFORMED_PREDICATE, "model-signing predicate has no serialization object")
    unknown = set(serialization) - _SERIALIZATION_KEYS
    if unknown:
        # An unknown parameter could change how files are hashed: fail closed.
        raise _refuse(Reason.UNSUPPORTED_SERIALIZATION, f"unknown serialization parameter {min(unknown)[:80]!r}")
    if serialization.get("method") != "files":
        raise _refuse(
            Reason.UNSUPPORTED_SERIALIZATION,
            f"serialization method {str(serialization.get('method'))[:40]!r} is not supported (only 'files')",
        )
    if serialization.get("hash_type") != "sha256":
        raise _refuse(
            Reason.UNSUPPORTED_SERIALIZATION,
            f"hash type {str(serialization.get('hash_type'))[:40]!r} is not supported (only 'sha256')",
        )
    if serialization.get("allow_symlinks") is not False:
        raise _refuse(Reason.UNSUPPORTED_SERIALIZATION, "allow_symlinks must be false: symlinks are never signed")
    ignore_paths = serialization.get("ignore_paths", [])
    if not isinstance(ignore_paths, list):
        raise _refuse(Reason.MALFORMED_PREDICATE, "serialization ignore_paths is not a list")
    return tuple(_check_name(path, "ignore path") for path in ignore_paths)


def parse_files_statement(statement: Statement) -> SignedFiles:
    """Check a (signature-verified) statement as a model-signing file statement: predicate
    type, one named subject, serialization we can reproduce, resources sorted, unique,
    safe, not ignored, and the root digest over them."""
    check_predicate_type(statement, MODEL_SIGNING_PREDICATE)
    if len(statement.subject) != 1:
        raise _refuse(Reason.SUBJECT_MISMATCH, f"model-signing statement has {len(statement.subject)} subjects, expected 1")
    subject = statement.subject[0]
    root = subject.digest.get("sha256")
    if subject.name is None or root is None:
        raise _refuse(Reason.MALFORMED_STATEMENT, "model-signing subject needs a name and a sha256 digest")
    predicate = statement.predicate
    if not isinstance(predicate, dict):
        raise _refuse(Reason.MALFORMED_PREDICATE, "model-signing statement has no predicate")
    ignore_paths = _parse_serialization(predicate.get("serialization"))
    listed = predicate.get("resources")
    if not isinstance(listed, list):
        raise _refuse(Reason.MALFORMED_PREDICATE, "model-signing predicate has no resources list")
    resources: dict[str, str] = {}
    previous: tuple[str, ...] | None = None
    for position, resource in enumerate(listed):
        name, encoded = _parse_resource(resource, position)
        if name in resources:
            raise _refuse(Reason.DUPLICATE_RESOURCE, f"resource {name[:120]!r} is listed twice")
        if previous is not None and path_order(name) < previous:
            raise _refuse(Reason.UNSORTED_RESOURCES, f"resource {name[:120]!r} is out of order")
        if is_ignored(name, ignore_paths):
            raise _refuse(Reason.MALFORMED_PREDICATE, f"resource {name[:120]!r} lies under an ignored path")
        previous = path_order(name)
        resources[name] = encoded
    computed = root_digest(list(resources.items()))
    if computed != root:
        raise _refuse(
            Reason.ROOT_MISMATCH,
            f"subject digest sha256:{root} does not match the resources (sha256:{computed})",
        )
    return SignedFiles(model_name=subject.name, root=root, resources=resources, ignore_paths=ignore_paths)


def _parse_resource(resource: object, position: int) -> tuple[str, str]:
    if not isinstance(resource, dict) or set(resource) != _RESOURCE_KEYS:
        raise _refuse(
            Reason.MALFORMED_PREDICATE,
            f"resource {position} must have exactly algorithm, digest and name",
        )
    name = _check_name(resource["name"], f"resource {position}")
    if resource["algorithm"] != "sha256":
        raise _refuse(Reason.UNSUPPORTED_SERIALIZATION, f"resource {name[:120]!r} is not hashed with sha256")
    encoded = resource["digest"]
    if not isinstance(encoded, str) or len(encoded) != 64 or any(c not in "0123456789abcdef" for c in encoded):
        raise _refuse(Reason.MALFORMED_PREDICATE, f"resource {name[:120]!r} digest is not 64 lower-case hex digits")
    return name, encoded


@dataclass(frozen=True)
class FilesCheck:
    """Files that matched a signed resource, and files the statement says to ignore."""

    verified: tuple[str, ...]
    ignored: tuple[str, ...]


def check_resources(statement: Statement | SignedFiles, files: Mapping[str, str]) -> FilesCheck:
    """Check the complete set of a model's files ({relative path: "sha256:<hex>"}, e.g.
    from ``files_of_manifest``) against a signed statement: every signed file present with
    its digest, and no file that is neither signed nor allowed to stay unsigned (an extra
    ``.pkl`` beside signed safetensors is refused, docs/threats.md 17).

    Only a top-level ``.gitattributes`` / ``.gitignore`` file that the statement ignores may
    stay unsigned (``may_stay_unsigned``). Whatever else the statement's ignore paths
    cover is still a file pull would write, so it must be signed: ``.github/model.pkl`` or
    ``.gitattributes/x.pkl`` unsigned is refused. A ``.git`` file or directory is refused
    even when ignored: a model never needs one (push leaves it out), and ``.git/config``
    or hooks in a pulled directory run code when git runs there."""
    signed = statement if isinstance(statement, SignedFiles) else parse_files_statement(statement)
    verified: list[str] = []
    ignored: list[str] = []
    for name in sorted(files, key=path_order):
        if name not in signed.resources:
            if may_stay_unsigned(name, signed.ignore_paths):
                ignored.append(name)
                continue
            raise _refuse(Reason.UNSIGNED_FILE, f"file {name[:120]!r} is not covered by the signature")
        digest = files[name]
        actual = hex_of(digest) if ":" in digest and algorithm_of(digest) == "sha256" else None
        if actual != signed.resources[name]:
            raise _refuse(
                Reason.FILE_DIGEST_MISMATCH,
                f"file {name[:120]!r} is {digest[:80]}, signed as sha256:{signed.resources[name]}",
            )
        verified.append(name)
    missing = [name for name in signed.resources if name not in files]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise _refuse(Reason.MISSING_FILE, f"signed file {missing[0][:120]!r}{more} is missing")
    return FilesCheck(verified=tuple(verified), ignored=tuple(ignored))


def _hash_file(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in read_chunks(handle):
            hasher.update(chunk)
    return "sha256:" + hasher.hexdigest()


def directory_files(directory: str | os.PathLike[str], ignore_paths: Iterable[str] = ()) -> tuple[dict[str, str], list[str]]:
    """({relative path: "sha256:<hex>"}, skipped entries) of every regular file under
    ``directory``. Skipped are only the files that may stay unsigned (``may_stay_unsigned``
    with ``ignore_paths``) and a ``.git`` directory (a local checkout's, as model-signing
    skips it); everything else under an ignored path, ``.github/`` included, is hashed
    and must then be signed. A symlink or special file is refused: model-signing refuses
    them too, and following one could hash a file outside the model."""
    root = Path(directory)
    ignore_paths = tuple(ignore_paths)
    files: dict[str, str] = {}
    ignored: list[str] = []
    pending = [""]
    while pending:
        prefix = pending.pop()
        try:
            entries = sorted(os.scandir(root / prefix if prefix else root), key=lambda e: e.name)
        except OSError as exc:
            raise _refuse(Reason.UNSUPPORTED_FILE, f"cannot read directory {root / prefix}: {exc.strerror}") from None
        for entry in entries:
            name = f"{prefix}/{entry.name}" if prefix else entry.name
            if name == ".git" and is_ignored(name, ignore_paths):
                ignored.append(name)
                continue
            try:
                mode = entry.stat(follow_symlinks=False).st_mode
                if stat.S_ISREG(mode) and may_stay_unsigned(name, ignore_paths):
                    ignored.append(name)  # a file; a directory of that name is walked
                    continue
                if stat.S_ISREG(mode):
                    files[name] = _hash_file(Path(entry.path))
            except OSError as exc:
                raise _refuse(Reason.UNSUPPORTED_FILE, f"cannot read {name[:120]!r}: {exc.strerror}") from None
            if stat.S_ISDIR(mode):
                pending.append(name)
            elif not stat.S_ISREG(mode):
                kind = "a symlink" if stat.S_ISLNK(mode) else "not a regular file"
                raise _refuse(Reason.UNSUPPORTED_FILE, f"{name[:120]!r} in the model directory is {kind}")
    return files, ignored


def verify_files_statement(statement: Statement, directory: str | os.PathLike[str]) -> FilesCheck:
    """Check a model directory on disk against a signed model-signing statement, as
    ``model_signing verify`` does, plus the checks it leaves out."""
    signed = parse_files_statement(statement)
    files, ignored = directory_files(directory, signed.ignore_paths)
    result = check_resources(signed, files)
    return FilesCheck(verified=result.verified, ignored=tuple(ignored))
