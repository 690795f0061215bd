"""Commands for trust: sign, attest, verify, signature export, key generate."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from ocimodel.cli.common import (
    JsonOpt,
    PlainHttpOpt,
    QuietOpt,
    connection,
    identity_pairs,
    print_json,
    print_result,
    run,
    stderr,
    stdout,
)
from ocimodel.cli.lazy import lazy_import
from ocimodel.cli.signing import (
    PASSWORD_ENV,
    IdentityTokenOpt,
    SigningKeyOpt,
    StagingOpt,
    TrustConfigOpt,
    password_for,
)
from ocimodel.errors import UsageError

api = lazy_import("ocimodel")

signature_app = typer.Typer(
    name="signature",
    help="Signatures in other formats.\n\n  ocimodel signature export localhost:5000/team/sentiment:1.0 --format model-signing -o model.sig",
    no_args_is_help=True,
)
key_app = typer.Typer(
    name="key",
    help="Signing keys.\n\n  ocimodel key generate --output-key-prefix release",
    no_args_is_help=True,
)

RefArg = Annotated[str, typer.Argument(metavar="REF", help="The model: registry/repo:tag, repo@digest or oci:PATH:tag.")]
PublicKeyOpt = Annotated[
    list[Path] | None, typer.Option("--key", metavar="PUB", help="A trusted public key (PEM); repeatable: any one suffices.")
]
IdentityOpt = Annotated[
    list[str] | None, typer.Option("--certificate-identity", metavar="ID", help="A trusted keyless identity (exact SAN); repeatable.")
]
IssuerOpt = Annotated[
    list[str] | None,
    typer.Option("--certificate-oidc-issuer", metavar="URL", help="Its OIDC issuer: once for all identities, or once per identity."),
]
PolicyOpt = Annotated[
    Path | None, typer.Option("--policy", metavar="FILE", help="A policy file (YAML or JSON) instead of --key / --certificate-*.")
]
TrustedRootOpt = Annotated[
    Path | None,
    typer.Option(
        "--trusted-root", metavar="FILE",
        help="Keyless: the Sigstore trusted_root.json. Default: the public-good root shipped with "
        "sigstore-python (offline, not refreshed, never a cached copy); with --online, that root "
        "refreshed through TUF.",
    ),
]
OfflineOpt = Annotated[
    bool, typer.Option("--offline/--online", help="Keyless: verify without the network (default), or refresh the trust root through TUF first.")
]




def sign(
    reference: RefArg,
    key: SigningKeyOpt = None,
    identity_token: IdentityTokenOpt = None,
    trust_config: TrustConfigOpt = None,
    staging: StagingOpt = False,
    no_file_signature: Annotated[bool, typer.Option("--no-file-signature", help="Only the cosign signature; no OpenSSF model-signing file statement.")] = False,
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Sign a model. Two bundles are attached as referrers (cosign v3 format): a cosign
    signature of the manifest digest, and an OpenSSF model-signing statement over its
    files (for `model_signing verify` on a pulled copy).

      ocimodel sign localhost:5000/team/sentiment:1.0 --key release.key

      ocimodel sign ghcr.io/org/sentiment:1.0          # keyless, in CI

    Prints the referrer digests. `ocimodel verify` checks them.
    """
    result = run(
        lambda _: api.sign(
            reference, key=key, password=password_for(key), identity_token=identity_token,
            trust_config=trust_config, staging=staging, file_signature=not no_file_signature,
            plain_http=plain_http, options=connection(),
        ),
        verb="sign",
        show_progress=False,
    )
    if as_json:
        print_json(result)
    elif quiet:
        for bundle in result.bundles:
            stdout.print(bundle.referrer, highlight=False)
    else:
        stdout.print(f"Signed {result.reference} ({result.digest}) with {result.signer}", highlight=False, markup=False)
        for bundle in result.bundles:
            stdout.print(f"{bundle.predicate_type}  {bundle.referrer}", highlight=False, markup=False)


def attest(
    reference: RefArg,
    predicate: Annotated[Path | None, typer.Option("--predicate", metavar="FILE", help="The predicate: a JSON object (an SBOM, an evaluation...).")] = None,
    predicate_type: Annotated[str | None, typer.Option("--type", metavar="URI", help="The predicate type URI, e.g. https://cyclonedx.org/bom.")] = None,
    provenance: Annotated[bool, typer.Option("--provenance", help="Generate SLSA provenance v1 for this build (GitHub Actions or local git).")] = False,
    source: Annotated[Path | None, typer.Option("--source", metavar="DIR", help="Local provenance: the git checkout that built the model (default: here).")] = None,
    key: SigningKeyOpt = None,
    identity_token: IdentityTokenOpt = None,
    trust_config: TrustConfigOpt = None,
    staging: StagingOpt = False,
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Attach a signed attestation (an in-toto statement in a Sigstore bundle) to a model.

      ocimodel attest localhost:5000/team/sentiment:1.0 --predicate sbom.json --type https://cyclonedx.org/bom --key release.key

      ocimodel attest ghcr.io/org/sentiment:1.0 --provenance

    Provenance lists the model's datasets and base models (from its card) as materials.
    """
    result = run(
        lambda _: api.attest(
            reference, predicate_file=predicate, predicate_type=predicate_type, provenance=provenance,
            source_dir=source, key=key, password=password_for(key), identity_token=identity_token,
            trust_config=trust_config, staging=staging, plain_http=plain_http, options=connection(),
        ),
        verb="attest",
        show_progress=False,
    )
    if quiet and not as_json:
        stdout.print(result.referrer, highlight=False)
        return
    print_result(result, as_json, False, [
        f"Attested {result.predicate_type} for {result.reference} ({result.digest}) with {result.signer}",
        f"Referrer: {result.referrer}",
    ])


def verify(
    reference: RefArg,
    key: PublicKeyOpt = None,
    certificate_identity: IdentityOpt = None,
    certificate_oidc_issuer: IssuerOpt = None,
    policy: PolicyOpt = None,
    trusted_root: TrustedRootOpt = None,
    offline: OfflineOpt = True,
    scan: Annotated[bool, typer.Option("--scan", help="Scan the model here; the result stands in for the signed scan a policy's scan rule asks for (without one: high or worse denies).")] = False,
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check a model's signatures and attestations against the trusted signers. Exit 0
    when allowed, 1 when denied, 2 when the command or its trust configuration is wrong
    (a key, policy or trusted root that cannot be read); one line per rule says why.
    Unsigned is denied.

      ocimodel verify localhost:5000/team/sentiment:1.0 --key release.pub

      ocimodel verify ghcr.io/org/sentiment:1.0 --certificate-identity https://github.com/org/repo/.github/workflows/release.yml@refs/heads/main --certificate-oidc-issuer https://token.actions.githubusercontent.com

      ocimodel verify ghcr.io/org/sentiment:1.0 --policy policy.yaml --json

    The tag is resolved to a digest once; everything checked is about that digest.
    """
    decision = run(
        lambda _: api.verify(
            reference, keys=key or [], identities=identity_pairs(certificate_identity or [], certificate_oidc_issuer or []),
            policy=policy, trusted_root=trusted_root, offline=offline, plain_http=plain_http, options=connection(),
            scan=scan,
        ),
        verb="verify",
        show_progress=False,
    )
    if as_json:
        print_json(decision)
    else:
        verdict = "Allowed" if decision.allowed else "Denied"
        stdout.print(f"{verdict}: {decision.reference} ({decision.digest})", highlight=False, markup=False)
        for line in decision.lines():
            stdout.print(line, highlight=False, markup=False)
    raise typer.Exit(0 if decision.allowed else 1)


@signature_app.command("export")
def signature_export(
    reference: RefArg,
    output: Annotated[str, typer.Option("--output", "-o", metavar="FILE", help="Where to write the signature; - for standard output.")],
    fmt: Annotated[str, typer.Option("--format", metavar="FORMAT", help="The format: model-signing (OpenSSF).")] = "model-signing",
    referrer: Annotated[str | None, typer.Option("--referrer", metavar="DIGEST", help="Which bundle, when there are several.")] = None,
    key: PublicKeyOpt = None,
    certificate_identity: IdentityOpt = None,
    certificate_oidc_issuer: IssuerOpt = None,
    policy: PolicyOpt = None,
    trusted_root: TrustedRootOpt = None,
    offline: OfflineOpt = True,
    force: Annotated[bool, typer.Option("--force", help="Replace FILE if it is an existing regular file.")] = False,
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a model's file-level signature as a file that `model_signing verify` reads
    beside a pulled copy of the model.

      ocimodel signature export localhost:5000/team/sentiment:1.0 --key release.pub -o model.sig

      model_signing verify key ./sentiment --signature model.sig --public_key release.pub

    Only a bundle that lists exactly this model's files is exported. With --key (or
    --certificate-identity / --policy) it must also verify with a trusted signer, and the
    newest such bundle is written. Without, the signature is not checked, and a model
    with several file-level signatures is refused: anyone who can push can add one.

    FILE is written whole or not at all, and only as a regular file: an existing file is
    replaced only with --force; a symlink, directory, fifo, socket or device is refused
    and left as it is. With -o -, the signature goes to standard output and the summary
    to stderr.
    """
    to_stdout = output == "-"
    if to_stdout and as_json:
        run(_json_beside_stdout, verb="signature export", show_progress=False)
    result = run(
        lambda _: api.export_signature(
            reference, output, fmt=fmt, referrer=referrer, keys=key or [],
            identities=identity_pairs(certificate_identity or [], certificate_oidc_issuer or []),
            policy=policy, trusted_root=trusted_root, offline=offline, overwrite=force,
            plain_http=plain_http, options=connection(),
        ),
        verb="signature export",
        show_progress=False,
    )
    lines = [
        f"Wrote the {result.format} signature of {result.reference} ({result.digest}) "
        f"to {'standard output' if to_stdout else result.path}",
        f"Referrer: {result.referrer}" + (f" (newest of {result.candidates})" if result.candidates > 1 else ""),
        f"Signed by: {', '.join(result.signers)}" if result.verified
        else "Not verified: give --key (or --certificate-identity / --policy) to check who signed it",
    ]
    if to_stdout:  # standard output holds the signature: the summary goes to stderr
        for line in lines:
            stderr.print(line, highlight=False, markup=False)
        return
    print_result(result, as_json, False, lines)


def _json_beside_stdout(_) -> None:
    raise UsageError("--json and -o - both want standard output", hint="name a file to write, or drop --json")


def _new_key_password(no_password: bool) -> str | None:
    if no_password:
        return None
    if PASSWORD_ENV in os.environ:
        return os.environ[PASSWORD_ENV] or None
    if not sys.stdin.isatty():
        raise UsageError(
            "the new private key needs a password",
            hint=f"set {PASSWORD_ENV}, run on a terminal, or pass --no-password for an unencrypted key",
        )
    return typer.prompt("Password for the new private key (empty: unencrypted)", default="", show_default=False,
                        hide_input=True, confirmation_prompt=True, err=True) or None


def _generate(prefix: str, no_password: bool, force: bool, as_json: bool) -> None:
    def generate(_):
        from ocimodel.outputs import check_output

        for path in (f"{prefix}.key", f"{prefix}.pub"):  # before the password is asked for
            check_output(path, replace=force)
        return api.generate_key_pair(
            f"{prefix}.key", f"{prefix}.pub", _new_key_password(no_password), overwrite=force
        )

    result = run(generate, verb="key generate", show_progress=False)
    print_result(result, as_json, False, [
        f"Private key: {result.private_key}" + ("" if result.encrypted else " (unencrypted)"),
        f"Public key:  {result.public_key}",
        f"Key hint:    {result.key_hint}",
    ])


PrefixOpt = Annotated[str, typer.Option("--output-key-prefix", metavar="PREFIX", help="Write PREFIX.key and PREFIX.pub.")]
NoPasswordOpt = Annotated[bool, typer.Option("--no-password", help="Leave the private key unencrypted.")]
KeyForceOpt = Annotated[bool, typer.Option("--force", help="Replace PREFIX.key and PREFIX.pub if they exist.")]


@key_app.command("generate")
def key_generate(
    prefix: PrefixOpt = "ocimodel", no_password: NoPasswordOpt = False, force: KeyForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Generate an ECDSA P-256 key pair for signing (cosign and model-signing read it).

      ocimodel key generate --output-key-prefix release

    The password comes from $OCIMODEL_KEY_PASSWORD, else it is asked for on a terminal.
    An existing key file is replaced only with --force; a symlink, fifo, socket or device
    at either path is refused and left as it is.
    """
    _generate(prefix, no_password, force, as_json)


def generate_key_pair(
    prefix: PrefixOpt = "ocimodel", no_password: NoPasswordOpt = False, force: KeyForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Generate an ECDSA P-256 key pair (as `ocimodel key generate`; cosign's name).

      ocimodel generate-key-pair --output-key-prefix release
    """
    _generate(prefix, no_password, force, as_json)
