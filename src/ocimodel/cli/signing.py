"""The options of the commands that sign what they write, and the password prompt for an
encrypted key: defined once, so every such command says the same thing about --key and
the keyless options.

Two kinds of command take them: those that always sign (sign, attest, scan --attest,
sbom --attest: without --key they sign keyless) and those that write a record that may be
unsigned (promote, rollback, deploy, eval record: without --key or a keyless option the
record is unsigned). $SIGSTORE_ID_TOKEN is read as --identity-token by the first kind and
by promote and rollback; deploy and eval record take --keyless instead."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

# Named here so --help does not load the signing modules (keys.PASSWORD_ENV would).
PASSWORD_ENV = "OCIMODEL_KEY_PASSWORD"

# -- commands that always sign ------------------------------------------------------------

SigningKeyOpt = Annotated[
    Path | None,
    typer.Option("--key", metavar="PEM", help=f"ECDSA P-256 private key (PEM). Encrypted: ${PASSWORD_ENV}, or asked for on a terminal. Omitted: keyless (Sigstore)."),
]
IdentityTokenOpt = Annotated[
    str | None,
    typer.Option("--identity-token", metavar="JWT", envvar="SIGSTORE_ID_TOKEN", help="Keyless: the OIDC identity token (default: the CI's ambient credential)."),
]

# -- commands whose record may be unsigned ------------------------------------------------

RecordKeyOpt = Annotated[
    Path | None,
    typer.Option("--key", metavar="PEM", help=f"Sign the record with this ECDSA P-256 private key (as `sign --key`; encrypted: ${PASSWORD_ENV}). Omitted, and no keyless option: the record is unsigned."),
]
# --keyless takes the token from the environment as `sign` does (trust/keyless.py), so it
# need not be on the command line where `ps` shows it.
KeylessOpt = Annotated[bool, typer.Option(
    "--keyless", help="Sign keyless (Sigstore) with the token in $OCIMODEL_IDENTITY_TOKEN or $SIGSTORE_ID_TOKEN, "
    "else the CI's ambient identity.")]
# No $SIGSTORE_ID_TOKEN here: a token in the environment would sign every record of a CI
# job keyless without being asked to (--keyless asks).
RecordIdentityTokenOpt = Annotated[
    str | None, typer.Option("--identity-token", metavar="JWT",
                             help="Sign keyless with this OIDC identity token (`ps` shows it: prefer --keyless and $SIGSTORE_ID_TOKEN).")
]

# -- both ----------------------------------------------------------------------------------

TrustConfigOpt = Annotated[
    Path | None, typer.Option("--trust-config", metavar="FILE", help="Keyless: a Sigstore ClientTrustConfig JSON (default: the public instance).")
]
StagingOpt = Annotated[bool, typer.Option("--staging", help="Keyless: use Sigstore's staging instance.")]


def password_for(key: Path | None) -> str | None:
    """Ask for the key's password on a terminal when it is encrypted and none is set."""
    from ocimodel.signing.errors import KeyPasswordRequired
    from ocimodel.signing.keys import load_private_key

    if key is None:
        return None
    try:
        load_private_key(key)
    except KeyPasswordRequired:
        if not sys.stdin.isatty():
            raise
        return typer.prompt(f"Password for {key}", hide_input=True, err=True)
    return None
