"""ECDSA P-256 keys for key-based signing: load, generate, and name them.

P-256 with SHA-256 is the one algorithm every tool we interoperate with accepts (cosign
``--key``, model-signing ``key``, Kyverno, policy-controller); anything else is refused
with :class:`UnsupportedKey` rather than producing a signature others cannot check.

The key hint written into bundles is the sha256 hex of the public key's PEM
SubjectPublicKeyInfo bytes as ``cryptography`` serialises them (not of the file the user
gave, which may wrap lines differently). model-signing 1.1.1 computes exactly this and
refuses a bundle whose hint differs from the key it verifies with."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ocimodel.chunks import FileTooLarge, read_capped
from ocimodel.errors import UsageError
from ocimodel.outputs import check_output, is_stdout, write_output
from ocimodel.signing.errors import KeyLoadError, KeyPasswordRequired, UnsupportedKey

PASSWORD_ENV = "OCIMODEL_KEY_PASSWORD"
# A PEM EC key is a few hundred bytes; anything near this is not a key.
MAX_KEY_FILE_BYTES = 64 * 1024
_COSIGN_KEY_MARKERS = (b"ENCRYPTED SIGSTORE PRIVATE KEY", b"ENCRYPTED COSIGN PRIVATE KEY")

PrivateKey = ec.EllipticCurvePrivateKey
PublicKey = ec.EllipticCurvePublicKey


def _read_key_file(path: str | os.PathLike[str], what: str) -> bytes:
    path = Path(path)
    try:
        return read_capped(path, MAX_KEY_FILE_BYTES)
    except FileTooLarge as exc:
        size = f"over {MAX_KEY_FILE_BYTES}" if exc.size is None else f"{exc.size}"
        raise KeyLoadError(f"{what} {path} is {size} bytes; a PEM key is far smaller") from None
    except FileNotFoundError:
        raise KeyLoadError(f"{what} {path} does not exist", hint="check the path") from None
    except OSError as exc:
        raise KeyLoadError(f"cannot read {what} {path}: {exc.strerror}") from None


def check_p256(key: object, what: str = "key") -> None:
    """Raise UnsupportedKey unless ``key`` is an ECDSA P-256 key (private or public)."""
    if not isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        kind = type(key).__name__.lstrip("_")
        raise UnsupportedKey(
            f"{what} is a {kind}, not an ECDSA P-256 key",
            hint="generate an ECDSA P-256 key (openssl ecparam -name prime256v1 -genkey)",
        )
    if not isinstance(key.curve, ec.SECP256R1):
        raise UnsupportedKey(
            f"{what} is on curve {key.curve.name}; only P-256 (secp256r1) is supported",
            hint="cosign and model-signing interoperate on P-256 with SHA-256",
        )


def _password_bytes(password: str | bytes | None) -> bytes | None:
    if password is None:
        password = os.environ.get(PASSWORD_ENV)
    if password is None:
        return None
    return password.encode("utf-8") if isinstance(password, str) else password


def load_private_key(source: str | os.PathLike[str] | bytes, password: str | bytes | None = None) -> PrivateKey:
    """A P-256 private key from a PEM file (or PEM bytes): PKCS#8 or SEC1, encrypted or not.

    For an encrypted key the password is ``password``, else ``$OCIMODEL_KEY_PASSWORD``;
    with neither, :class:`KeyPasswordRequired` is raised so the CLI can prompt."""
    data = source if isinstance(source, bytes) else _read_key_file(source, "private key")
    what = "private key" if isinstance(source, bytes) else f"private key {source}"
    if any(marker in data for marker in _COSIGN_KEY_MARKERS):
        raise KeyLoadError(
            f"{what} is in cosign's own encrypted format, which we cannot read",
            hint="use a PKCS#8 PEM key (openssl, or ocimodel's generate_key_pair)",
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        # Encrypted: only now is a password needed.
        secret = _password_bytes(password)
        if secret is None:
            raise KeyPasswordRequired(
                f"{what} is encrypted and no password was given",
                hint=f"pass the password, or set {PASSWORD_ENV}",
            ) from None
        try:
            key = serialization.load_pem_private_key(data, password=secret)
        except (TypeError, ValueError):
            raise KeyLoadError(f"cannot decrypt {what}: wrong password or damaged key") from None
    except ValueError:
        raise KeyLoadError(f"{what} is not a PEM private key", hint="expected -----BEGIN PRIVATE KEY-----") from None
    except UnsupportedAlgorithm:
        raise UnsupportedKey(f"{what} uses an algorithm we cannot read; only ECDSA P-256 is supported") from None
    check_p256(key, what)
    return key


def load_public_key(source: str | os.PathLike[str] | bytes) -> PublicKey:
    """A P-256 public key from a PEM SubjectPublicKeyInfo file (or bytes), as cosign's
    ``cosign.pub`` and model-signing's ``--public_key`` are."""
    data = source if isinstance(source, bytes) else _read_key_file(source, "public key")
    what = "public key" if isinstance(source, bytes) else f"public key {source}"
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise KeyLoadError(f"{what} is not a PEM public key", hint="expected -----BEGIN PUBLIC KEY-----") from None
    except UnsupportedAlgorithm:
        raise UnsupportedKey(f"{what} uses an algorithm we cannot read; only ECDSA P-256 is supported") from None
    check_p256(key, what)
    return key


def load_public_keys(sources: Iterable[str | os.PathLike[str] | bytes]) -> list[PublicKey]:
    return [load_public_key(source) for source in sources]


def public_key_pem(key: PublicKey | PrivateKey) -> bytes:
    """The PEM SubjectPublicKeyInfo bytes, in cryptography's canonical layout."""
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_hint(key: PublicKey | PrivateKey) -> str:
    """sha256 hex of the PEM SPKI bytes: the ``publicKey.hint`` model-signing writes and
    checks. A hint names a key; it never makes one trusted."""
    return hashlib.sha256(public_key_pem(key)).hexdigest()


def generate_key_pair(
    private_path: str | os.PathLike[str],
    public_path: str | os.PathLike[str],
    password: str | bytes | None = None,
    *,
    overwrite: bool = False,
) -> PrivateKey:
    """Write a new P-256 key pair: PKCS#8 private key (mode 0600, encrypted when a
    password is given) and PEM SPKI public key. Returns the private key.

    Neither file is written unless both paths are free (or, with ``overwrite``, regular
    files): a typo must not destroy a key, and a key is never written through a symlink
    (:mod:`ocimodel.outputs`)."""
    private, public = Path(private_path), Path(public_path)
    for path in (private, public):
        if is_stdout(path):
            raise UsageError("a key pair is written to two files, not to standard output",
                             hint="give a prefix: --output-key-prefix release")
    if private == public:
        raise UsageError(f"the private and the public key cannot both be written to {private}")
    for path in (private, public):
        check_output(path, replace=overwrite)
    key = ec.generate_private_key(ec.SECP256R1())
    secret = password.encode("utf-8") if isinstance(password, str) else password
    encryption = (
        serialization.BestAvailableEncryption(secret) if secret else serialization.NoEncryption()
    )
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    # A pair is written whole or not at all: if the public key cannot be written, the
    # private key goes back to what it was (absent, or the old key under --force), so a
    # private key never sits beside a public key of another pair.
    previous = private.read_bytes() if overwrite and private.is_file() else None
    write_output(private, private_pem, replace=overwrite, mode=0o600)
    try:
        write_output(public, public_key_pem(key), replace=overwrite, mode=0o644)
    except BaseException:
        if previous is None:
            private.unlink(missing_ok=True)
        else:
            write_output(private, previous, replace=True, mode=0o600)
        raise
    return key
