"""A private PKI for TLS tests, generated with ``cryptography`` (EC P-256: fast).

    pki = make_pki(tmp_path)
    pki.ca                      # the server CA (PEM): what --ca-file gets
    pki.server                  # (cert, key) for 127.0.0.1 and localhost (SAN IP + DNS)
    pki.expired                 # (cert, key) for the same names, expired yesterday
    pki.wrong_name              # (cert, key) for registry.example only
    pki.client_ca               # the CA an mTLS registry trusts for client certificates
    pki.client                  # (cert, key) signed by client_ca (clientAuth)
    pki.client_combined         # one PEM holding the client certificate and its key
    pki.untrusted_client        # (cert, key) signed by the server CA, not the client CA
    pki.client_key_encrypted    # the client key, encrypted with a passphrase
    make_server_pairs(dir, 2)   # (ca, [(cert, key), (cert, key)]): a certificate and its renewal

Every certificate carries the extensions strict verifiers ask for (basicConstraints,
keyUsage, extendedKeyUsage, subject and authority key identifiers). Keys are written
with mode 0600. Stdlib + ``cryptography`` only (no ocimodel imports).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["Pki", "make_pki", "make_server_pairs"]

SERVER_NAMES = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class Pki:
    dir: Path
    ca: Path
    server: tuple[Path, Path]
    expired: tuple[Path, Path]
    wrong_name: tuple[Path, Path]
    client_ca: Path
    client: tuple[Path, Path]
    client_combined: Path
    untrusted_client: tuple[Path, Path]
    client_key_encrypted: Path


@dataclass(frozen=True)
class _Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ocimodel tests"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _ca(common_name: str) -> _Issued:
    key = _key()
    name = _name(common_name)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(hours=1))
        .not_valid_after(_now() + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _Issued(cert, key)


def _leaf(
    issuer: _Issued,
    common_name: str,
    names: tuple[str, ...],
    usage: x509.ObjectIdentifier,
    *,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> _Issued:
    key = _key()
    public = key.public_key()
    alt_names: list[x509.GeneralName] = []
    for value in names:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(value)))
        except ValueError:
            alt_names.append(x509.DNSName(value))
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(issuer.cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or _now() - dt.timedelta(hours=1))
        .not_valid_after(not_after or _now() + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False
        )
    )
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    return _Issued(builder.sign(issuer.key, hashes.SHA256()), key)


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey, passphrase: bytes | None = None) -> bytes:
    encryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def _write(path: Path, data: bytes, mode: int = 0o644) -> Path:
    path.write_bytes(data)
    os.chmod(path, mode)
    return path


def _pair(directory: Path, stem: str, issued: _Issued) -> tuple[Path, Path]:
    return (
        _write(directory / f"{stem}.crt", _cert_pem(issued.cert)),
        _write(directory / f"{stem}.key", _key_pem(issued.key), 0o600),
    )


def make_pki(directory: Path) -> Pki:
    """Write a fresh CA, server and client certificates into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ca = _ca("ocimodel test CA")
    client_ca = _ca("ocimodel test client CA")
    server = _leaf(ca, "127.0.0.1", SERVER_NAMES, ExtendedKeyUsageOID.SERVER_AUTH)
    expired = _leaf(
        ca, "127.0.0.1", SERVER_NAMES, ExtendedKeyUsageOID.SERVER_AUTH,
        not_before=_now() - dt.timedelta(days=10), not_after=_now() - dt.timedelta(days=1),
    )
    wrong_name = _leaf(ca, "registry.example", ("registry.example",), ExtendedKeyUsageOID.SERVER_AUTH)
    client = _leaf(client_ca, "test-client", (), ExtendedKeyUsageOID.CLIENT_AUTH)
    untrusted_client = _leaf(ca, "untrusted-client", (), ExtendedKeyUsageOID.CLIENT_AUTH)
    client_pair = _pair(directory, "client", client)
    return Pki(
        dir=directory,
        ca=_write(directory / "ca.crt", _cert_pem(ca.cert)),
        server=_pair(directory, "server", server),
        expired=_pair(directory, "expired", expired),
        wrong_name=_pair(directory, "wrong-name", wrong_name),
        client_ca=_write(directory / "client-ca.crt", _cert_pem(client_ca.cert)),
        client=client_pair,
        client_combined=_write(
            directory / "client-combined.pem", _cert_pem(client.cert) + _key_pem(client.key), 0o600
        ),
        untrusted_client=_pair(directory, "untrusted-client", untrusted_client),
        client_key_encrypted=_write(
            directory / "client-encrypted.key", _key_pem(client.key, b"test-passphrase"), 0o600
        ),
    )


def make_server_pairs(directory: Path, count: int, *, expired: int = 0) -> tuple[Path, list[tuple[Path, Path]]]:
    """A CA (PEM) and ``count`` server certificates it issued for 127.0.0.1 and localhost,
    each with its own key and common name (``server-1``...): a certificate and its renewal.
    The last ``expired`` of them expired yesterday."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ca = _ca("ocimodel test CA")
    past = {"not_before": _now() - dt.timedelta(days=10), "not_after": _now() - dt.timedelta(days=1)}
    pairs = [
        _pair(directory, f"server-{n}", _leaf(ca, f"server-{n}", SERVER_NAMES, ExtendedKeyUsageOID.SERVER_AUTH,
                                               **(past if n > count - expired else {})))
        for n in range(1, count + 1)
    ]
    return _write(directory / "ca.crt", _cert_pem(ca.cert)), pairs
