"""Who is trusted to vouch for a model, and for what: the verification policy.

A policy names its signers once (a public key, or a keyless identity with its OIDC
issuer) and then says what must be present, each requirement a rule that passes or
fails on its own:

    version: 1
    signers:
      release:   {key: keys/release.pub}          # PEM, relative to this file
      ci:        {identity: https://github.com/org/repo/.github/workflows/release.yml@refs/heads/main,
                  issuer: https://token.actions.githubusercontent.com}
    signature:                                     # always required: unsigned is denied
      signers: [release, ci]
      match: any-of                                # or all-of
      files: true                                  # also the OpenSSF model-signing file signature
    attestations:
      - type: https://slsa.dev/provenance/v1
        signers: [ci]
    aliases:                                       # promotion gates (docs/promotion-records.md)
      production:
        require: [signature, attestations]         # the sections above a model must pass
        promoters: [release]                       # who may sign the records that move it
    scan:                                          # a signed scan (ocimodel scan REF --attest)
      max_severity: medium                         # of every layer, nothing worse than this
      signers: [ci]
    licenses:                                      # the model's licenses (docs/licenses.md)
      allow: [Apache-2.0, MIT]
      deny: ["LicenseRef-*-community-license"]
      unknown: deny                                # or warn
      base_models: true
    evaluations:                                   # fresh, good, signed evaluation records
      - {metric: accuracy, min: 0.9, max_age: 7d, signers: [ci], environment: production}

YAML or JSON; unknown fields, duplicate keys, keys that are not strings (``!!binary``,
``1``, ``true``), YAML aliases, values of the wrong type (``files: 'false'``), unknown
signer names and two names for the same key or identity are refused, because a typo or a
disguised entry in a policy must not quietly weaken it (``match: all_of`` is an error, not
"any-of"; a second name for one key would let one signature count twice in all-of).
There is no rule that allows an unsigned model."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from ocimodel.chunks import FileTooLarge, NotARegularFile, read_capped
from ocimodel.errors import InvalidManifest, UsageError
from ocimodel.licensing.policy import LicenseRule
from ocimodel.monitoring.policy import EvaluationRule
from ocimodel.oci.models import loads_strict
from ocimodel.signing.errors import KeyLoadError
from ocimodel.signing.keys import PublicKey, key_hint, load_public_key
from ocimodel.versiontags import is_version_tag

MAX_POLICY_BYTES = 1024 * 1024

SignerName = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$")]
PredicateUri = Annotated[
    str, StringConstraints(min_length=1, max_length=1024, pattern=r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s]+$")
]
Match = Literal["any-of", "all-of"]
# An alias as a tag: the OCI tag grammar. Versions are refused by the policy's validator.
AliasName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")]
# The sections of this policy an alias rule can require.
Section = Literal["signature", "attestations", "scan", "licenses", "evaluations"]


class PolicyError(UsageError):
    """The policy file is missing, malformed, or names something it does not define; or
    a key it names cannot be loaded. A configuration error (CLI exit 2), never a deny."""


class _Strict(BaseModel):
    # strict: no coercion. 'false' is not a bool, 1 is not a string: a policy says exactly
    # what it means or is refused.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class KeySigner(_Strict):
    """A signer known by its ECDSA P-256 public key."""

    key: Annotated[str, StringConstraints(min_length=1, max_length=4096)] = Field(
        description="Path of the PEM public key (cosign.pub style); relative to the policy file."
    )


class KeylessSigner(_Strict):
    """A keyless (Sigstore) signer: the certificate's identity and OIDC issuer, matched exactly."""

    identity: Annotated[str, StringConstraints(min_length=1, max_length=1024)] = Field(
        description="The certificate's subject alternative name: an e-mail or a workflow URI."
    )
    issuer: Annotated[str, StringConstraints(min_length=1, max_length=1024)] = Field(
        description="The OIDC issuer, e.g. https://token.actions.githubusercontent.com."
    )


class SignatureRule(_Strict):
    """The model's signature (predicate https://sigstore.dev/cosign/sign/v1). Always checked."""

    signers: list[SignerName] | None = Field(
        default=None, min_length=1, description="Names from `signers`; omitted: every signer."
    )
    match: Match = Field(default="any-of", description="any-of: one of them suffices; all-of: each must have signed.")
    files: bool = Field(
        default=False,
        description="Also require the OpenSSF model-signing file-level signature by the same signers.",
    )


class AttestationRule(_Strict):
    """An attestation that must be present, of exactly this predicate type."""

    type: PredicateUri = Field(description="The predicate type URI, e.g. https://slsa.dev/provenance/v1.")
    signers: list[SignerName] | None = Field(
        default=None, min_length=1, description="Names from `signers`; omitted: every signer."
    )
    match: Match = Field(default="any-of", description="any-of: one of them suffices; all-of: each must have attested.")


class AliasRule(_Strict):
    """A promotion gate: what `promote --policy` and `rollback --policy` check before the
    alias may point at a model, and who may sign the records that move it."""

    require: list[Section] | None = Field(
        default=None, min_length=1,
        description="Sections of this policy the model must pass: signature, attestations. Omitted: all of them.",
    )
    promoters: list[SignerName] | None = Field(
        default=None, min_length=1,
        description="Names from `signers` whose signed records may move this alias. Omitted: any signer.",
    )
class ScanRule(_Strict):
    """A signed scan (predicate https://ocimodel.dev/scan/v1, `ocimodel scan REF --attest`)
    covering every layer of the model, that found nothing worse than ``max_severity``."""

    max_severity: Literal["critical", "high", "medium", "low", "info"] = Field(
        description="The worst severity the attested scan may have found."
    )
    signers: list[SignerName] | None = Field(
        default=None, min_length=1, description="Names from `signers`; omitted: every signer."
    )
    match: Match = Field(default="any-of", description="any-of: one of them suffices; all-of: each must have attested.")


class Policy(_Strict):
    """What `ocimodel verify` requires of a model before it is allowed."""

    version: Literal[1] = Field(default=1, description="Format version of this policy file.")
    signers: dict[SignerName, KeySigner | KeylessSigner] = Field(
        min_length=1, description="The trusted signers, by a name the rules refer to."
    )
    signature: SignatureRule = Field(default_factory=SignatureRule, description="The signature requirement.")
    attestations: list[AttestationRule] = Field(default_factory=list, description="Attestations that must be present.")
    aliases: dict[AliasName, AliasRule] = Field(
        default_factory=dict, description="Promotion gates, by alias (production, champion...)."
    )
    scan: ScanRule | None = Field(default=None, description="A signed scan that must be present (docs/scanning-cli.md).")
    licenses: LicenseRule | None = Field(default=None, description="Which licenses a model may have (docs/licenses.md).")
    evaluations: list[EvaluationRule] = Field(
        default_factory=list, description="Signed evaluation records a model must have, fresh and good (docs/monitoring.md)."
    )

    # Key paths are relative to the policy file; the directory is remembered here.
    _base: Path = PrivateAttr(default_factory=Path)

    @field_validator("version", mode="before")
    @classmethod
    def _version_is_an_integer(cls, value: Any) -> Any:
        # Literal[1] alone also takes true and 1.0 (they compare equal to 1).
        if type(value) is not int:
            raise ValueError("version must be the integer 1")
        return value

    @model_validator(mode="after")
    def _names_are_defined(self) -> Policy:
        rules: list[tuple[str, list[str] | None]] = [("signature", self.signature.signers)]
        rules += [(f"attestations[{i}]", rule.signers) for i, rule in enumerate(self.attestations)]
        rules += [(f"aliases.{alias}.promoters", rule.promoters) for alias, rule in self.aliases.items()]
        if self.scan is not None:
            rules.append(("scan", self.scan.signers))
        rules += [(f"evaluations[{i}]", rule.signers) for i, rule in enumerate(self.evaluations)]
        for where, names in rules:
            for name in names or ():
                if name not in self.signers:
                    raise ValueError(f"{where} names the signer {name!r}, which `signers` does not define")
            if names is not None and len(set(names)) != len(names):
                raise ValueError(f"{where} names a signer twice")
        types = [rule.type for rule in self.attestations]
        if len(set(types)) != len(types):
            raise ValueError("two attestation rules have the same type; put their signers in one rule")
        for alias, rule in self.aliases.items():
            if is_version_tag(alias):
                raise ValueError(f"aliases: {alias!r} is a version, not an alias; versions never move")
            if rule.require is not None and len(set(rule.require)) != len(rule.require):
                raise ValueError(f"aliases.{alias}.require names a section twice")
            if rule.require and "attestations" in rule.require and not self.attestations:
                # Requiring an empty section would read as a check that always passes.
                raise ValueError(f"aliases.{alias}.require names attestations, and the policy has no attestation rules")
            if rule.require and "scan" in rule.require and self.scan is None:
                raise ValueError(f"aliases.{alias}.require names scan, and the policy has no scan rule")
            if rule.require and "licenses" in rule.require and self.licenses is None:
                raise ValueError(f"aliases.{alias}.require names licenses, and the policy has no licenses rule")
            if rule.require and "evaluations" in rule.require and not self.evaluations:
                raise ValueError(f"aliases.{alias}.require names evaluations, and the policy has no evaluation rules")
        return self

    def with_base(self, directory: str | os.PathLike[str]) -> Policy:
        copy = self.model_copy()
        copy._base = Path(directory)
        return copy

    def compile(self) -> TrustPolicy:
        """Load every key now, so a missing or wrong key fails before any registry is asked.

        Raises PolicyError (a UsageError) when a key cannot be loaded, and when two signer
        names stand for the same key or the same identity and issuer: one signature would
        then count as two, and all-of would be met by a single signer."""
        keys: dict[str, TrustedKey] = {}
        identities: dict[str, TrustedIdentity] = {}
        by_hint: dict[str, str] = {}
        by_identity: dict[tuple[str, str], str] = {}
        for name, signer in self.signers.items():
            if isinstance(signer, KeySigner):
                path = Path(signer.key)
                path = path if path.is_absolute() else self._base / path
                try:
                    key = load_public_key(path)
                except KeyLoadError as exc:
                    # A name from the command line is the key's path: say it once.
                    prefix = "" if Path(name).absolute() == path.absolute() else f"signer {name!r}: "
                    raise PolicyError(f"{prefix}{exc.message}", hint=exc.hint) from None
                hint = key_hint(key)
                if hint in by_hint:
                    raise PolicyError(
                        f"signers {by_hint[hint]!r} and {name!r} are the same public key",
                        hint="name each trusted key once; all-of needs signatures by different keys",
                    )
                by_hint[hint] = name
                keys[name] = TrustedKey(name=name, key=key, hint=hint)
            else:
                pair = (signer.identity, signer.issuer)
                if pair in by_identity:
                    raise PolicyError(
                        f"signers {by_identity[pair]!r} and {name!r} are the same identity and issuer",
                        hint="name each trusted identity once; all-of needs signatures by different identities",
                    )
                by_identity[pair] = name
                identities[name] = TrustedIdentity(name=name, identity=signer.identity, issuer=signer.issuer)
        return TrustPolicy(policy=self, keys=keys, identities=identities)


@dataclass(frozen=True)
class TrustedKey:
    name: str
    key: PublicKey
    hint: str  # sha256 of the PEM SPKI: how a verified signature is mapped back to a name


@dataclass(frozen=True)
class TrustedIdentity:
    name: str
    identity: str
    issuer: str


@dataclass(frozen=True)
class TrustPolicy:
    """A policy with its keys loaded: what the verifier works from."""

    policy: Policy
    keys: dict[str, TrustedKey] = field(default_factory=dict)
    identities: dict[str, TrustedIdentity] = field(default_factory=dict)

    def names_for_keys(self, keys: tuple[PublicKey, ...]) -> set[str]:
        hints = {key_hint(key) for key in keys}
        return {k.name for k in self.keys.values() if k.hint in hints}

    def signers_of(self, names: list[str] | None) -> list[str]:
        return list(names) if names is not None else list(self.policy.signers)


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """A policy from a YAML or JSON file (``.json``: JSON only; anything else: YAML, of
    which JSON is a subset). Key paths in it are relative to the file."""
    path = Path(path)
    try:
        data = read_capped(path, MAX_POLICY_BYTES)
    except FileTooLarge as exc:
        raise PolicyError(f"policy {exc}") from None
    except FileNotFoundError:
        raise PolicyError(f"policy {path} does not exist") from None
    except NotARegularFile:
        kind = "a directory" if path.is_dir() else "a fifo, socket or device"
        raise PolicyError(f"policy {path} is {kind}, not a file") from None
    except OSError as exc:
        raise PolicyError(f"cannot read policy {path}: {exc.strerror}") from None
    document = _load_json(data, path) if path.suffix.lower() == ".json" else _load_yaml(data, path)
    return parse_policy(document, str(path)).with_base(path.parent)


def parse_policy(document: Any, what: str = "policy") -> Policy:
    if not isinstance(document, dict):
        raise PolicyError(f"{what}: expected a mapping at the top level (version, signers, signature, attestations, aliases)")
    try:
        return Policy.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        # A union's branch name (KeySigner) in the location helps nobody: drop it.
        loc = [str(p) for p in first["loc"] if str(p) not in ("KeySigner", "KeylessSigner")]
        where = ".".join(loc) or "top level"
        message = first["msg"].removeprefix("Value error, ")
        hint = None
        if loc[:1] == ["signers"] and len(loc) >= 2:
            hint = "a signer is either {key: PATH} or {identity: ..., issuer: ...}"
        elif loc[:1] == ["aliases"] or message.startswith("aliases"):
            hint = "an alias rule is {require: [signature, attestations], promoters: [SIGNER, ...]}"
        elif loc[:1] == ["evaluations"] or message.startswith("evaluations"):
            hint = "an evaluation rule is {metric: accuracy, min: 0.9, max: ..., max_age: 7d, signers: [SIGNER], environment: production}"
        raise PolicyError(f"{what}: {where}: {message}", hint=hint) from None


def _load_json(data: bytes, path: Path) -> Any:
    try:
        return loads_strict(data, f"policy {path}")
    except InvalidManifest as exc:
        raise PolicyError(exc.message) from None


def _load_yaml(data: bytes, path: Path) -> Any:
    from ocimodel.strict_yaml import StrictYamlError, loads_yaml_strict

    try:
        return loads_yaml_strict(data, max_bytes=MAX_POLICY_BYTES)
    except StrictYamlError as exc:
        raise PolicyError(f"policy {path} is not valid YAML: {exc}") from None


def policy_for(keys: list[tuple[str, str | os.PathLike[str]]], identities: list[tuple[str, str]]) -> Policy:
    """The policy of a command line without --policy: any one of the given keys or
    identities must have signed; no attestation is required.

    ``keys`` are (name, path) pairs; identities (identity, issuer) pairs."""
    signers: dict[str, Any] = {}
    for name, path in keys:
        signers[name] = {"key": str(Path(path).absolute())}
    for identity, issuer in identities:
        signers[f"{identity} ({issuer})"] = {"identity": identity, "issuer": issuer}
    if not signers:
        raise UsageError(
            "nothing to trust: give a public key, a keyless identity and issuer, or a policy",
            hint="e.g. --key cosign.pub, or --certificate-identity ID --certificate-oidc-issuer URL, or --policy FILE",
        )
    return parse_policy({"signers": signers}, "trust options")

