"""Signing: in-toto statements in DSSE envelopes in Sigstore bundles, signed with a local
P-256 key, and the OpenSSF model-signing file-level statement.

Format and cryptography only; storing bundles as OCI referrers is done elsewhere.

    statement        in-toto Statement v1: build, parse strictly, check subject / predicate
    dsse             PAE, envelope, strict base64
    keys             load / generate P-256 keys, the key hint
    bundle           sign_statement_with_key, verify_key_bundle
    files_statement  model-signing statement from an OCI manifest; check files against it
    errors           VerificationFailed(reason), NotAKeyBundle, key errors
"""

from ocimodel.oci.mediatypes import BUNDLE_MEDIA_TYPE
from ocimodel.signing.bundle import (
    VerifiedPayload,
    sign_statement,
    sign_statement_with_key,
    verify_key_bundle,
)
from ocimodel.signing.errors import (
    FileSignatureUnsupported,
    KeyLoadError,
    KeyPasswordRequired,
    NotAKeyBundle,
    Reason,
    SigningError,
    UnsupportedKey,
    VerificationFailed,
)
from ocimodel.signing.files_statement import (
    MODEL_SIGNING_PREDICATE,
    FilesCheck,
    SignedFiles,
    check_resources,
    files_of_manifest,
    files_statement,
    files_statement_for_manifest,
    parse_files_statement,
    verify_files_statement,
)
from ocimodel.signing.keys import (
    generate_key_pair,
    key_hint,
    load_private_key,
    load_public_key,
    load_public_keys,
)
from ocimodel.signing.statement import (
    COSIGN_SIGN_PREDICATE,
    STATEMENT_TYPE,
    Statement,
    attestation_statement,
    check_predicate_type,
    check_subject,
    parse_statement,
    signature_statement,
)

__all__ = [
    "BUNDLE_MEDIA_TYPE",
    "COSIGN_SIGN_PREDICATE",
    "MODEL_SIGNING_PREDICATE",
    "STATEMENT_TYPE",
    "FileSignatureUnsupported",
    "FilesCheck",
    "KeyLoadError",
    "KeyPasswordRequired",
    "NotAKeyBundle",
    "Reason",
    "SignedFiles",
    "SigningError",
    "Statement",
    "UnsupportedKey",
    "VerificationFailed",
    "VerifiedPayload",
    "attestation_statement",
    "check_predicate_type",
    "check_resources",
    "check_subject",
    "files_of_manifest",
    "files_statement",
    "files_statement_for_manifest",
    "generate_key_pair",
    "key_hint",
    "load_private_key",
    "load_public_key",
    "load_public_keys",
    "parse_files_statement",
    "parse_statement",
    "sign_statement",
    "sign_statement_with_key",
    "signature_statement",
    "verify_files_statement",
    "verify_key_bundle",
]
