"""Keys for key-based signing: P-256 only, passwords, and the hint model-signing checks."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from ocimodel.errors import OcimodelError, OutputExists
from ocimodel.signing.errors import KeyLoadError, KeyPasswordRequired, UnsupportedKey
from ocimodel.signing.keys import (
    PASSWORD_ENV,
    generate_key_pair,
    key_hint,
    load_private_key,
    load_public_key,
    public_key_pem,
)
from tests.support.model_signing_oracle import sign_with_key
from tests.support.secrets import assert_no_secret


def _write_private(path: Path, key, password: bytes | None = None, fmt=serialization.PrivateFormat.PKCS8) -> Path:
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, fmt, encryption))
    return path


def test_generate_and_load_round_trip(tmp_path: Path) -> None:
    key = generate_key_pair(tmp_path / "k.pem", tmp_path / "k.pub")
    assert stat.S_IMODE((tmp_path / "k.pem").stat().st_mode) == 0o600
    loaded = load_private_key(tmp_path / "k.pem")
    assert loaded.private_numbers() == key.private_numbers()
    assert load_public_key(tmp_path / "k.pub") == key.public_key()
    assert key_hint(loaded) == key_hint(load_public_key(tmp_path / "k.pub"))


def test_generate_refuses_to_overwrite(tmp_path: Path) -> None:
    (tmp_path / "k.pem").write_text("precious")
    with pytest.raises(OutputExists, match="refusing to overwrite"):
        generate_key_pair(tmp_path / "k.pem", tmp_path / "k.pub")
    assert (tmp_path / "k.pem").read_text() == "precious"
    assert not (tmp_path / "k.pub").exists()  # neither half of the pair is written


def test_generate_with_overwrite_never_leaves_a_mismatched_pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--force replaces a pair; when the public key cannot be written, the old private key
    is put back, so the two files still belong together."""
    from ocimodel.signing import keys as keys_module

    generate_key_pair(tmp_path / "k.pem", tmp_path / "k.pub")
    old_private, old_public = (tmp_path / "k.pem").read_bytes(), (tmp_path / "k.pub").read_bytes()
    real_write = keys_module.write_output

    def failing_public(path, data, **kwargs):
        if Path(path).suffix == ".pub":
            raise OSError(28, "No space left on device")
        return real_write(path, data, **kwargs)

    monkeypatch.setattr(keys_module, "write_output", failing_public)
    with pytest.raises(OSError, match="No space"):
        generate_key_pair(tmp_path / "k.pem", tmp_path / "k.pub", overwrite=True)
    assert (tmp_path / "k.pem").read_bytes() == old_private
    assert (tmp_path / "k.pub").read_bytes() == old_public
    assert stat.S_IMODE((tmp_path / "k.pem").stat().st_mode) == 0o600


def test_encrypted_key_with_password_argument(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    key = generate_key_pair(tmp_path / "k.pem", tmp_path / "k.pub", password="s3cret")
    assert b"ENCRYPTED" in (tmp_path / "k.pem").read_bytes()
    assert load_private_key(tmp_path / "k.pem", "s3cret").private_numbers() == key.private_numbers()


def test_encrypted_key_with_password_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    generate_key_pair(tmp_path / "k.pem", tmp_path / "k.pub", password=b"from-env")
    monkeypatch.setenv(PASSWORD_ENV, "from-env")
    load_private_key(tmp_path / "k.pem")


def test_encrypted_key_without_password_asks_for_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    generate_key_pair(tmp_path / "k.pem", tmp_path / "k.pub", password="pw")
    with pytest.raises(KeyPasswordRequired) as caught:
        load_private_key(tmp_path / "k.pem")
    assert PASSWORD_ENV in caught.value.hint


def test_wrong_password_is_not_a_prompt(tmp_path: Path) -> None:
    generate_key_pair(tmp_path / "k.pem", tmp_path / "k.pub", password="hunter2-right")
    with pytest.raises(KeyLoadError, match="wrong password") as caught:
        load_private_key(tmp_path / "k.pem", "hunter2-typo")
    assert not isinstance(caught.value, KeyPasswordRequired)
    assert "hunter2" not in str(caught.value)  # no secret in a message, in no form
    assert_no_secret([str(caught.value), repr(caught.value), caught.value.hint or ""], ["hunter2-right", "hunter2-typo"])


def test_sec1_private_key_is_accepted(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    path = _write_private(tmp_path / "sec1.pem", key, fmt=serialization.PrivateFormat.TraditionalOpenSSL)
    assert b"BEGIN EC PRIVATE KEY" in path.read_bytes()
    assert load_private_key(path).private_numbers() == key.private_numbers()


@pytest.mark.parametrize(
    "make_key, shown",
    [
        (lambda: ec.generate_private_key(ec.SECP384R1()), "secp384r1"),
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024), "RSA"),
        (lambda: ed25519.Ed25519PrivateKey.generate(), "Ed25519"),
    ],
    ids=["p384", "rsa", "ed25519"],
)
def test_keys_other_than_p256_are_refused(tmp_path: Path, make_key, shown: str) -> None:
    key = make_key()
    private = _write_private(tmp_path / "k.pem", key)
    public = tmp_path / "k.pub"
    public.write_bytes(public_key_pem_any(key))
    with pytest.raises(UnsupportedKey, match=shown):
        load_private_key(private)
    with pytest.raises(UnsupportedKey, match=shown):
        load_public_key(public)


def public_key_pem_any(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_unreadable_inputs_are_typed(tmp_path: Path) -> None:
    with pytest.raises(KeyLoadError, match="does not exist"):
        load_private_key(tmp_path / "missing.pem")
    (tmp_path / "junk.pem").write_text("not a key\n")
    with pytest.raises(KeyLoadError, match="not a PEM private key"):
        load_private_key(tmp_path / "junk.pem")
    with pytest.raises(KeyLoadError, match="not a PEM public key"):
        load_public_key(tmp_path / "junk.pem")
    # Every key error is an OcimodelError: the CLI prints it instead of a traceback.
    assert issubclass(KeyLoadError, OcimodelError)


def test_cosign_encrypted_key_format_is_named(tmp_path: Path) -> None:
    path = tmp_path / "cosign.key"
    path.write_text("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\neyJrZGYiOnt9fQ==\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    with pytest.raises(KeyLoadError, match="cosign"):
        load_private_key(path)


def test_key_hint_is_what_model_signing_writes_and_checks(tmp_path: Path) -> None:
    key = generate_key_pair(tmp_path / "k.pem", tmp_path / "k.pub")
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"w" * 100)
    bundle = sign_with_key(model, tmp_path / "k.pem", tmp_path / "model.sig")  # model-signing's public API
    assert bundle["verificationMaterial"]["publicKey"]["hint"] == key_hint(key)


def test_key_hint_does_not_depend_on_the_file_layout(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    crlf = tmp_path / "crlf.pub"
    crlf.write_bytes(public_key_pem(key).replace(b"\n", b"\r\n"))
    assert key_hint(load_public_key(crlf)) == key_hint(key)
