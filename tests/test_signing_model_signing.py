"""The OpenSSF model-signing file statement: built from a packaged manifest (no blob
read), accepted by the real ``model_signing verify key`` CLI, and the reverse; plus the
file-level attacks of docs/threats.md 17."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest

from ocimodel.oci import mediatypes as mt
from ocimodel.oci.models import Descriptor, Manifest
from ocimodel.packaging.package import package_directory
from ocimodel.signing.bundle import sign_statement, verify_key_bundle
from ocimodel.signing.errors import FileSignatureUnsupported, Reason, VerificationFailed
from ocimodel.signing.files_statement import (
    DEFAULT_IGNORE_PATHS,
    MODEL_SIGNING_PREDICATE,
    check_resources,
    files_of_manifest,
    files_statement,
    files_statement_for_manifest,
    parse_files_statement,
    root_digest,
    verify_files_statement,
)
from ocimodel.signing.keys import generate_key_pair
from ocimodel.signing.statement import Statement
from tests.support.model_signing_oracle import (
    bundle_statement,
    run_cli,
    sign_with_key,
    verify_with_cli,
)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    root = tmp_path / "tiny-model"
    (root / "a").mkdir(parents=True)
    (root / "tokenizer").mkdir()
    (root / "config.json").write_text('{"architectures": ["Tiny"]}')
    (root / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      " + bytes(range(64)))
    (root / "tokenizer" / "tokenizer.json").write_text('{"version": "1.0"}')
    # 'a/b.bin' sorts before 'a-b' and 'a.txt' for model-signing (by path components),
    # after them in plain string order: the order must be model-signing's.
    (root / "a" / "b.bin").write_bytes(b"b")
    (root / "a-b").write_text("dash")
    (root / "a.txt").write_text("dot")
    # Hugging Face repositories carry one; model-signing ignores it by default.
    (root / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    return root


@pytest.fixture
def keypair(tmp_path: Path):
    key = generate_key_pair(tmp_path / "signing.pem", tmp_path / "signing.pub")
    return key, tmp_path / "signing.pem", tmp_path / "signing.pub"


def _packaged_files(model_dir: Path) -> tuple[Manifest, dict[str, str]]:
    manifest = package_directory(model_dir).manifest
    return manifest, files_of_manifest(manifest)


def _resource_names(statement: Statement) -> list[str]:
    return [r["name"] for r in statement.predicate["resources"]]


# --- building ---------------------------------------------------------------------------


def test_statement_from_manifest_has_the_model_signing_shape(model_dir: Path) -> None:
    manifest, files = _packaged_files(model_dir)
    statement = files_statement_for_manifest(manifest, "tiny-model")
    document = json.loads(statement.to_json())
    assert document["_type"] == "https://in-toto.io/Statement/v1"
    assert document["predicateType"] == "https://model_signing/signature/v1.0"
    assert document["predicate"]["serialization"] == {
        "method": "files",
        "hash_type": "sha256",
        "allow_symlinks": False,
        "ignore_paths": [".git", ".gitattributes", ".github", ".gitignore"],
    }
    assert _resource_names(statement) == ["a/b.bin", "a-b", "a.txt", "config.json", "model.safetensors", "tokenizer/tokenizer.json"]
    assert ".gitattributes" in files  # packaged and pushed, but not a resource
    resources = [(r["name"], r["digest"]) for r in document["predicate"]["resources"]]
    assert document["subject"] == [{"name": "tiny-model", "digest": {"sha256": root_digest(resources)}}]


def test_statement_equals_what_model_signing_computes_from_the_directory(model_dir: Path, keypair, tmp_path: Path) -> None:
    """model-signing signs the directory (its public API, its defaults); the statement in its
    bundle is the one ocimodel builds from the packaged manifest alone."""
    _, private, _ = keypair
    theirs = bundle_statement(sign_with_key(model_dir, private, tmp_path / "theirs.sig"))
    assert theirs["predicateType"] == MODEL_SIGNING_PREDICATE
    ours = json.loads(files_statement_for_manifest(package_directory(model_dir).manifest, "tiny-model").to_json())
    assert ours["subject"] == theirs["subject"]
    assert ours["predicate"]["resources"] == theirs["predicate"]["resources"]
    theirs_serialization = dict(theirs["predicate"]["serialization"], ignore_paths=sorted(theirs["predicate"]["serialization"]["ignore_paths"]))
    assert ours["predicate"]["serialization"] == theirs_serialization


def test_manifest_that_cannot_be_described_without_download(model_dir: Path) -> None:
    manifest = package_directory(model_dir).manifest
    first = manifest.layers[0]
    tar = first.model_copy(update={"media_type": mt.model_layer("weight", "tar")})
    with pytest.raises(FileSignatureUnsupported, match="not a raw model file"):
        files_of_manifest(manifest.model_copy(update={"layers": [tar, *manifest.layers[1:]]}))
    unnamed = first.model_copy(update={"annotations": {}})
    with pytest.raises(FileSignatureUnsupported, match="annotation"):
        files_of_manifest(manifest.model_copy(update={"layers": [unnamed]}))
    sha512 = Descriptor(mediaType=first.media_type, digest="sha512:" + "0" * 128, size=1, annotations=first.annotations)
    with pytest.raises(FileSignatureUnsupported, match="sha256"):
        files_of_manifest(manifest.model_copy(update={"layers": [sha512]}))
    escaping = first.model_copy(update={"annotations": {mt.ANNOTATION_FILEPATH: "../evil.pkl"}})
    with pytest.raises(FileSignatureUnsupported, match="'..'"):
        files_of_manifest(manifest.model_copy(update={"layers": [escaping]}))
    with pytest.raises(FileSignatureUnsupported, match="twice"):
        files_of_manifest(manifest.model_copy(update={"layers": [first, first]}))


# --- interoperability with the real model_signing CLI ------------------------------------


@pytest.mark.slow
def test_model_signing_cli_accepts_our_bundle_and_rejects_a_tampered_file(model_dir: Path, keypair, tmp_path: Path) -> None:
    key, _, public = keypair
    statement = files_statement_for_manifest(package_directory(model_dir).manifest, "tiny-model")
    signature = tmp_path / "model.sig"  # outside the model: model-signing would hash it
    signature.write_bytes(sign_statement(statement, key))

    accepted = verify_with_cli(model_dir, signature, public)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert "Verification succeeded" in accepted.stdout

    (model_dir / "a" / "b.bin").write_bytes(b"B")
    rejected = verify_with_cli(model_dir, signature, public)
    assert rejected.returncode != 0
    assert "Hash mismatch for 'a/b.bin'" in rejected.stdout + rejected.stderr


@pytest.mark.slow
def test_our_verifier_accepts_model_signing_cli_output(model_dir: Path, keypair, tmp_path: Path) -> None:
    key, private, _ = keypair
    signature = tmp_path / "theirs.sig"
    signed = run_cli("sign", "key", model_dir, "--signature", signature, "--private_key", private)
    assert signed.returncode == 0, signed.stdout + signed.stderr
    verified = verify_key_bundle(signature.read_bytes(), [key.public_key()])
    result = verify_files_statement(verified.statement, model_dir)
    assert result.ignored == (".gitattributes",)
    # The same signature checked against the pushed manifest, without the directory.
    manifest_check = check_resources(verified.statement, files_of_manifest(package_directory(model_dir).manifest))
    assert manifest_check.verified == result.verified
    assert manifest_check.ignored == (".gitattributes",)


# --- docs/threats.md 17: file-level attacks ------------------------------------------------------


def _statement_dict(model_dir: Path) -> dict:
    _, files = _packaged_files(model_dir)
    return json.loads(files_statement(files, "tiny-model").to_json())


def _refused(reason: Reason, document: dict, files: dict[str, str] | None = None) -> VerificationFailed:
    statement = Statement.model_validate(document)
    with pytest.raises(VerificationFailed) as caught:
        if files is None:
            parse_files_statement(statement)
        else:
            check_resources(statement, files)
    assert caught.value.reason == reason, caught.value.message
    return caught.value


def _reroot(document: dict) -> dict:
    """Recompute the subject digest, as a forger who controls the whole statement would."""
    resources = [(r["name"], r["digest"]) for r in document["predicate"].get("resources", [])]
    for subject in document["subject"]:
        subject["digest"]["sha256"] = root_digest(resources)
    return document


def test_root_digest_mismatch(model_dir: Path) -> None:
    document = _statement_dict(model_dir)
    document["predicate"]["resources"][0]["digest"] = "0" * 64
    _refused(Reason.ROOT_MISMATCH, document)


def test_unsorted_resources(model_dir: Path) -> None:
    document = _statement_dict(model_dir)
    # Plain string order, which is not model-signing's order.
    document["predicate"]["resources"].sort(key=lambda r: r["name"])
    _refused(Reason.UNSORTED_RESOURCES, _reroot(document))


def test_duplicate_resources(model_dir: Path) -> None:
    document = _statement_dict(model_dir)
    resources = document["predicate"]["resources"]
    # model-signing keeps the last of two entries for one path; we refuse both.
    resources.insert(1, dict(resources[0], digest="f" * 64))
    _refused(Reason.DUPLICATE_RESOURCE, _reroot(document))


@pytest.mark.parametrize("name", ["../evil.pkl", "/etc/passwd", "a/../../x", "./config.json", "a//b", "a\\b", ""])
def test_unsafe_resource_names(model_dir: Path, name: str) -> None:
    document = _statement_dict(model_dir)
    document["predicate"]["resources"].insert(0, {"algorithm": "sha256", "digest": "0" * 64, "name": name})
    _refused(Reason.UNSAFE_NAME, _reroot(document))


def test_unsafe_ignore_path(model_dir: Path) -> None:
    document = _statement_dict(model_dir)
    document["predicate"]["serialization"]["ignore_paths"].append("../outside")
    _refused(Reason.UNSAFE_NAME, document)


def test_extra_unsigned_pickle_beside_the_signed_files(model_dir: Path) -> None:
    _, files = _packaged_files(model_dir)
    document = json.loads(files_statement(files, "tiny-model").to_json())
    extra = dict(files, **{"model.pkl": "sha256:" + "e" * 64})
    error = _refused(Reason.UNSIGNED_FILE, document, extra)
    assert "model.pkl" in error.message
    # The same on disk.
    (model_dir / "model.pkl").write_bytes(b"\x80\x04cos\nsystem\n.")
    with pytest.raises(VerificationFailed) as caught:
        verify_files_statement(Statement.model_validate(document), model_dir)
    assert caught.value.reason == Reason.UNSIGNED_FILE


def test_missing_and_altered_files(model_dir: Path) -> None:
    _, files = _packaged_files(model_dir)
    document = json.loads(files_statement(files, "tiny-model").to_json())
    fewer = {name: digest for name, digest in files.items() if name != "config.json"}
    _refused(Reason.MISSING_FILE, document, fewer)
    altered = dict(files, **{"config.json": "sha256:" + "0" * 64})
    _refused(Reason.FILE_DIGEST_MISMATCH, document, altered)


def test_git_directory_is_refused_even_though_ignored(model_dir: Path) -> None:
    _, files = _packaged_files(model_dir)
    document = json.loads(files_statement(files, "tiny-model").to_json())
    hostile = dict(files, **{".git/config": "sha256:" + "c" * 64})
    _refused(Reason.UNSIGNED_FILE, document, hostile)
    # A real .git directory in a local checkout is skipped, as model-signing skips it.
    (model_dir / ".git").mkdir()
    (model_dir / ".git" / "config").write_text("[core]\n")
    assert ".git" in verify_files_statement(Statement.model_validate(document), model_dir).ignored


@pytest.mark.parametrize(
    "extra",
    [".github/model.pkl", ".github/workflows/x/model.pkl", ".gitattributes/x.pkl", ".gitignore/x.pkl", "a/.gitattributes"],
)
def test_only_top_level_git_files_may_stay_unsigned(model_dir: Path, extra: str) -> None:
    """Issue 7 review: files under .github/ or beneath a directory named .gitattributes
    counted as "ignored" and passed, although pull writes them (an extra pickle, docs/threats.md 17)."""
    _, files = _packaged_files(model_dir)
    document = json.loads(files_statement(files, "tiny-model").to_json())
    error = _refused(Reason.UNSIGNED_FILE, document, dict(files, **{extra: "sha256:" + "e" * 64}))
    assert extra in error.message
    # The same on disk (where a directory .gitattributes replaces the file of that name).
    if extra.startswith(".gitattributes/"):
        (model_dir / ".gitattributes").unlink()
    (model_dir / extra).parent.mkdir(parents=True, exist_ok=True)
    (model_dir / extra).write_bytes(b"\x80\x04cos\nsystem\n.")
    with pytest.raises(VerificationFailed) as caught:
        verify_files_statement(Statement.model_validate(document), model_dir)
    assert caught.value.reason == Reason.UNSIGNED_FILE and extra in caught.value.message


def test_top_level_gitattributes_and_gitignore_may_stay_unsigned(model_dir: Path) -> None:
    _, files = _packaged_files(model_dir)
    document = json.loads(files_statement(files, "tiny-model").to_json())
    both = dict(files, **{".gitignore": "sha256:" + "e" * 64})
    assert check_resources(Statement.model_validate(document), both).ignored == (".gitattributes", ".gitignore")
    # Only when the statement ignores them.
    bare = json.loads(files_statement({k: v for k, v in files.items() if k != ".gitattributes"}, "m", ignore_paths=()).to_json())
    _refused(Reason.UNSIGNED_FILE, bare, files)


@pytest.mark.slow
def test_a_model_with_github_files_is_signed_with_them(model_dir: Path, keypair, tmp_path: Path) -> None:
    """What pull writes is signed: a .github/ file is a resource, and .github leaves the
    statement's ignore paths (a resource may not lie under one)."""
    (model_dir / ".github" / "workflows").mkdir(parents=True)
    (model_dir / ".github" / "workflows" / "ci.yml").write_text("on: push\n")
    manifest, files = _packaged_files(model_dir)
    statement = files_statement_for_manifest(manifest, "tiny-model")
    assert ".github/workflows/ci.yml" in _resource_names(statement)
    assert ".gitattributes" not in _resource_names(statement)
    assert statement.predicate["serialization"]["ignore_paths"] == [".git", ".gitattributes", ".gitignore"]
    assert check_resources(statement, files).ignored == (".gitattributes",)
    assert verify_files_statement(statement, model_dir).ignored == (".gitattributes",)
    key, _, public = keypair
    signature = tmp_path / "model.sig"
    signature.write_bytes(sign_statement(statement, key))
    # model-signing skips .github unless told not to; then it agrees.
    accepted = verify_with_cli(model_dir, signature, public, "--no-ignore-git-paths")
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr


def test_symlink_in_the_directory_is_refused(model_dir: Path, tmp_path: Path) -> None:
    _, files = _packaged_files(model_dir)
    document = json.loads(files_statement(files, "tiny-model").to_json())
    (tmp_path / "outside").write_text("secret")
    os.symlink(tmp_path / "outside", model_dir / "link")
    with pytest.raises(VerificationFailed) as caught:
        verify_files_statement(Statement.model_validate(document), model_dir)
    assert caught.value.reason == Reason.UNSUPPORTED_FILE


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda d: d.update(predicateType="https://model_signing/Digests/v0.1"), Reason.PREDICATE_TYPE),
        (lambda d: d["subject"].append(copy.deepcopy(d["subject"][0])), Reason.SUBJECT_MISMATCH),
        (lambda d: d["subject"][0].pop("name"), Reason.MALFORMED_STATEMENT),
        (lambda d: d["predicate"]["serialization"].update(method="shards", shard_size=1000), Reason.UNSUPPORTED_SERIALIZATION),
        (lambda d: d["predicate"]["serialization"].update(method="shards"), Reason.UNSUPPORTED_SERIALIZATION),
        (lambda d: d["predicate"]["serialization"].update(hash_type="blake3"), Reason.UNSUPPORTED_SERIALIZATION),
        (lambda d: d["predicate"]["serialization"].update(allow_symlinks=True), Reason.UNSUPPORTED_SERIALIZATION),
        (lambda d: d["predicate"]["serialization"].pop("allow_symlinks"), Reason.UNSUPPORTED_SERIALIZATION),
        (lambda d: d["predicate"]["resources"][0].update(algorithm="blake2"), Reason.UNSUPPORTED_SERIALIZATION),
        (lambda d: d["predicate"]["resources"][0].update(digest="AB" * 32), Reason.MALFORMED_PREDICATE),
        (lambda d: d["predicate"]["resources"][0].update(uri="https://x"), Reason.MALFORMED_PREDICATE),
        (lambda d: d["predicate"].pop("resources"), Reason.MALFORMED_PREDICATE),
        (lambda d: d["predicate"]["resources"].insert(0, {"algorithm": "sha256", "digest": "0" * 64, "name": ".github/x"}), Reason.MALFORMED_PREDICATE),
    ],
    ids=[
        "v0.1-predicate",
        "two-subjects",
        "no-name",
        "shards",
        "unknown-method",
        "blake3",
        "symlinks",
        "no-allow-symlinks",
        "resource-algorithm",
        "upper-hex",
        "extra-resource-field",
        "no-resources",
        "resource-under-ignored-path",
    ],
)
def test_statements_we_cannot_reproduce_are_refused(model_dir: Path, change, reason: Reason) -> None:
    document = _statement_dict(model_dir)
    change(document)
    _refused(reason, _reroot(document))


def test_statement_without_ignore_paths_is_accepted(model_dir: Path) -> None:
    _, files = _packaged_files(model_dir)
    statement = files_statement(files, "tiny-model", ignore_paths=())
    document = json.loads(statement.to_json())
    document["predicate"]["serialization"].pop("ignore_paths")
    signed = parse_files_statement(Statement.model_validate(document))
    assert signed.ignore_paths == ()
    assert ".gitattributes" in signed.resources
    assert DEFAULT_IGNORE_PATHS == (".git", ".gitattributes", ".github", ".gitignore")
    assert MODEL_SIGNING_PREDICATE == "https://model_signing/signature/v1.0"
