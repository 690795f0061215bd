"""Commands for registry credentials: login, logout."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ocimodel.cli.common import JsonOpt, PlainHttpOpt, connection, print_json, run, stderr, stdout
from ocimodel.cli.lazy import lazy_import
from ocimodel.errors import UsageError

api = lazy_import("ocimodel")


def login(
    registry: Annotated[str, typer.Argument(metavar="REGISTRY", help="host[:port]: ghcr.io, localhost:5000, docker.io for Docker Hub.")],
    username: Annotated[str | None, typer.Option("--username", "-u", metavar="USER", help="Username (asked for on a terminal if omitted).")] = None,
    password: Annotated[
        str | None,
        typer.Option("--password", "-p", metavar="PASSWORD", help="Password or token. Insecure: it lands in shell history and the process list; prefer --password-stdin."),
    ] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password or token from stdin.")] = False,
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check credentials against a registry, then store them where docker would.

    They go to the credential helper the docker config names for the registry
    (credHelpers, else credsStore), else into $DOCKER_CONFIG/config.json
    (~/.docker/config.json) with mode 0600. Every command finds them there, and so do
    docker, oras, crane and skopeo. A wrong password stores nothing. Examples:

      echo "$GITHUB_TOKEN" | ocimodel login ghcr.io -u octocat --password-stdin

      ocimodel login localhost:5000 -u builder          # asks for the password
    """

    def action(_):
        user, secret = _login_secret(username, password, password_stdin)
        return api.login(registry, user, secret, plain_http=plain_http, options=connection())

    result = run(action, verb="login", show_progress=False)
    if result.helper is None:
        stderr.print(
            f"warning: the password is stored unencrypted in {result.stored_in}; "
            "configure a credential helper (credsStore) to avoid this",
            highlight=False, markup=False,
        )
    if as_json:
        print_json(result)
    else:
        stdout.print(f"Login succeeded: credentials for {result.registry} stored in {result.stored_in}", highlight=False, markup=False)


def logout(
    registry: Annotated[str, typer.Argument(metavar="REGISTRY", help="host[:port], as given to login.")],
    as_json: JsonOpt = False,
) -> None:
    """Remove the stored credentials for a registry (from its credential helper and from
    the docker config).

      ocimodel logout ghcr.io
    """
    result = run(lambda _: api.logout(registry), verb="logout", show_progress=False)
    if as_json:
        print_json(result)
    elif result.removed:
        stdout.print(f"Removed the credentials for {result.registry} from {result.removed_from}", highlight=False, markup=False)
    else:
        stdout.print(f"Not logged in to {result.registry}", highlight=False, markup=False)


def _login_secret(username: str | None, password: str | None, password_stdin: bool) -> tuple[str, str]:
    """Username and password for `login`: from stdin, from -p (warned), or asked for on a
    terminal with the password hidden."""
    if password is not None and password_stdin:
        raise UsageError("--password and --password-stdin exclude each other")
    if password_stdin:
        if not username:
            raise UsageError("--password-stdin needs --username (stdin carries the password)")
        # As docker: one trailing newline (echo's) is not part of the password.
        return username, sys.stdin.read().removesuffix("\n").removesuffix("\r")
    if password is not None:
        stderr.print(
            "warning: --password is insecure: it lands in shell history and the process list; use --password-stdin",
            highlight=False, markup=False,
        )
    interactive = sys.stdin.isatty()
    example = 'e.g. echo "$TOKEN" | ocimodel login REGISTRY -u USER --password-stdin'
    if not username:
        if not interactive:
            raise UsageError("login needs --username (-u)", hint=example)
        username = typer.prompt("Username", err=True)
    if password is None:
        if not interactive:
            raise UsageError("no password: give it on stdin with --password-stdin", hint=example)
        password = typer.prompt("Password", hide_input=True, err=True)
    return username, password

