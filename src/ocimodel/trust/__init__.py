"""Supply-chain trust: signatures and attestations stored as referrers, and the policy
that decides whether a model may be used. Built on ``ocimodel.signing`` (formats and
cryptography) and on targets + referrers (storage).

    store    Sigstore bundles as cosign v3 bundle referrers: write, read back strictly
    sign     sign a model (cosign signature + OpenSSF model-signing file statement);
             attestations, with a key or keyless
    attest   predicates: user JSON, SLSA provenance v1 (GitHub Actions or local git)
    policy   the Policy file: trusted signers, required signature / attestations
    verify   evaluate a policy on a model by digest -> Decision; PolicyDenied
    keyless  Sigstore keyless signing and verification (sigstore-python); imported only
             when needed

The user-facing functions are in ``ocimodel.api.trust``."""

from ocimodel.trust.policy import (
    AttestationRule,
    KeylessSigner,
    KeySigner,
    Policy,
    PolicyError,
    SignatureRule,
    TrustPolicy,
    load_policy,
    parse_policy,
)
from ocimodel.trust.verify import Decision, PolicyDenied, RefusedRecord, RuleResult, SignatureRecord

__all__ = [
    "AttestationRule",
    "Decision",
    "KeySigner",
    "KeylessSigner",
    "Policy",
    "PolicyDenied",
    "PolicyError",
    "RefusedRecord",
    "RuleResult",
    "SignatureRecord",
    "SignatureRule",
    "TrustPolicy",
    "load_policy",
    "parse_policy",
]
